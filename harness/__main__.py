"""``python -m harness``: the same command line as ``cxl-harness``."""

import sys

from harness.cli import main

sys.exit(main())
