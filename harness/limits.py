"""Limits of the C core that the command line checks before anything is loaded (the values
of cxl_layout.h's CXL_MAX_BROKERS and CXL_MAX_SUBS; tests/test_log.py compares them with a
layout the core accepts and one it refuses)."""

MAX_BROKERS = 8
MAX_SUBSCRIBERS = 8
