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
    double p_preempt;        /* per shared-memory access: another role runs a whole step here */
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
    CXL_OP_RMW = 10, CXL_OP_CTL_LOAD = 11, CXL_OP_CTL_STORE = 12, CXL_OP_CTL_RMW = 13,
    CXL_OP_DRAIN = 14
};

/* A seam call site of the checked build (cxl_seam.h): one static record per call of a
 * flush, fence, invalidate, publication, commit or ownership hand-off in the sources, placed
 * in the section `cxl_sites` so the whole list is known before anything runs. `mode` is the
 * mutation applied to the site now (CXL_MUT_*): every site can be switched off at run time. */
typedef struct cxl_site {
    const char *file;
    const char *func;
    int32_t line;
    uint32_t op;             /* CXL_SITE_* */
    uint32_t mode;           /* CXL_MUT_* in force */
    uint32_t roles;          /* agent kinds that executed it: 1 pub, 2 scanner, 4 seq, 8 sub, 16 other */
    uint64_t hits;           /* executions while a checker was active, since the last reset */
} cxl_site_t;

enum {
    CXL_SITE_FLUSH = 1, CXL_SITE_FLUSH_RANGE = 2, CXL_SITE_SFENCE = 3, CXL_SITE_MFENCE = 4,
    CXL_SITE_LFENCE = 5, CXL_SITE_INVALIDATE = 6, CXL_SITE_PUBLISH = 7, CXL_SITE_COMMIT = 8,
    CXL_SITE_TAKE_LINES = 9
};
/* Mutations: the operation deleted; a fence moved after the agent's next publication; an
 * invalidation skipped, so the line is served stale. */
enum { CXL_MUT_NONE = 0, CXL_MUT_DELETE = 1, CXL_MUT_FENCE_LATE = 2, CXL_MUT_STALE = 3 };

uint32_t cxl_chk_site_count(void);
int cxl_chk_site_info(uint32_t id, cxl_site_t *out);
int cxl_chk_site_mutate(uint32_t id, uint32_t mode);  /* id >= count: clear every mutation */
void cxl_chk_site_reset(void);                        /* hits and roles back to zero */

/* The deterministic runner's hooks (checked build only). A preemption runs another role's
 * step inside the current one, at a shared-memory access: `draw` picks the role. The runner's
 * choice of the next role can be forced (a schedule replayed) and is recorded. */
typedef void (*cxl_chk_preempt_fn)(void *arg, uint64_t draw);
void cxl_chk_set_preempt(cxl_chk_preempt_fn fn, void *arg);
uint32_t cxl_chk_sched_pick(uint32_t n, uint32_t dflt);
int cxl_chk_set_schedule(const uint32_t *picks, uint64_t n); /* replayed first; n = 0: none */
/* After the replayed picks: 0 the runner's own seeded picks, 1 stop the run, 2 round-robin. */
void cxl_chk_set_schedule_mode(int mode);
uint64_t cxl_chk_schedule(uint32_t *out, uint64_t max);      /* the picks of this run */
uint64_t cxl_chk_preempt_count(void);
/* A planned preemption instead of random ones: at preemption point `at` (0-based, counted over
 * the run), role `role` runs `steps` steps. at = UINT64_MAX: none. */
void cxl_chk_plan_preempt(uint64_t at, uint32_t role, uint32_t steps);
uint64_t cxl_chk_preempt_points(void);   /* preemption points passed in this run */
#define CXL_PREEMPT_PLANNED (1ull << 63)

/* Control sites (cxl_ctl.h): the epoch seal's atomics in process memory. `order` is the memory
 * order written in the source (C11 memory_order values: 0 relaxed .. 5 seq_cst); `weak` >= 0
 * replaces it at run time (a planted weakening), -1 keeps it. */
