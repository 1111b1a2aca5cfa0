/* cxl_faults.h -- the fault catalogue: each entry plants exactly one defect in the protocol.
 * X(id, name, description). Compiled in only where CXL_CHECKED is defined; the normal build
 * tests `FAULT(x)` against a constant 0 so it costs nothing. */
#ifndef CXL_FAULTS_H
#define CXL_FAULTS_H

#define CXL_FAULT_LIST(X)                                                                      \
    X(1, pub_no_payload_flush, "publisher does not flush the payload lines (rule 1)")        \
    X(2, pub_fence_before_flush, "publisher fences before flushing the header, not after")    \
    X(3, pub_no_hdr_flush_line0, "publisher does not flush header line 0 (rule 2)")          \
    X(4, pub_no_hdr_flush_line1, "publisher does not flush header line 1 (rule 2)")          \
    X(5, pub_no_hdr_fence, "publisher does not fence payload and header before the token")  \
    X(6, pub_no_token_flush, "publisher does not flush the token line (rule 2)")             \
    X(7, pub_token_before_body, "publisher writes the token before the header body")          \
    X(8, pub_ready_flag, "token is a ready flag never cleared: a stale lap is accepted")       \
    X(9, pub_reuse_early, "publisher reuses a ring slot before consumed_through passed it")   \
    X(10, scan_no_invalidate_token, "scanner reads the token without invalidating (rule 3)")   \
    X(11, scan_no_invalidate_body, "scanner reads header line 0 without invalidating")         \
    X(12, scan_skip_empty, "scanner skips a slot whose token does not match yet")              \
    X(13, seq_unsealed_read, "sequencer drains an epoch buffer without waiting for scanners")  \
    X(14, seq_dup_identity, "sequencer gives one batch two global positions")                 \
    X(15, seq_goi_token_first, "sequencer writes the GOI token before the entry body")        \
    X(16, seq_no_goi_flush, "sequencer does not flush GOI entries (rule 4)")                  \
    X(17, seq_no_goi_fence, "sequencer does not fence GOI bodies before tokens (rule 4)")     \
    X(18, seq_commit_unflushed, "committed_seq advanced before the GOI lines are flushed")      \
    X(19, seq_ack_before_order, "ACK frontier published before the batch is ordered")         \
    X(20, seq_no_frontier_flush, "sequencer does not flush consumed_through/ordered (rule 5)") \
    X(21, sub_no_invalidate_goi, "subscriber reads GOI entries without invalidating")          \
    X(22, sub_no_invalidate_payload, "subscriber reads the payload without invalidating")      \
    X(23, sub_no_invalidate_commit, "subscriber reads committed_seq without invalidating")     \
    X(24, pub_no_invalidate_frontier, "publisher reads consumed_through without invalidating") \
    X(25, seq_no_fence_at_all, "sequencer never fences its flushes (rule 6: never zero)")    \
    X(26, seq5_hold_release_unordered, "Order 5: held batches released highest seq first")    \
    X(27, seq5_late_reordered, "Order 5: a late batch (seq below next_expected) is ordered")   \
    X(28, seq5_gap_no_marker, "Order 5: a timed-out gap is skipped without declared-lost markers") \
    X(29, seq5_marker_unflushed, "Order 5: a marker's GOI line is not flushed before committed_seq")

enum cxl_fault_id {
    CXL_FAULT_NONE = 0,
#define CXL_FAULT_ENUM(id, name, doc) CXL_FAULT_##name = id,
    CXL_FAULT_LIST(CXL_FAULT_ENUM)
#undef CXL_FAULT_ENUM
    CXL_FAULT_COUNT_PLUS1
};

#endif
