"""cxl-harness: hardware-validation harness for a totally ordered shared log in CXL memory."""

from __future__ import annotations

__version__ = "0.1.0"
