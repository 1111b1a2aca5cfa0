"""Limits of the C core that the command line checks before a run (read from the core by
harness.native: cxl_layout.h's CXL_MAX_BROKERS and CXL_MAX_SUBS)."""

from harness.native import LIMITS

MAX_BROKERS = LIMITS.max_brokers
MAX_SUBSCRIBERS = LIMITS.max_subscribers
