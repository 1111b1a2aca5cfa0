/*
 * cxl_consts.c -- the core's numbers for Python (harness/native.py): limits, latency bucket
 * bounds and agent ids, so that no Python module re-declares them.
 */
#include "cxl_log_int.h"

void cxl_limits(cxl_limits_t *out) {
    *out = (cxl_limits_t){
        .max_brokers = CXL_MAX_BROKERS,
        .max_subscribers = CXL_MAX_SUBS,
        .max_publishers_per_broker = MAX_PUBS_PER_BROKER,
        .max_msgs_per_batch = MAX_MSGS_PER_BATCH,
        .max_workers = CXL_MAX_WORKERS,
        .max_roles = CXL_MAX_ROLES,
        .layout_version = CXL_LAYOUT_VERSION,
        .lat_buckets = LAT_BUCKETS,
        .max_pbr_slots = MAX_PBR_SLOTS,
        .max_goi_slots = MAX_GOI_SLOTS,
        .max_batches = MAX_BATCHES,
        .max_msg_size = MAX_MSG_SIZE,
        .max_batch_log_bytes = MAX_BATCH_LOG_BYTES,
        .no_client = NO_CLIENT,
        .msg_header_bytes = CXL_MSG_HDR,
        .max_hold = CXL_MAX_HOLD,
        .session_shift = CXL_SESSION_SHIFT,
        .max_session = CXL_MAX_SESSION,
    };
}

/* The inverse of lat_bucket(): exact below 32 ns, then 16 buckets per power of two. */
uint64_t cxl_lat_bucket_low(uint32_t i) {
    if (i < 32) return i;
    uint32_t j = i - 32, msb = 5 + j / 16, sub = j % 16;
    if (msb > 59) return UINT64_MAX;
    return (uint64_t)(16 + sub) << (msb - 4);
}

int cxl_agent_kind(int agent, uint32_t *index) {
    if (agent >= AGENT_PUB && agent < AGENT_SCAN) { /* the model tells apart the first 64 */
        *index = (uint32_t)(agent - AGENT_PUB);
        return CXL_KIND_PUBLISHER;
    }
    if (agent >= AGENT_SCAN && agent < AGENT_SCAN + (int)CXL_MAX_BROKERS) {
        *index = (uint32_t)(agent - AGENT_SCAN);
        return CXL_KIND_SCANNER;
    }
    if (agent == AGENT_SEQ) {
        *index = 0;
        return CXL_KIND_SEQUENCER;
    }
    if (agent >= AGENT_SUB && agent < AGENT_SUB + (int)CXL_MAX_SUBS) {
        *index = (uint32_t)(agent - AGENT_SUB);
        return CXL_KIND_SUBSCRIBER;
    }
    return -1;
}
