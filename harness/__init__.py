"""cxl-harness: hardware-validation harness for a totally ordered shared log in CXL memory."""

from __future__ import annotations

import os

# numpy's BLAS threads would spin beside the log's role threads on small machines.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
