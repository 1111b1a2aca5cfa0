"""Order 5 (per-client FIFO): the core's constants as the driver, the in-run checks and the
history writer use them (all from the binding, harness.native)."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.native import LIMITS, GapPolicy, LossReason, OrderKind

GAP_POLICIES = tuple(p.name.lower() for p in sorted(GapPolicy))  # "markers", "fence"
MAX_HOLD = LIMITS.max_hold  # the hold buffer bound the core accepts
SESSION_SHIFT = LIMITS.session_shift  # client_batch_seq words carry the session above it
REC_KIND_BATCH, REC_KIND_MARKER, REC_KIND_FENCE = OrderKind.BATCH, OrderKind.MARKER, OrderKind.FENCE
LOSS_FENCED, LOSS_LATE = LossReason.FENCED, LossReason.LATE


def gap_policy_code(name: str) -> int:
    """``cxl_log_cfg_t.gap_policy`` of a policy name."""
    return int(GapPolicy[name.upper()])


def split_session(word: Any) -> tuple[Any, Any]:
    """(session, client_batch_seq) columns of client_batch_seq words."""
    w = np.asarray(word, dtype=np.uint64)
    return ((w >> np.uint64(SESSION_SHIFT)).astype(np.int64),
            (w & np.uint64((1 << SESSION_SHIFT) - 1)).astype(np.int64))
