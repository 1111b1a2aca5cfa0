/* cxl_check_api.h -- the checked build's own API: trace rules and the non-coherent model.
 * Also a cffi cdef (lines starting with '#' are stripped). */
#ifndef CXL_CHECK_API_H
#define CXL_CHECK_API_H
#include <stdint.h>

typedef struct cxl_chk_cfg {
    int model;               /* 1: serve accesses through per-agent software caches */
    int keep_trace;          /* 1: keep the event trace (bounded by trace_capacity) */
    uint64_t seed;           /* adversary randomness */
    double p_early;          /* per op: a flushed line becomes visible before its fence */
    double p_evict;          /* per op: a dirty, unflushed line is written back (eviction) */
    uint64_t trace_capacity;
} cxl_chk_cfg_t;

typedef struct cxl_chk_finding {
    uint32_t rule;
    uint32_t severity;       /* 2 error, 1 warning */
    int32_t agent;
    int32_t other_agent;
    uint64_t line_off;       /* offset of the first offending line from the region base */
    uint64_t count;
    uint64_t first_event;    /* index of the event where it was first seen */
    const char *file;
    int32_t line_no;
    int32_t pad;
} cxl_chk_finding_t;

typedef struct cxl_chk_event {
    uint64_t off;
    uint64_t value;
    uint32_t size;
    int16_t agent;
    uint16_t op;
    const char *file;
    int32_t line_no;
    int32_t pad;
} cxl_chk_event_t;

/* ops of the event stream (recorded here, or fed from a trace recorded elsewhere) */
enum {
    CXL_OP_STORE = 1, CXL_OP_NT_STORE = 2, CXL_OP_LOAD = 3, CXL_OP_FLUSH = 4, CXL_OP_FENCE = 5,
    CXL_OP_INVALIDATE = 6, CXL_OP_PUBLISH = 7, CXL_OP_CONSUME = 8, CXL_OP_COMMIT = 9,
    CXL_OP_RMW = 10
};

int cxl_chk_begin(void *base, uint64_t size, const cxl_chk_cfg_t *cfg);
void cxl_chk_end(void);
void cxl_chk_finish(void);
void cxl_chk_set_agent(int agent);
void cxl_chk_feed(int agent, int op, uint64_t off, uint64_t size, const char *file, int line_no);
uint64_t cxl_chk_findings(cxl_chk_finding_t *out, uint64_t max);
uint64_t cxl_chk_rule_total(uint32_t rule);
uint32_t cxl_chk_rule_count(void);
const char *cxl_chk_rule_name(uint32_t rule);
const char *cxl_chk_rule_doc(uint32_t rule);
uint32_t cxl_chk_rule_severity(uint32_t rule);
uint64_t cxl_chk_event_count(void);
uint64_t cxl_chk_trace(cxl_chk_event_t **out);
uint64_t cxl_chk_model_stats(uint64_t *early, uint64_t *evictions, uint64_t *stale_reads);

#endif