typedef struct cxl_ctl_site {
    const char *file;
    const char *func;
    int32_t line;
    uint32_t kind;           /* CXL_CTL_LOAD / STORE / RMW */
    int32_t order;
    int32_t weak;
    uint64_t hits;
} cxl_ctl_site_t;
enum { CXL_CTL_LOAD = 1, CXL_CTL_STORE = 2, CXL_CTL_RMW = 3 };
uint64_t cxl_chk_ctl_load(const void *p, unsigned size, cxl_ctl_site_t *site);
void cxl_chk_ctl_store(void *p, uint64_t v, unsigned size, cxl_ctl_site_t *site);
uint64_t cxl_chk_ctl_fetch_add(void *p, uint64_t v, unsigned size, cxl_ctl_site_t *site);
void cxl_chk_observe(const void *p, uint64_t n);
/* The sequencer completed the seal of an epoch a scanner was still pushing into. */
void cxl_chk_seal_breached(const char *file, int line);
uint32_t cxl_chk_ctl_site_count(void);
int cxl_chk_ctl_site_info(uint32_t id, cxl_ctl_site_t *out);
int cxl_chk_ctl_weaken(uint32_t id, int32_t order);   /* id >= count: clear every weakening */

/* Exploration (stateless model checking, checked build): the deterministic runner runs every
 * role as a coroutine; every shared-memory access and every control atomic is a choice point
 * at which the explorer picks what happens next: which agent runs, or a store-buffer drain
 * (x86-TSO), or a choice of the non-coherent model. A choice is an option code
 * (kind << 8 | coroutine index, CXL_XO_*). The first `n` choices are replayed; after them each
 * point takes its default. Every point is recorded with its state hash, options and the
 * footprint of what then ran. */
enum { CXL_XO_RUN = 1, CXL_XO_DRAIN = 2, CXL_XO_EARLY = 3, CXL_XO_EVICT = 4, CXL_XO_REFRESH = 5,
       CXL_XO_TICK = 6 };
enum { CXL_XF_TSO = 1, CXL_XF_MODEL_CHOICES = 2, CXL_XF_FREE_SWITCH = 4, CXL_XF_FREE_DRAIN = 8,
       CXL_XF_TICKS = 16 };
typedef struct cxl_chk_xpoint {
    uint64_t hash;           /* the state here: region, caches, rule state, control words, agents */
    uint64_t rd[4];          /* footprint (bloom over lines and control words) of the choice */
    uint64_t wr[4];
    uint32_t chosen;         /* option code taken */
    uint32_t dflt;           /* option code the default policy takes */
    uint32_t opt_lo;         /* first option in the option array */
    uint32_t nopts;
    uint32_t agent;          /* coroutine of the chosen option */
    uint32_t flags;          /* 1: the chosen option's agent shares process memory (scanner/sequencer) */
    uint32_t from;           /* coroutine that was running when the point came */
    uint32_t boundary;       /* 1: the point is a step's end, 0: before an access of `from` */
    uint64_t evt;            /* events recorded before the point (the trace's next index) */
} cxl_chk_xpoint_t;
typedef struct cxl_chk_xopt {
    uint32_t code;
    uint32_t cost;           /* 0 default or free, 1 a deviation (preemption, delay, model choice) */
} cxl_chk_xopt_t;
int cxl_chk_explore_set(int on, uint32_t flags, const uint32_t *prefix, uint64_t n, uint64_t max_points);
uint64_t cxl_chk_explore_points(cxl_chk_xpoint_t **pts, cxl_chk_xopt_t **opts, uint64_t *nopts);
/* 0 ran to its end; 1 no agent could go on (a stall); 2 the point bound was hit; 3 a replayed
 * choice was not available (the run is not deterministic) */
int cxl_chk_explore_outcome(void);
/* The generic coroutine scheduler (the log's deterministic runner uses it when exploring). A
 * step returns 0 idle, 1 progress, 2 done. `groups[i]` != 0: roles that share process memory. */
typedef int (*cxl_chk_co_step_fn)(void *arg, uint32_t i);
int cxl_chk_co_run(uint32_t n, const int *agents, const int *groups, cxl_chk_co_step_fn step, void *arg);
int cxl_chk_explore_on(void);
/* A toy program for testing the explorer itself: agents 0..n-1 each make `steps` steps of
 * one control store (to its own word, or with `shared` to one word for all). */
int cxl_chk_toy_run(uint32_t n, uint32_t steps, int shared);

int cxl_chk_begin(void *base, uint64_t size, const cxl_chk_cfg_t *cfg);
void cxl_chk_end(void);
void cxl_chk_finish(void);
void cxl_chk_set_agent(int agent);
void cxl_chk_handoff(void);  /* every clean line forgets its writer (the formatter's hand-over) */
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
