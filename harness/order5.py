"""Order 5 (per-client FIFO) constants shared by the log driver, the in-run checks and the
history writer: values of cxl_layout.h / cxl_api.h."""

from __future__ import annotations

from typing import Any

import numpy as np

GAP_POLICIES = ("markers", "fence")  # cxl_log_cfg_t.gap_policy 0, 1
MAX_HOLD = 1 << 20  # the hold buffer bound the core accepts
SESSION_SHIFT = 40  # CXL_SESSION_SHIFT: client_batch_seq words carry the session above it
REC_KIND_BATCH, REC_KIND_MARKER, REC_KIND_FENCE = 0, 1, 2  # cxl_rec_order_t.kind
LOSS_FENCED, LOSS_LATE = 3, 4  # cxl_rec_loss_t.reason: resolved by the sequencer, no position


def split_session(word: Any) -> tuple[Any, Any]:
    """(session, client_batch_seq) columns of client_batch_seq words."""
    w = np.asarray(word, dtype=np.uint64)
    return ((w >> np.uint64(SESSION_SHIFT)).astype(np.int64),
            (w & np.uint64((1 << SESSION_SHIFT) - 1)).astype(np.int64))
