# cffi cannot be configured from pyproject.toml alone: this carries cffi_modules.
from setuptools import setup

setup(
    cffi_modules=[
        "cffi_src/build_core.py:ffi",
        "cffi_src/build_core.py:ffi_checked",
    ],
)
