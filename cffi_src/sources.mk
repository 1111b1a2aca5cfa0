# The C core's sources and flags: read by the Makefile and by build_core.py (one list).
# Lines are "NAME := words"; nothing else is understood by build_core.py.
CORE_SOURCES := cxl_cpu.c cxl_region.c cxl_bench.c cxl_log_common.c cxl_log_layout.c cxl_publisher.c cxl_scanner.c cxl_sequencer.c cxl_order5.c cxl_subscriber.c cxl_runner.c cxl_consts.c
CHECKED_EXTRA := cxl_check.c
BASE_CFLAGS := -std=c11 -Wall -Wextra -fno-strict-aliasing
# Warnings are errors in CI, the Makefile and the sanitizer builds (CXL_WERROR=1 or CI=true),
# never in a user's pip install: a newer compiler's new warning must not break an install.
STRICT_CFLAGS := -Werror
