/*
 * cxl_check.c -- the checked build's seam: every shared-memory access is (1) checked against
 * the flush/fence trace rules and (2) optionally served by a non-coherent memory model.
 *
 * The model: the region's bytes are "home" (the device). Each agent (host/role) sees home
 * through its own software cache of 64-byte lines. A store stays in the agent's cache until
 * the line is flushed and the agent fences (or, at random, earlier: an eviction or an early
 * write-back). A cached line keeps being served, stale, until the agent invalidates it.
 * Write-back is whole-line, as in hardware, so two writers on one line lose updates.
 *
 * The same rule engine also runs over traces recorded elsewhere (cxl_chk_feed).
 */
#define _GNU_SOURCE
#include "cxl_api.h"
#include "cxl_check_api.h"
#include "cxl_seam.h"

#include <pthread.h>
#include <ucontext.h>
#include <stdlib.h>
#include <string.h>

#define MAX_AGENTS 128
#define MAX_FINDINGS 512
#define NO_LINE UINT64_MAX

#define CHK_RULES(X)                                                                            \
    X(1, unflushed_before_publish, 2,                                                           \
      "a store was not flushed (and fenced) before the agent's next publish")                  \
    X(2, unfenced_before_publish, 2, "a flush was not fenced before the agent's next publish") \
    X(3, nt_unfenced_before_publish, 2,                                                         \
      "a non-temporal store was not fenced before the agent's next publish")                   \
    X(4, body_after_token, 2, "a record's body was stored after its token was published")     \
    X(5, read_without_invalidate, 2,                                                            \
      "a line another agent wrote was read without invalidating it since that write")          \
    X(6, two_writers_one_line, 2, "two agents stored to the same cache line")                  \
    X(7, record_read_without_token, 2, "a record line was read without first reading its token") \
    X(8, publish_not_flushed, 2,                                                                \
      "a published token or frontier was not flushed before the agent's next fence")           \
    X(9, overwrite_before_flush, 1, "bytes stored twice before a flush of their line")        \
    X(10, redundant_flush, 1, "a line flushed again with no store since its last flush")       \
    X(11, clean_flush, 1, "a flush of a line this agent has no store pending on")              \
    X(12, empty_fence, 1, "a fence with no flush or non-temporal store to order")                \
    X(13, unpersisted_at_end, 2, "a store was never flushed and fenced before the trace ended") \
    X(14, push_after_seal, 2,                                                                   \
      "a scanner was still pushing into an epoch buffer when the sequencer completed its seal")

enum {
#define RULE_ENUM(id, name, sev, doc) R_##name = id,
    CHK_RULES(RULE_ENUM)
#undef RULE_ENUM
    R_COUNT_PLUS1
};

static const char *const rule_names[] = {
    "",
#define RULE_NAME(id, name, sev, doc) #name,
    CHK_RULES(RULE_NAME)
#undef RULE_NAME
};
static const char *const rule_docs[] = {
    "",
#define RULE_DOC(id, name, sev, doc) doc,
    CHK_RULES(RULE_DOC)
#undef RULE_DOC
};
static const uint32_t rule_sev[] = {
    0,
#define RULE_SEV(id, name, sev, doc) sev,
    CHK_RULES(RULE_SEV)
#undef RULE_SEV
};

enum { K_PLAIN = 1, K_NT = 2, K_TOKEN = 4, K_COMMIT = 8 };
enum { S_CLEAN = 0, S_STORED = 1, S_FLUSHED = 2 };

typedef struct line_state {
    uint64_t last_store_evt;
    uint64_t dirty_mask;      /* bytes stored since the owner's last flush of the line */
    const char *st_file;
    int32_t st_line;
    int16_t owner;            /* last agent that stored here, -1 none */
    uint8_t state;
    uint8_t kinds;
    uint8_t pub_since_fence;
    uint8_t token_line;       /* a token was published here */
    uint8_t rec_before;       /* lines of that token's record before this line */
    uint8_t rmw;
    uint8_t pending;          /* listed in the owner's pending list */
    uint8_t handed;           /* formatted and handed over: a new writer is no second writer */
} line_state_t;

typedef struct cline {
    unsigned char data[CXL_LINE];
    uint64_t dirty;
    int wb_pending;           /* flushed: written back at the agent's next fence */
} cline_t;

/* A store into the record whose token this agent published last: either the next instance
 * of that record (its token will be published again) or a body written after its token. */
typedef struct suspect {
    uint64_t token_line;
    uint64_t line;
    const char *file;
    int32_t line_no;
    int32_t fences;
} suspect_t;
#define MAX_SUSPECTS 64

typedef struct agent {
    int used;
    suspect_t suspects[MAX_SUSPECTS];
    int nsuspects;
    uint64_t *inval_evt;      /* per line: this agent's last invalidate */
    uint64_t *pending;        /* lines this agent stored to and has not yet fenced clean */
    uint64_t npending, cap_pending;
    uint64_t last_token_lo;   /* lines of the record whose token this agent published last */
    uint64_t last_token_hi;
    uint64_t last_consume_line;
    cline_t **cache;          /* model: per line, NULL = not cached */
    const cxl_site_t *late_fence; /* mutation: a fence moved after this agent's next publish */
    uint64_t step_evt;        /* event count when this agent's current step began */
} agent_t;

static struct {
    int active;
    cxl_chk_cfg_t cfg;
    unsigned char *base;
    uint64_t size, lines;
    line_state_t *ls;
    agent_t agents[MAX_AGENTS];
    uint64_t evt;
    uint64_t rng;
    cxl_chk_finding_t findings[MAX_FINDINGS];
    uint64_t nfindings;
    uint64_t rule_total[R_COUNT_PLUS1];
    cxl_chk_event_t *trace;
    uint64_t ntrace;
    uint64_t early, evictions, stale_reads;
    cxl_chk_preempt_fn preempt_fn;
    void *preempt_arg;
    uint64_t preempts;
    uint64_t points;          /* preemption points passed */
    uint32_t *sched;          /* picks made by the runner in this run */
    uint64_t nsched, cap_sched;
} G;

/* Kept across cxl_chk_begin: the schedule to replay, installed before the run starts. */
static uint32_t *forced_g;
static uint64_t nforced_g;
static int sched_mode_g;      /* after the forced picks: 0 seeded, 1 stop, 2 round-robin */
static uint64_t plan_at_g = UINT64_MAX; /* a planned preemption (exploration) */
static uint32_t plan_role_g, plan_steps_g;
static __thread int in_preempt = 0;

static pthread_mutex_t chk_mu = PTHREAD_MUTEX_INITIALIZER;
extern uint64_t cxl_chk_clock_ns; /* cxl_cpu.c: a frozen clock while exploring */
extern void (*cxl_chk_clock_read)(uint64_t);
static __thread int cur_agent = 0;

/* ------------------------------------------------------------------ bookkeeping */

static uint64_t rng_next(void) {
    uint64_t x = G.rng;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    G.rng = x;
    return x;
}

static int chance(double p) {
    return p > 0.0 && (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0) < p;
}

static void finding(uint32_t rule, int agent, int other, uint64_t li, const char *file, int ln) {
    G.rule_total[rule]++;
    for (uint64_t i = 0; i < G.nfindings; i++) {
        cxl_chk_finding_t *f = &G.findings[i];
        if (f->rule == rule && f->line_no == ln && f->file == file) { f->count++; return; }
    }
    if (G.nfindings == MAX_FINDINGS) return;
    cxl_chk_finding_t *f = &G.findings[G.nfindings++];
    f->rule = rule;
    f->severity = rule_sev[rule];
    f->agent = agent;
    f->other_agent = other;
    f->line_off = li * CXL_LINE;
    f->count = 1;
    f->first_event = G.evt;
    f->file = file;
    f->line_no = ln;
}

static agent_t *agent_get(int a) {
    if (a < 0 || a >= MAX_AGENTS) a = MAX_AGENTS - 1;
    agent_t *A = &G.agents[a];
    if (!A->used) {
        A->used = 1;
        A->last_token_lo = A->last_token_hi = NO_LINE;
        A->last_consume_line = NO_LINE;
    }
    return A;
}

/* The array `arr` of `size`-byte elements, capacity *cap, grown (doubling from `first`) to hold
 * at least `need`: the array to use from now on, or NULL when memory ran out or the size would
 * overflow (then `arr` is still valid and *cap unchanged). */
static void *grow_array(void *arr, uint64_t *cap, uint64_t need, uint64_t first, size_t size) {
    if (need <= *cap) return arr;
    uint64_t c = *cap ? *cap : first;
    while (c < need) {
        if (c > UINT64_MAX / 2) return NULL;
        c *= 2;
    }
    if (c > SIZE_MAX / size) return NULL;
    void *p = realloc(arr, (size_t)c * size);
    if (p) *cap = c;
    return p;
}

static void pending_add(agent_t *A, uint64_t li) {
    line_state_t *s = &G.ls[li];
    if (s->pending) return;
    uint64_t *p = grow_array(A->pending, &A->cap_pending, A->npending + 1, 256, sizeof *p);
    if (!p) return;
    A->pending = p;
    A->pending[A->npending++] = li;
    s->pending = 1;
}

static uint64_t *inval_of(agent_t *A) {
    if (!A->inval_evt) A->inval_evt = (uint64_t *)calloc(G.lines, sizeof(uint64_t));
    return A->inval_evt;
}

static void trace_event(int agent, int op, uint64_t off, uint64_t size, uint64_t value,
                        const char *file, int ln) {
    if (!G.cfg.keep_trace || G.ntrace >= G.cfg.trace_capacity || !G.trace) return;
    cxl_chk_event_t *e = &G.trace[G.ntrace++];
    e->off = off;
    e->value = value;
    e->size = (uint32_t)size;
    e->agent = (int16_t)agent;
    e->op = (uint16_t)op;
    e->file = file;
    e->line_no = ln;
}

/* ------------------------------------------------------------------ exploration
 *
 * Stateless model checking of the deterministic run: every role is a coroutine (ucontext) and
 * every shared-memory access and control atomic is a choice point (x_point) at which the
 * explorer decides what happens next. The choices of a run are replayed from a prefix and
 * otherwise take the default policy (the running agent goes on; at a step's end the next
 * enabled agent in round-robin order; no drain; no model event). Each point is recorded with
 * its state hash, its options (with their cost: a deviation from the default) and the
 * footprint of what ran after it; the depth-first search itself is in harness/explore.py. */

#define CO_MAX 16
#define SB_MAX 16
#define CTL_MAX 64
#define XOPT_MAX 64
#define XINV_MAX 64
enum { CO_RUN = 0, CO_BLOCKED = 1, CO_DONE = 2 };

typedef struct sb_entry { uint32_t var; uint32_t pad; uint64_t val; } sb_entry_t;

typedef struct co {
    ucontext_t uc;
    void *stack;
    int agent, group;
    int status;
    int boundary;             /* suspended between two steps (or before its first) */
    int wrote;                /* stored something in its current step */
    uint64_t block_mark;      /* blocked: enabled again once a visible write came after this
                               * (the visible writes counted when its idle step began) */
    uint64_t hist;            /* hash of every value it read: its local state is a function of it */
    sb_entry_t sb[SB_MAX];    /* x86-TSO store buffer of its control stores, oldest first */
    uint32_t nsb;
    const void *pend_p;       /* the access it is suspended before */
    uint64_t pend_n;
    int pend_load;
    uint64_t inv[XINV_MAX];   /* lines it invalidated in its current step */
    uint32_t ninv;
    uint64_t idle_mark;       /* x_spin() when its current run of idle steps began */
    uint32_t idle_n;          /* idle steps in that run */
} co_t;

static struct {
    int on;                   /* configured: the next deterministic run explores */
    uint32_t flags;
    uint32_t *prefix;
    uint64_t nprefix, max_points;
    int running;
    uint32_t n;
    co_t co[CO_MAX];
    int cur;
    ucontext_t main_uc;
    cxl_chk_co_step_fn step;
    void *arg;
    uint64_t wmark;           /* visible writes so far (region home, control words) */
    uint32_t ticks;           /* times the frozen clock was advanced in this execution */
    uint32_t idle_ticks;      /* of them in a row with no visible write in between */
    uint64_t tick_mark;       /* wmark at the last tick */
    uint64_t prog, prog_at_tick; /* progress steps so far, and at the last spinning tick */
    uint32_t spin_ticks;      /* spinning ticks in a row with no progress step in between */
    int outcome;
    cxl_chk_xpoint_t *pts;
    uint64_t npts, cap_pts;
    cxl_chk_xopt_t *opts;
    uint64_t nopts, cap_opts;
    int64_t cur_pt;           /* the point whose chosen option is running */
    void *ctl_addr[CTL_MAX];
    uint32_t ctl_size[CTL_MAX];
    uint32_t nctl;
    uint64_t *contrib;        /* per line: its share of the state hash, as last computed */
    uint8_t *marked;
    uint64_t *mlist;
    uint64_t nmarked, cap_mlist, hlines;
} X;

static inline uint64_t mix64(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 31; h *= 0x7fb5d329728ea185ull; h ^= h >> 27; h *= 0x81dadef4bc2dd44dull; h ^= h >> 33;
    return h;
}

static uint64_t hash_bytes(uint64_t h, const void *p, uint64_t n) {
    const unsigned char *b = (const unsigned char *)p;
    for (; n >= 8; n -= 8, b += 8) { uint64_t w; memcpy(&w, b, 8); h = mix64(h, w); }
    if (n) { uint64_t w = 0; memcpy(&w, b, n); h = mix64(h, w ^ (n << 56)); }
    return h;
}

static co_t *x_cur(void) { return X.running && X.cur >= 0 ? &X.co[X.cur] : NULL; }
/* progress steps and jumps of the clock so far: a role's idle run counts from the last one */
static uint64_t x_spin(void) { return X.prog + X.ticks; }

static void x_mark(uint64_t li) {
    if (!X.running || li >= G.lines || X.marked[li]) return;
    uint64_t *p = grow_array(X.mlist, &X.cap_mlist, X.nmarked + 1, 1024, sizeof *p);
    if (!p) abort(); /* an exploration out of memory cannot go on truthfully */
    X.mlist = p;
    X.marked[li] = 1;
    X.mlist[X.nmarked++] = li;
}

/* footprint of the running choice: line ids, control words after the lines */
static void x_fp(uint64_t id, int write) {
    if (!X.running || X.cur_pt < 0) return;
    uint64_t b = mix64(0x51ed27, id) & 255;
    cxl_chk_xpoint_t *pt = &X.pts[X.cur_pt];
    if (write) pt->wr[b >> 6] |= 1ull << (b & 63);
    else pt->rd[b >> 6] |= 1ull << (b & 63);
}

static void x_visible(void) { if (X.running) X.wmark++; }
static void x_wrote(void) { co_t *c = x_cur(); if (c) c->wrote = 1; }
static void x_hist(uint64_t v) { co_t *c = x_cur(); if (c) c->hist = mix64(c->hist, v); }
/* A time an agent read decides what it does later (a gap's or a slot's start, a lease): two
 * agents alike but for the clock they saw before or after a jump are different states. */
static void x_clock_read(uint64_t ns) { if (X.running) x_hist(ns ^ 0xc10c000000000000ull); }


static uint32_t ctl_var(void *p, unsigned size) {
    for (uint32_t i = 0; i < X.nctl; i++) if (X.ctl_addr[i] == p) return i;
    if (X.nctl == CTL_MAX) return CTL_MAX - 1;
    X.ctl_addr[X.nctl] = p;
    X.ctl_size[X.nctl] = size;
    return X.nctl++;
}

static uint64_t ctl_raw_ld(const void *p, unsigned size) {
    if (size == 4) return __atomic_load_n((const uint32_t *)p, __ATOMIC_SEQ_CST);
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_SEQ_CST);
}

static void ctl_raw_st(void *p, unsigned size, uint64_t v) {
    if (size == 4) __atomic_store_n((uint32_t *)p, (uint32_t)v, __ATOMIC_SEQ_CST);
    else __atomic_store_n((uint64_t *)p, v, __ATOMIC_SEQ_CST);
}

/* the oldest buffered store of coroutine c reaches memory */
static void sb_drain_one(co_t *c) {
    if (!c->nsb) return;
    sb_entry_t e = c->sb[0];
    memmove(c->sb, c->sb + 1, (c->nsb - 1) * sizeof *c->sb);
    c->nsb--;
    ctl_raw_st(X.ctl_addr[e.var], X.ctl_size[e.var], e.val);
    G.evt++;
    trace_event(c->agent, CXL_OP_DRAIN, e.var, 0, e.val, NULL, 0); /* the store reaches memory */
    x_fp(G.lines + e.var, 1);
    x_visible();
}

static void sb_drain_all(co_t *c) { while (c && c->nsb) sb_drain_one(c); }

/* A locked operation or full fence of the current agent drains its store buffer (x86). */
static void x_locked_op(void) { if (X.flags & CXL_XF_TSO) sb_drain_all(x_cur()); }


/* ------------------------------------------------------------------ the model */

static cline_t *cache_line(agent_t *A, uint64_t li) {
    if (!A->cache) {
        A->cache = (cline_t **)calloc(G.lines, sizeof(cline_t *));
        if (!A->cache) abort();
    }
    cline_t *c = A->cache[li];
    if (!c) {
        c = (cline_t *)calloc(1, sizeof *c);
        if (!c) abort();
        memcpy(c->data, G.base + li * CXL_LINE, CXL_LINE);
        A->cache[li] = c;
        x_mark(li);
    }
    return c;
}

static void write_back(cline_t *c, uint64_t li) {
    memcpy(G.base + li * CXL_LINE, c->data, CXL_LINE); /* whole line, like hardware */
    x_mark(li);
    x_fp(li, 1);
    x_visible();
    c->dirty = 0;
    c->wb_pending = 0;
}

static void drop_line(agent_t *A, uint64_t li) {
    if (!A->cache || !A->cache[li]) return;
    x_mark(li);
    if (A->cache[li]->dirty) write_back(A->cache[li], li);
    free(A->cache[li]);
    A->cache[li] = NULL;
}

/* Adversary: now and then a flushed line becomes visible before its fence, or a dirty line
 * is evicted (written back) with no flush at all. */
static void adversary(void) {
    if (!G.cfg.model) return;
    int early = chance(G.cfg.p_early), evict = chance(G.cfg.p_evict);
    if (!early && !evict) return;
    /* an agent with lines in flight, found from a random start */
    agent_t *A = NULL;
    for (uint64_t k = 0, at = rng_next() % MAX_AGENTS; k < MAX_AGENTS; k++) {
        agent_t *c = &G.agents[(at + k) % MAX_AGENTS];
        if (c->used && c->npending && c->cache) { A = c; break; }
    }
    if (!A) return;
    uint64_t li = A->pending[rng_next() % A->npending];
    cline_t *c = A->cache[li];
    if (!c || !c->dirty) return;
    if (c->wb_pending && early) { write_back(c, li); G.early++; }
    else if (!c->wb_pending && evict) { write_back(c, li); G.evictions++; }
}

/* ------------------------------------------------------------------ rule engine */

static inline uint64_t byte_mask(uint64_t off_in_line, uint64_t n) {
    if (n >= 64) return ~0ull;
    return ((1ull << n) - 1) << off_in_line;
}

static void suspect_add(agent_t *A, uint64_t token_line, uint64_t li, const char *file, int ln) {
    for (int i = 0; i < A->nsuspects; i++)
        if (A->suspects[i].token_line == token_line) return;
    if (A->nsuspects == MAX_SUSPECTS) return;
    A->suspects[A->nsuspects++] = (suspect_t){token_line, li, file, ln, 0};
}

/* The record's token is published again: the store began its next instance. */
static void suspect_clear(agent_t *A, uint64_t token_line) {
    for (int i = 0; i < A->nsuspects; i++)
        if (A->suspects[i].token_line == token_line) A->suspects[i--] = A->suspects[--A->nsuspects];
}

/* Two fences later the token was not published again: the body came after its token. */
static void suspect_fence(int a, agent_t *A) {
    for (int i = 0; i < A->nsuspects; i++) {
        suspect_t *x = &A->suspects[i];
        if (++x->fences < 2) continue;
        finding(R_body_after_token, a, -1, x->line, x->file, x->line_no);
        A->suspects[i--] = A->suspects[--A->nsuspects];
    }
}

static void on_store(int a, uint64_t li, uint64_t mask, int kind, const char *file, int ln) {
    agent_t *A = agent_get(a);
    line_state_t *s = &G.ls[li];
    if (!s->rmw) {
        if (s->owner >= 0 && s->owner != a && !s->handed)
            finding(R_two_writers_one_line, a, s->owner, li, file, ln);
        if ((kind & (K_PLAIN | K_NT)) && li >= A->last_token_lo && li <= A->last_token_hi &&
            A->last_token_hi != NO_LINE)
            suspect_add(A, A->last_token_hi, li, file, ln);
        if (s->owner == a && s->state == S_STORED && (s->dirty_mask & mask) && !(kind & K_COMMIT))
            finding(R_overwrite_before_flush, a, -1, li, file, ln);
    }
    s->owner = (int16_t)a;
    s->handed = 0;
    s->state = (kind & K_NT) ? S_FLUSHED : S_STORED;
    s->kinds |= (uint8_t)kind;
    s->dirty_mask |= mask;
    s->st_file = file;
    s->st_line = ln;
    s->last_store_evt = G.evt;
    if (s->pending && A->npending == 0) s->pending = 0; /* owner changed hands */
    pending_add(A, li);
}

static void check_before_publish(int a, uint64_t li, int commit) {
    agent_t *A = agent_get(a);
    for (uint64_t i = 0; i < A->npending; i++) {
        uint64_t p = A->pending[i];
        line_state_t *s = &G.ls[p];
        if (s->owner != a || s->state == S_CLEAN) continue;
        /* the record's body in the token's own line counts too (rules 2 and 4) */
        int covered = (s->kinds & (K_PLAIN | K_NT)) || (commit && p != li && (s->kinds & K_TOKEN));
        if (!covered) continue;
        if (s->state == S_STORED) finding(R_unflushed_before_publish, a, -1, p, s->st_file, s->st_line);
        else if (s->kinds & K_NT) finding(R_nt_unfenced_before_publish, a, -1, p, s->st_file, s->st_line);
        else finding(R_unfenced_before_publish, a, -1, p, s->st_file, s->st_line);
    }
}

static void on_publish(int a, uint64_t rec_li, uint64_t li, int commit, const char *file, int ln) {
    check_before_publish(a, li, commit);
    on_store(a, li, byte_mask(0, 8), commit ? K_COMMIT : K_TOKEN, file, ln);
    line_state_t *s = &G.ls[li];
    s->pub_since_fence = 1;
    if (!commit) {
        agent_t *A = agent_get(a);
        if (rec_li > li || li - rec_li > 255) rec_li = li;
        s->token_line = 1;
        s->rec_before = (uint8_t)(li - rec_li);
        suspect_clear(A, li);
        A->last_token_lo = rec_li;
        A->last_token_hi = li;
    }
}

static void on_flush(int a, uint64_t li, const char *file, int ln) {
    line_state_t *s = &G.ls[li];
    if (s->rmw) return;
    if (s->owner != a || s->state == S_CLEAN) finding(R_clean_flush, a, s->owner, li, file, ln);
    else if (s->state == S_FLUSHED && !(s->kinds & K_NT)) finding(R_redundant_flush, a, -1, li, file, ln);
    if (s->owner == a && s->state == S_STORED) {
        s->state = S_FLUSHED;
        s->dirty_mask = 0;
    }
}

static void on_fence(int a, const char *file, int ln) {
    agent_t *A = agent_get(a);
    int ordered = 0;
    uint64_t keep = 0;
    for (uint64_t i = 0; i < A->npending; i++) {
        uint64_t li = A->pending[i];
        line_state_t *s = &G.ls[li];
        x_mark(li);
        if (s->owner != a) { s->pending = 0; continue; }
        if (s->state == S_FLUSHED) {
            ordered = 1;
            s->state = S_CLEAN;
            s->kinds = 0;
            s->pub_since_fence = 0;
            s->pending = 0;
            continue;
        }
        if (s->state == S_STORED && s->pub_since_fence)
            finding(R_publish_not_flushed, a, -1, li, s->st_file, s->st_line);
        s->pub_since_fence = 0;
        A->pending[keep++] = li;
    }
    A->npending = keep;
    suspect_fence(a, A);
    if (!ordered) finding(R_empty_fence, a, -1, 0, file, ln);
}

static void on_read(int a, uint64_t li, int consume, const char *file, int ln) {
    agent_t *A = agent_get(a);
    line_state_t *s = &G.ls[li];
    if (s->rmw || s->owner < 0 || s->owner == a) {
        if (consume) A->last_consume_line = li;
        return;
    }
    uint64_t inv = inval_of(A)[li];
    /* A store that came after this step's own invalidate of the line is a concurrent write
     * (another role preempted this one): the read is as of the line's fetch, not stale. */
    if (s->last_store_evt > inv && !(inv && inv >= A->step_evt))
        finding(R_read_without_invalidate, a, s->owner, li, file, ln);
    if (consume) {
        A->last_consume_line = li;
    } else {
        /* the token line of the record this line belongs to, if any */
        uint64_t tok = NO_LINE;
        if (s->token_line) tok = li;
        else if (li + 1 < G.lines && G.ls[li + 1].token_line && G.ls[li + 1].rec_before >= 1)
            tok = li + 1;
        if (tok != NO_LINE && A->last_consume_line != tok)
            finding(R_record_read_without_token, a, s->owner, li, file, ln);
    }
}

static void on_invalidate(int a, uint64_t li) { inval_of(agent_get(a))[li] = G.evt; }

/* ------------------------------------------------------------------ the seam, checked */

static inline int in_region(const void *p, uint64_t n) {
    uintptr_t x = (uintptr_t)p, b = (uintptr_t)G.base;
    return G.active && x >= b && x + n <= b + G.size;
}

static void lock(void) { pthread_mutex_lock(&chk_mu); }
static void unlock(void) { pthread_mutex_unlock(&chk_mu); }

/* ------------------------------------------------------------------ sites */

/* The linker bounds the section of site pointers (cxl_seam.h, CXL_SITE); weak, so a build
 * without any site links too. */
extern cxl_site_t *__start_cxl_sites[] __attribute__((weak));
extern cxl_site_t *__stop_cxl_sites[] __attribute__((weak));

static uint32_t site_role(int a) {
    if (a < 0) return 16;
    if (a < 64) return 1;
    if (a < 96) return 2;
    if (a == 96) return 4;
    if (a >= 100 && a < 108) return 8;
    return 16;
}

/* Count an execution of a site (checker active) and return the mutation in force there. */
static uint32_t site_hit(cxl_site_t *s) {
    s->hits++;
    s->roles |= site_role(cur_agent);
    return s->mode;
}

uint32_t cxl_chk_site_count(void) {
    if (!__start_cxl_sites || !__stop_cxl_sites) return 0;
    return (uint32_t)(__stop_cxl_sites - __start_cxl_sites);
}

int cxl_chk_site_info(uint32_t id, cxl_site_t *out) {
    if (id >= cxl_chk_site_count()) return -1;
    lock();
    *out = *__start_cxl_sites[id];
    unlock();
    return 0;
}

int cxl_chk_site_mutate(uint32_t id, uint32_t mode) {
    uint32_t n = cxl_chk_site_count();
    if (mode > CXL_MUT_STALE) return -1;
    lock();
    for (uint32_t i = 0; i < n; i++)
        if (id >= n || i == id) __start_cxl_sites[i]->mode = id >= n ? CXL_MUT_NONE : mode;
    unlock();
    return id < n || mode == CXL_MUT_NONE ? 0 : -1;
}

void cxl_chk_site_reset(void) {
    uint32_t n = cxl_chk_site_count();
    lock();
    for (uint32_t i = 0; i < n; i++) {
        __start_cxl_sites[i]->hits = 0;
        __start_cxl_sites[i]->roles = 0;
    }
    unlock();
}

static void fence_locked(int a, const char *file, int line);

/* A preemption point: at a shared-memory access, now and then (seeded), another role runs a
 * whole step before this access happens. One level deep: no preemption inside that step. */
static void x_point(int boundary);

static void preempt_point(const void *p, uint64_t n, int load, int ctl) {
    if (X.running) { /* exploring: a choice point, before the access */
        co_t *c = x_cur();
        if (!c) return;
        c->pend_p = p;
        c->pend_n = n;
        c->pend_load = load;
        /* where it is in its step is part of its state too: an access that changed nothing
         * (a fence with nothing to order, a switched-off site) must not make two points of
         * one execution look alike, or the second is cut as a revisit of the first */
        c->hist = mix64(c->hist, 0xacce55ull);
        G.points++;
        x_point(0);
        return;
    }
    if (!G.preempt_fn || in_preempt) return;
    lock();
    uint64_t at = G.points++;
    int go = 0;
    uint64_t draw = 0;
    if (plan_at_g != UINT64_MAX) {
        if (at == plan_at_g) {
            go = 1;
            draw = CXL_PREEMPT_PLANNED | plan_role_g | (uint64_t)(plan_steps_g & 0xff) << 16;
        }
    } else if (!ctl && G.cfg.p_preempt > 0.0 && chance(G.cfg.p_preempt)) {
        /* control points draw nothing: seeded runs preempt where they did before */
        go = 1;
        draw = rng_next() & ~CXL_PREEMPT_PLANNED;
    }
    if (go) G.preempts++;
    unlock();
    if (!go) return;
    int me = cur_agent;
    in_preempt = 1;
    G.preempt_fn(G.preempt_arg, draw);
    in_preempt = 0;
    cur_agent = me;
}

void cxl_chk_set_preempt(cxl_chk_preempt_fn fn, void *arg) {
    lock();
    G.preempt_fn = fn;
    G.preempt_arg = arg;
    unlock();
}

uint64_t cxl_chk_preempt_count(void) { return G.preempts; }
uint64_t cxl_chk_preempt_points(void) { return G.points; }

void cxl_chk_plan_preempt(uint64_t at, uint32_t role, uint32_t steps) {
    lock();
    plan_at_g = at;
    plan_role_g = role & 0xffff;
    plan_steps_g = steps;
    unlock();
}

void cxl_chk_observe(const void *p, uint64_t n) {
    if (!X.running) return;
    lock();
    x_hist(hash_bytes(0x0b5e, p, n));
    unlock();
}

void cxl_chk_seal_breached(const char *file, int line) {
    if (!G.active) return;
    lock();
    finding(R_push_after_seal, cur_agent, -1, 0, file, line);
    unlock();
}

static uint64_t line_contrib(uint64_t li) {
    line_state_t *s = &G.ls[li];
    uint64_t h = hash_bytes(mix64(0x11, li), G.base + li * CXL_LINE, CXL_LINE);
    h = mix64(h, (uint64_t)(uint16_t)s->owner | (uint64_t)s->state << 16 | (uint64_t)s->kinds << 24 |
                     (uint64_t)s->pub_since_fence << 32 | (uint64_t)s->token_line << 40 |
                     (uint64_t)s->rec_before << 48 | (uint64_t)s->rmw << 56 | (uint64_t)s->handed << 60);
    h = mix64(h, s->dirty_mask);
    for (uint32_t i = 0; i < X.n; i++) {
        agent_t *A = &G.agents[X.co[i].agent];
        if (A->cache && A->cache[li]) {
            cline_t *c = A->cache[li];
            h = mix64(h, hash_bytes(mix64(0x22, i), c->data, CXL_LINE) ^ c->dirty ^ (uint64_t)c->wb_pending);
        }
        if (A->inval_evt) { /* rule 5's view: invalidated since the last store, within this step */
            uint64_t inv = A->inval_evt[li];
            h = mix64(h, (uint64_t)i << 8 | (uint64_t)(s->last_store_evt > inv) | (uint64_t)(inv && inv >= A->step_evt) << 1);
        }
    }
    return h;
}

static uint64_t x_hash(void) {
    for (uint64_t k = 0; k < X.nmarked; k++) {
        uint64_t li = X.mlist[k];
        X.hlines ^= X.contrib[li];
        X.contrib[li] = line_contrib(li);
        X.hlines ^= X.contrib[li];
        X.marked[li] = 0;
    }
    X.nmarked = 0;
    uint64_t h = mix64(X.hlines, (uint64_t)(X.cur + 1) | (uint64_t)X.ticks << 32);
    for (uint32_t i = 0; i < X.nctl; i++) h = mix64(h, ctl_raw_ld(X.ctl_addr[i], X.ctl_size[i]) ^ (uint64_t)i << 58);
    for (uint32_t i = 0; i < X.n; i++) {
        co_t *c = &X.co[i];
        agent_t *A = &G.agents[c->agent];
        h = mix64(h, c->hist);
        h = mix64(h, (uint64_t)c->status | (uint64_t)c->boundary << 4 |
                         (uint64_t)(c->status == CO_BLOCKED && X.wmark > c->block_mark) << 8);
        if (X.flags & CXL_XF_TICKS) /* how far its idle run has got decides the next jump */
            h = mix64(h, (uint64_t)(c->idle_mark == x_spin() ? (c->idle_n < 2 ? c->idle_n : 2) : 0) |
                             (uint64_t)X.spin_ticks << 8);
        for (uint32_t k = 0; k < c->nsb; k++) h = mix64(h, c->sb[k].val ^ (uint64_t)c->sb[k].var << 56);
        h = mix64(h, A->last_consume_line ^ A->last_token_lo << 20 ^ A->last_token_hi << 40);
        h = mix64(h, (uint64_t)A->nsuspects | (uint64_t)(A->late_fence != NULL) << 8);
        for (int k = 0; k < A->nsuspects; k++)
            h = mix64(h, A->suspects[k].token_line ^ A->suspects[k].line << 24 ^ (uint64_t)A->suspects[k].fences << 56);
    }
    return h;
}

static int co_enabled(uint32_t i) {
    co_t *c = &X.co[i];
    if (c->status == CO_DONE) return 0;
    if (c->status == CO_BLOCKED) return X.wmark > c->block_mark;
    return 1;
}

static int add_opt(cxl_chk_xopt_t *o, uint32_t n, uint32_t code, uint32_t cost) {
    if (n < XOPT_MAX) o[n++] = (cxl_chk_xopt_t){code, cost};
    return (int)n;
}

/* Every agent left waits for a write: time passes (timeouts are the only way on). The frozen
 * clock jumps past every timeout of the protocol (slot, lease, gap), and every waiting agent
 * looks again. Three jumps in a row with no visible write between them: a stall. With
 * CXL_XF_TICKS the jump is also an option at every step's end while an agent waits (a
 * deviation: the others were slow), so a timeout can fire while they could still go on. */
#define X_TICK_NS (10ull * 1000000000ull)
static void x_advance(void) {
    cxl_chk_clock_ns += X_TICK_NS;
    X.ticks++;
    X.wmark++; /* wakes every waiting agent */
    X.tick_mark = X.wmark;
}

static int x_waiting(void) {
    for (uint32_t i = 0; i < X.n; i++)
        if (X.co[i].status == CO_BLOCKED) return 1;
    return 0;
}

/* Timed scopes: every role spins. Each one left is between two steps, has made two idle steps
 * in a row since the last progress step or jump (the scanner's announcing step is idle before
 * its collecting one), or waits for a write, and no store is buffered. Its idle steps still
 * write (the scanner announces and quiesces, the sequencer seals empty epochs), so nobody
 * blocks, yet nothing can change until a timeout fires: a crashed publisher's slot. */
static int x_spinning(void) {
    if (!(X.flags & CXL_XF_TICKS)) return 0;
    int live = 0;
    for (uint32_t i = 0; i < X.n; i++) {
        const co_t *c = &X.co[i];
        if (c->status == CO_DONE) continue;
        live = 1;
        if (!c->boundary || c->nsb) return 0;
        if (c->status == CO_BLOCKED && !co_enabled(i)) continue;
        if (c->idle_mark != x_spin() || c->idle_n < 2) return 0;
    }
    return live;
}

/* Returns 1 when time passed, 0 when not, -1 when the roles spin on with nothing to wait for
 * (three jumps with no progress step in between): a stall. */
static int x_tick(void) {
    int blocked = x_waiting();
    for (uint32_t i = 0; i < X.n && blocked; i++)
        if (co_enabled(i) || X.co[i].nsb) blocked = 0;
    if (blocked) {
        X.idle_ticks = X.wmark == X.tick_mark ? X.idle_ticks + 1 : 1;
        if (X.idle_ticks > 3) return 0;
        x_advance();
        return 1;
    }
    if (!x_spinning()) return 0;
    X.spin_ticks = X.prog == X.prog_at_tick ? X.spin_ticks + 1 : 1;
    if (X.spin_ticks > 3) return -1;
    X.prog_at_tick = X.prog;
    x_advance();
    return 1;
}

/* The options at this point and the default's code (0: nothing can happen). */
static uint32_t x_options(int boundary, cxl_chk_xopt_t *o, uint32_t *dflt) {
    *dflt = 0;
    if (x_tick() < 0) return 0; /* spinning with no timeout left to wait for: a stall */
    const int cur = X.cur;
    const int mid = cur >= 0 && !boundary && X.co[cur].status == CO_RUN;
    uint32_t n = 0, d = 0;
    if (mid) d = (CXL_XO_RUN << 8) | (uint32_t)cur;
    else
        for (uint32_t k = 1; k <= X.n && !d; k++) {
            uint32_t i = (uint32_t)((cur + (int)k) % (int)X.n + (int)X.n) % X.n;
            if (co_enabled(i)) d = (CXL_XO_RUN << 8) | i;
        }
    for (uint32_t i = 0; i < X.n; i++) {
        if (!co_enabled(i)) continue;
        uint32_t code = (CXL_XO_RUN << 8) | i;
        uint32_t cost = code == d ? 0 : (!mid && (X.flags & CXL_XF_FREE_SWITCH)) ? 0 : 1;
        n = (uint32_t)add_opt(o, n, code, cost);
    }
    for (uint32_t i = 0; i < X.n; i++)
        if (X.co[i].nsb) {
            if (!d) d = (CXL_XO_DRAIN << 8) | i;
            uint32_t code = (CXL_XO_DRAIN << 8) | i;
            n = (uint32_t)add_opt(o, n, code, code == d || (X.flags & CXL_XF_FREE_DRAIN) ? 0 : 1);
        }
    if ((X.flags & CXL_XF_MODEL_CHOICES) && G.cfg.model) {
        for (uint32_t i = 0; i < X.n; i++) {
            co_t *c = &X.co[i];
            agent_t *A = &G.agents[c->agent];
            if (c->status == CO_DONE || !A->cache) continue;
            int early = 0, evict = 0, refresh = 0;
            for (uint64_t k = 0; k < A->npending && !(early && evict); k++) {
                cline_t *l = A->cache[A->pending[k]];
                if (!l || !l->dirty) continue;
                if (l->wb_pending) early = 1;
                else evict = 1;
            }
            if (c->pend_load && c->pend_n) {
                uint64_t off = (uint64_t)((const unsigned char *)c->pend_p - G.base);
                for (uint64_t x = off & ~63ull; x < off + c->pend_n && !refresh; x += CXL_LINE) {
                    cline_t *l = A->cache[x / CXL_LINE];
                    refresh = l && !l->dirty && memcmp(l->data, G.base + x, CXL_LINE) != 0;
                }
            }
            if (early) n = (uint32_t)add_opt(o, n, (CXL_XO_EARLY << 8) | i, 1);
            if (evict) n = (uint32_t)add_opt(o, n, (CXL_XO_EVICT << 8) | i, 1);
            if (refresh) n = (uint32_t)add_opt(o, n, (CXL_XO_REFRESH << 8) | i, 1);
        }
    }
    if ((X.flags & CXL_XF_TICKS) && !mid && d && x_waiting())
        n = (uint32_t)add_opt(o, n, CXL_XO_TICK << 8, 1);
    *dflt = d;
    return n;
}

static void x_end(int outcome) {
    X.outcome = outcome;
    co_t *c = x_cur();
    if (c) swapcontext(&c->uc, &X.main_uc);
    else setcontext(&X.main_uc);
}

/* a model choice or a drain: done here, by no agent's code */
static void x_apply(uint32_t code) {
    uint32_t kind = code >> 8, i = code & 0xff;
    co_t *c = &X.co[i];
    agent_t *A = &G.agents[c->agent];
    if (kind == CXL_XO_DRAIN) { sb_drain_one(c); return; }
    if (kind == CXL_XO_TICK) { /* time passing touches every agent: dependent with everything */
        x_advance();
        memset(X.pts[X.cur_pt].wr, 0xff, sizeof X.pts[X.cur_pt].wr);
        return;
    }
    if (kind == CXL_XO_EARLY || kind == CXL_XO_EVICT) {
        for (uint64_t k = 0; k < A->npending; k++) {
            uint64_t li = A->pending[k];
            cline_t *l = A->cache ? A->cache[li] : NULL;
            if (!l || !l->dirty || (l->wb_pending != 0) != (kind == CXL_XO_EARLY)) continue;
            write_back(l, li);
            if (kind == CXL_XO_EARLY) G.early++;
            else G.evictions++;
            x_fp(li, 1);
            return;
        }
        return;
    }
    if (kind == CXL_XO_REFRESH && c->pend_n) { /* the stale copy is gone: the load reads home */
        uint64_t off = (uint64_t)((const unsigned char *)c->pend_p - G.base);
        for (uint64_t x = off & ~63ull; x < off + c->pend_n; x += CXL_LINE) {
            uint64_t li = x / CXL_LINE;
            cline_t *l = A->cache[li];
            if (l && !l->dirty) { free(l); A->cache[li] = NULL; x_mark(li); x_fp(li, 0); }
        }
    }
}

static void x_point(int boundary) {
    for (;;) {
        if (X.npts >= X.max_points) x_end(2);
        cxl_chk_xopt_t o[XOPT_MAX];
        uint32_t dflt = 0;
        lock();
        uint32_t n = x_options(boundary, o, &dflt);
        if (n == 0) {
            int stall = 0;
            for (uint32_t i = 0; i < X.n; i++) stall |= X.co[i].status != CO_DONE;
            unlock();
            x_end(stall ? 1 : 0);
            return;
        }
        uint64_t h = x_hash();
        uint32_t pick = dflt;
        if (X.npts < X.nprefix) {
            pick = X.prefix[X.npts];
            int ok = 0;
            for (uint32_t k = 0; k < n; k++) ok |= o[k].code == pick;
            if (!ok) { unlock(); x_end(3); return; }
        }
        cxl_chk_xpoint_t *pts = grow_array(X.pts, &X.cap_pts, X.npts + 1, 4096, sizeof *pts);
        cxl_chk_xopt_t *opts = pts ? grow_array(X.opts, &X.cap_opts, X.nopts + n, 16384, sizeof *opts) : NULL;
        if (!pts) abort(); /* an exploration out of memory cannot go on truthfully */
        X.pts = pts;
        if (!opts) abort();
        X.opts = opts;
        cxl_chk_xpoint_t *pt = &X.pts[X.npts];
        memset(pt, 0, sizeof *pt);
        pt->hash = h;
        pt->chosen = pick;
        pt->dflt = dflt;
        pt->opt_lo = (uint32_t)X.nopts;
        pt->nopts = n;
        pt->agent = pick & 0xff;
        pt->flags = (pick >> 8) == CXL_XO_RUN && X.co[pick & 0xff].group ? 1 : 0;
        pt->from = X.cur < 0 ? UINT32_MAX : (uint32_t)X.cur;
        pt->boundary = (uint32_t)boundary;
        pt->evt = G.evt;
        memcpy(X.opts + X.nopts, o, n * sizeof *o);
        X.nopts += n;
        X.cur_pt = (int64_t)X.npts++;
        if ((pick >> 8) != CXL_XO_RUN) {
            x_apply(pick);
            unlock();
            continue;
        }
        uint32_t next = pick & 0xff;
        if (X.co[next].status == CO_BLOCKED) X.co[next].status = CO_RUN;
        unlock();
        if ((int)next == X.cur) return;
        int prev = X.cur;
        X.cur = (int)next;
        if (prev >= 0) swapcontext(&X.co[prev].uc, &X.co[next].uc);
        else swapcontext(&X.main_uc, &X.co[next].uc);
        /* resumed */
        cur_agent = X.co[X.cur].agent;
        return;
    }
}

static void co_step_start(co_t *c) {
    lock();
    for (uint32_t k = 0; k < c->ninv && k < XINV_MAX; k++) x_mark(c->inv[k]);
    if (c->ninv > XINV_MAX) for (uint64_t li = 0; li < G.lines; li++) x_mark(li);
    c->ninv = 0;
    unlock();
}

static void co_entry(int i) {
    co_t *c = &X.co[i];
    for (;;) {
        co_step_start(c);
        cxl_chk_set_agent(c->agent);
        c->wrote = 0;
        c->boundary = 0;
        const uint64_t mark = X.wmark; /* a write by another agent during the step unblocks it too */
        int rc = X.step(X.arg, (uint32_t)i);
        lock();
        c->hist = mix64(c->hist, (uint64_t)rc + 0x57e9);
        if (rc) {
            X.prog++;
        } else if (c->idle_mark == x_spin()) {
            c->idle_n++;
        } else {
            c->idle_mark = x_spin();
            c->idle_n = 1;
        }
        if (rc == 2) {
            sb_drain_all(c);
            c->status = CO_DONE;
        } else if (rc == 0 && !c->wrote) { /* an idle step that changed nothing: wait for a write */
            sb_drain_all(c);
            c->status = CO_BLOCKED;
            c->block_mark = mark;
        } else if (c->group && rc == 1) {
            X.wmark++; /* the process memory it shares (epoch buffers) may have changed */
        }
        c->boundary = 1;
        c->pend_p = NULL;
        c->pend_n = 0;
        c->pend_load = 0;
        unlock();
        x_point(1);
    }
}

#define CO_STACK (512u * 1024u)

int cxl_chk_co_run(uint32_t n, const int *agents, const int *groups, cxl_chk_co_step_fn step, void *arg) {
    if (n == 0 || n > CO_MAX || !G.active) return -1;
    lock();
    free(X.contrib);
    free(X.marked);
    X.contrib = (uint64_t *)calloc(G.lines ? G.lines : 1, sizeof(uint64_t));
    X.marked = (uint8_t *)calloc(G.lines ? G.lines : 1, 1);
    X.nmarked = 0;
    X.hlines = 0;
    X.npts = X.nopts = 0;
    X.cur_pt = -1;
    X.nctl = 0;
    X.wmark = 0;
    X.ticks = X.idle_ticks = X.spin_ticks = 0;
    X.tick_mark = X.prog = X.prog_at_tick = 0;
    X.outcome = 0;
    X.n = n;
    X.cur = -1;
    X.step = step;
    X.arg = arg;
    int ok = X.contrib && X.marked;
    for (uint32_t i = 0; i < n && ok; i++) {
        co_t *c = &X.co[i];
        memset(c, 0, sizeof *c);
        c->agent = agents[i];
        c->group = groups ? groups[i] : 0;
        c->boundary = 1;
        c->stack = malloc(CO_STACK);
        ok = c->stack && getcontext(&c->uc) == 0;
        if (!ok) break;
        c->uc.uc_stack.ss_sp = c->stack;
        c->uc.uc_stack.ss_size = CO_STACK;
        c->uc.uc_link = &X.main_uc;
        makecontext(&c->uc, (void (*)(void))co_entry, 1, (int)i);
    }
    X.running = ok;
    unlock();
    /* one frozen time for every exploration of this process: equal states hash equal */
    static uint64_t frozen_ns;
    if (!frozen_ns) frozen_ns = cxl_now_ns();
    if (ok) {
        cxl_chk_clock_ns = frozen_ns;
        cxl_chk_clock_read = x_clock_read;
    }
    if (ok) {
        volatile int started = 0;
        getcontext(&X.main_uc);
        if (!started) {
            started = 1;
            x_point(1); /* the first choice: which agent begins */
        }
    }
    lock();
    X.running = 0;
    for (uint32_t i = 0; i < n; i++) {
        sb_drain_all(&X.co[i]); /* a stopped run's buffered stores still land */
        free(X.co[i].stack);
        X.co[i].stack = NULL;
    }
    X.cur = -1;
    unlock();
    cxl_chk_clock_ns = 0;
    cxl_chk_clock_read = 0;
    cur_agent = 0;
    return ok ? X.outcome : -1;
}

int cxl_chk_explore_on(void) { return X.on && G.active; }

int cxl_chk_explore_set(int on, uint32_t flags, const uint32_t *prefix, uint64_t n, uint64_t max_points) {
    lock();
    free(X.prefix);
    X.prefix = NULL;
    X.nprefix = 0;
    X.on = on;
    X.flags = flags;
    X.max_points = max_points ? max_points : 1000000;
    if (n) {
        X.prefix = (uint32_t *)malloc(n * sizeof *X.prefix);
        if (!X.prefix) { unlock(); return -1; }
        memcpy(X.prefix, prefix, n * sizeof *X.prefix);
        X.nprefix = n;
    }
    unlock();
    return 0;
}

uint64_t cxl_chk_explore_points(cxl_chk_xpoint_t **pts, cxl_chk_xopt_t **opts, uint64_t *nopts) {
    *pts = X.pts;
    *opts = X.opts;
    *nopts = X.nopts;
    return X.npts;
}

int cxl_chk_explore_outcome(void) { return X.outcome; }

/* ------------------------------------------------------------------ control sites */

extern cxl_ctl_site_t *__start_cxl_ctl_sites[] __attribute__((weak));
extern cxl_ctl_site_t *__stop_cxl_ctl_sites[] __attribute__((weak));

uint32_t cxl_chk_ctl_site_count(void) {
    if (!__start_cxl_ctl_sites || !__stop_cxl_ctl_sites) return 0;
    return (uint32_t)(__stop_cxl_ctl_sites - __start_cxl_ctl_sites);
}

int cxl_chk_ctl_site_info(uint32_t id, cxl_ctl_site_t *out) {
    if (id >= cxl_chk_ctl_site_count()) return -1;
    *out = *__start_cxl_ctl_sites[id];
    return 0;
}

int cxl_chk_ctl_weaken(uint32_t id, int32_t order) {
    uint32_t n = cxl_chk_ctl_site_count();
    if (order < -1 || order > 5) return -1;
    for (uint32_t i = 0; i < n; i++)
        if (id >= n || i == id) __start_cxl_ctl_sites[i]->weak = id >= n ? -1 : order;
    return id < n || order == -1 ? 0 : -1;
}

static int ctl_order(const cxl_ctl_site_t *s) { return s->weak >= 0 ? s->weak : s->order; }

uint64_t cxl_chk_ctl_load(const void *p, unsigned size, cxl_ctl_site_t *site) {
    site->hits++;
    if (!G.active) return ctl_raw_ld(p, size);
    preempt_point(NULL, 0, 0, 1);
    lock();
    uint32_t var = ctl_var((void *)p, size);
    uint64_t v = 0;
    int found = 0;
    co_t *c = x_cur();
    if (c && (X.flags & CXL_XF_TSO))
        for (uint32_t k = c->nsb; k-- > 0 && !found;)
            if (c->sb[k].var == var) { v = c->sb[k].val; found = 1; } /* store forwarding */
    if (!found) { v = ctl_raw_ld(p, size); x_fp(G.lines + var, 0); }
    G.evt++;
    trace_event(cur_agent, CXL_OP_CTL_LOAD, var, 0, v, site->file, site->line);
    x_hist(v);
    unlock();
    return v;
}

void cxl_chk_ctl_store(void *p, uint64_t v, unsigned size, cxl_ctl_site_t *site) {
    site->hits++;
    if (!G.active) { ctl_raw_st(p, size, v); return; }
    preempt_point(NULL, 0, 0, 1);
    lock();
    uint32_t var = ctl_var(p, size);
    G.evt++;
    trace_event(cur_agent, CXL_OP_CTL_STORE, var, 0, v, site->file, site->line);
    co_t *c = x_cur();
    x_wrote();
    if (c && (X.flags & CXL_XF_TSO)) {
        if (c->nsb == SB_MAX) sb_drain_one(c);
        c->sb[c->nsb++] = (sb_entry_t){var, 0, v};
        if (ctl_order(site) == __ATOMIC_SEQ_CST) sb_drain_all(c); /* xchg: a locked store */
    } else {
        ctl_raw_st(p, size, v);
        x_fp(G.lines + var, 1);
        x_visible();
    }
    unlock();
}

uint64_t cxl_chk_ctl_fetch_add(void *p, uint64_t v, unsigned size, cxl_ctl_site_t *site) {
    site->hits++;
    if (!G.active) {
        if (size == 4) return __atomic_fetch_add((uint32_t *)p, (uint32_t)v, __ATOMIC_SEQ_CST);
        return __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_SEQ_CST);
    }
    preempt_point(NULL, 0, 0, 1);
    lock();
    uint32_t var = ctl_var(p, size);
    x_locked_op();
    uint64_t old = size == 4 ? __atomic_fetch_add((uint32_t *)p, (uint32_t)v, __ATOMIC_SEQ_CST)
                             : __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_SEQ_CST);
    G.evt++;
    trace_event(cur_agent, CXL_OP_CTL_RMW, var, 0, v, site->file, site->line);
    x_fp(G.lines + var, 1);
    x_visible();
    x_wrote();
    x_hist(old);
    unlock();
    return old;
}

/* ------------------------------------------------------------------ a toy program
 * Agents 0..n-1, each `steps` steps of one control store: the explorer's own test (the number
 * of interleavings and of distinct states is known in closed form). */
static uint64_t toy_word[CO_MAX];
static uint32_t toy_done[CO_MAX], toy_steps;
static int toy_shared;

static int toy_step(void *arg, uint32_t i) {
    (void)arg;
    static cxl_ctl_site_t site = {__FILE__, "toy_step", __LINE__, CXL_CTL_STORE, __ATOMIC_SEQ_CST, -1, 0};
    cxl_chk_ctl_store(&toy_word[toy_shared ? 0 : i], 1000u * i + toy_done[i] + 1, 8, &site);
    return ++toy_done[i] >= toy_steps ? 2 : 1;
}

int cxl_chk_toy_run(uint32_t n, uint32_t steps, int shared) {
    if (n == 0 || n > CO_MAX || steps == 0) return -1;
    int agents[CO_MAX], groups[CO_MAX];
    for (uint32_t i = 0; i < n; i++) { agents[i] = (int)i; groups[i] = 0; toy_done[i] = 0; toy_word[i] = 0; }
    toy_steps = steps;
    toy_shared = shared;
    return cxl_chk_co_run(n, agents, groups, toy_step, NULL);
}

uint32_t cxl_chk_sched_pick(uint32_t n, uint32_t dflt) {
    if (!G.active || n == 0) return dflt;
    lock();
    uint32_t pick = dflt;
    if (G.nsched < nforced_g) pick = forced_g[G.nsched] % n;
    else if (nforced_g && sched_mode_g == 1) { unlock(); return n; } /* the runner stops */
    else if (nforced_g && sched_mode_g == 2) pick = (uint32_t)((G.nsched - nforced_g) % n);
    uint32_t *grown = grow_array(G.sched, &G.cap_sched, G.nsched + 1, 4096, sizeof *grown);
    if (grown) G.sched = grown;
    if (G.nsched < G.cap_sched) G.sched[G.nsched] = pick;
    G.nsched++;
    unlock();
    return pick;
}

int cxl_chk_set_schedule(const uint32_t *picks, uint64_t n) {
    lock();
    free(forced_g);
    forced_g = NULL;
    nforced_g = 0;
    if (n) {
        forced_g = (uint32_t *)malloc(n * sizeof *forced_g);
        if (!forced_g) { unlock(); return -1; }
        memcpy(forced_g, picks, n * sizeof *forced_g);
        nforced_g = n;
    }
    unlock();
    return 0;
}

void cxl_chk_set_schedule_mode(int mode) { sched_mode_g = mode; }

uint64_t cxl_chk_schedule(uint32_t *out, uint64_t max) {
    lock();
    uint64_t have = G.nsched < G.cap_sched ? G.nsched : G.cap_sched;
    uint64_t n = have < max ? have : max;
    if (n) memcpy(out, G.sched, n * sizeof *out);
    unlock();
    return have;
}

static void model_store(int a, uint64_t off, const void *src, uint64_t n, int nt) {
    agent_t *A = agent_get(a);
    const unsigned char *s = (const unsigned char *)src;
    while (n) {
        uint64_t li = off / CXL_LINE, o = off % CXL_LINE, k = CXL_LINE - o < n ? CXL_LINE - o : n;
        x_mark(li);
        if (G.cfg.model) {
            cline_t *c = cache_line(A, li);
            memcpy(c->data + o, s, k);
            c->dirty |= byte_mask(o, k);
            if (nt) c->wb_pending = 1;
        } else {
            memcpy(G.base + off, s, k);
        }
        off += k; s += k; n -= k;
    }
}

static void model_load(int a, uint64_t off, void *dst, uint64_t n) {
    agent_t *A = agent_get(a);
    unsigned char *d = (unsigned char *)dst;
    while (n) {
        uint64_t li = off / CXL_LINE, o = off % CXL_LINE, k = CXL_LINE - o < n ? CXL_LINE - o : n;
        if (G.cfg.model) {
            cline_t *c = cache_line(A, li);
            if (memcmp(c->data + o, G.base + off, k) != 0 && !c->dirty) G.stale_reads++;
            memcpy(d, c->data + o, k);
        } else {
            memcpy(d, G.base + off, k);
        }
        off += k; d += k; n -= k;
    }
}

static void store_common(void *p, const void *src, uint64_t n, int kind, int op, uint64_t value,
                         const char *file, int ln) {
    if (!in_region(p, n)) {
        memcpy(p, src, n);
        return;
    }
    preempt_point(p, n, 0, 0);
    lock();
    int a = cur_agent;
    uint64_t off = (uint64_t)((unsigned char *)p - G.base);
    G.evt++;
    trace_event(a, op, off, n, value, file, ln);
    x_wrote();
    for (uint64_t x = off & ~63ull; x < off + n; x += CXL_LINE) {
        uint64_t lo = x > off ? x : off, hi = x + CXL_LINE < off + n ? x + CXL_LINE : off + n;
        on_store(a, x / CXL_LINE, byte_mask(lo - x, hi - lo), kind, file, ln);
        x_mark(x / CXL_LINE);
        x_fp(x / CXL_LINE, 1);
    }
    if (!G.cfg.model) x_visible();
    model_store(a, off, src, n, kind == K_NT);
    adversary();
    unlock();
}

static void load_common(const void *p, void *dst, uint64_t n, int consume, const char *file,
                        int ln) {
    if (!in_region(p, n)) {
        memcpy(dst, p, n);
        return;
    }
    preempt_point(p, n, 1, 0);
    lock();
    int a = cur_agent;
    uint64_t off = (uint64_t)((const unsigned char *)p - G.base);
    G.evt++;
    trace_event(a, consume ? CXL_OP_CONSUME : CXL_OP_LOAD, off, n, 0, file, ln);
    for (uint64_t x = off & ~63ull; x < off + n; x += CXL_LINE) {
        on_read(a, x / CXL_LINE, consume, file, ln);
        x_fp(x / CXL_LINE, 0);
    }
    model_load(a, off, dst, n);
    x_hist(hash_bytes((uint64_t)consume, dst, n));
    adversary();
    unlock();
}

void cxl_chk_st(void *p, uint64_t v, unsigned size, const char *file, int line) {
    store_common(p, &v, size, K_PLAIN, CXL_OP_STORE, v, file, line);
}

uint64_t cxl_chk_ld(const void *p, unsigned size, const char *file, int line) {
    uint64_t v = 0;
    load_common(p, &v, size, 0, file, line);
    return v;
}

void cxl_chk_publish64(const void *rec, void *p, uint64_t v, int commit, cxl_site_t *site) {
    const char *file = site->file;
    const int line = site->line;
    if (!in_region(p, 8)) {
        __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
        return;
    }
    preempt_point(p, 8, 0, 0);
    lock();
    int a = cur_agent;
    if (site_hit(site) == CXL_MUT_DELETE) { unlock(); return; }
    uint64_t off = (uint64_t)((unsigned char *)p - G.base);
    x_wrote();
    x_mark(off / CXL_LINE);
    x_fp(off / CXL_LINE, 1);
    if (!G.cfg.model) x_visible();
    G.evt++;
    trace_event(a, commit ? CXL_OP_COMMIT : CXL_OP_PUBLISH, off, 8, v, file, line);
    uint64_t rec_li = in_region(rec, 1) ? (uint64_t)((const unsigned char *)rec - G.base) / CXL_LINE
                                        : off / CXL_LINE;
    on_publish(a, rec_li, off / CXL_LINE, commit, file, line);
    model_store(a, off, &v, 8, 0);
    agent_t *A = agent_get(a);
    if (A->late_fence) { /* mutation: the fence moved here, after the publication */
        const cxl_site_t *f = A->late_fence;
        A->late_fence = NULL;
        G.evt++;
        trace_event(a, CXL_OP_FENCE, 0, 0, 1, f->file, f->line);
        fence_locked(a, f->file, f->line);
    }
    adversary();
    unlock();
}

uint64_t cxl_chk_consume64(const void *p, const char *file, int line) {
    if (!in_region(p, 8)) return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
    uint64_t v = 0;
    load_common(p, &v, 8, 1, file, line);
    return v;
}

uint64_t cxl_chk_fetch_add64(void *p, uint64_t v, const char *file, int line) {
    if (!in_region(p, 8)) return __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_ACQ_REL);
    preempt_point(p, 8, 0, 0);
    lock();
    int a = cur_agent;
    uint64_t off = (uint64_t)((unsigned char *)p - G.base), li = off / CXL_LINE;
    G.evt++;
    trace_event(a, CXL_OP_RMW, off, 8, v, file, line);
    x_locked_op();
    /* Atomics act on home: write back and drop this agent's copy first. */
    if (G.cfg.model) drop_line(agent_get(a), li);
    uint64_t old = __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_ACQ_REL);
    G.ls[li].rmw = 1; /* shared by design: exempt from the single-writer rules */
    x_mark(li);
    x_fp(li, 1);
    x_visible();
    x_wrote();
    x_hist(old);
    unlock();
    return old;
}

int cxl_chk_cas64(void *p, uint64_t *expected, uint64_t desired, const char *file, int line) {
    if (!in_region(p, 8))
        return __atomic_compare_exchange_n((uint64_t *)p, expected, desired, 0, __ATOMIC_ACQ_REL,
                                           __ATOMIC_ACQUIRE);
    preempt_point(p, 8, 0, 0);
    lock();
    int a = cur_agent;
    uint64_t off = (uint64_t)((unsigned char *)p - G.base), li = off / CXL_LINE;
    G.evt++;
    trace_event(a, CXL_OP_RMW, off, 8, desired, file, line);
    x_locked_op();
    if (G.cfg.model) drop_line(agent_get(a), li);
    int ok = __atomic_compare_exchange_n((uint64_t *)p, expected, desired, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE);
    G.ls[li].rmw = 1;
    x_mark(li);
    x_fp(li, 1);
    x_visible();
    x_wrote();
    x_hist((uint64_t)ok ^ *expected << 1);
    unlock();
    return ok;
}

void cxl_chk_copy_in(void *dst, const void *src, size_t n, int nt, const char *file, int line) {
    if (n == 0) return;
    uint64_t t0 = cxl_dm_active_g ? cxl_dm_copy_begin(dst, n) : 0; /* the region's device model */
    store_common(dst, src, n, nt ? K_NT : K_PLAIN, nt ? CXL_OP_NT_STORE : CXL_OP_STORE, 0, file,
                 line);
    if (t0) cxl_dm_copy_end(dst, n, t0);
    if (nt && cxl_dm_active_g) cxl_dm_nt_issued(dst, n);
}

void cxl_chk_copy_out(void *dst, const void *src, size_t n, const char *file, int line) {
    if (n == 0) return;
    load_common(src, dst, n, 0, file, line);
    if (cxl_dm_active_g) cxl_dm_read_end();
}

void cxl_chk_flush(const void *p, cxl_site_t *site) {
    const char *file = site->file;
    const int line = site->line;
    if (cxl_dm_active_g) (void)cxl_dm_flush_begin(p); /* its cost is paid at the next fence */
    if (!in_region(p, 1)) return;
    preempt_point(p, 1, 0, 0);
    lock();
    if (site_hit(site) == CXL_MUT_DELETE) { unlock(); return; }
    int a = cur_agent;
    uint64_t li = (uint64_t)((const unsigned char *)p - G.base) / CXL_LINE;
    x_mark(li);
    x_fp(li, 1);
    G.evt++;
    trace_event(a, CXL_OP_FLUSH, li * CXL_LINE, CXL_LINE, 0, file, line);
    on_flush(a, li, file, line);
    if (G.cfg.model) {
        agent_t *A = agent_get(a);
        if (A->cache && A->cache[li] && A->cache[li]->dirty) A->cache[li]->wb_pending = 1;
    }
    adversary();
    unlock();
}

/* A fence of agent a: its flushed lines reach home, then the rules see it. */
static void fence_locked(int a, const char *file, int line) {
    agent_t *A = agent_get(a);
    if (G.cfg.model && A->cache) {
        for (uint64_t i = 0; i < A->npending; i++) {
            cline_t *c = A->cache[A->pending[i]];
            if (c && c->wb_pending) write_back(c, A->pending[i]);
        }
    }
    on_fence(a, file, line);
}

void cxl_chk_fence(int kind, cxl_site_t *site) {
    const char *file = site->file;
    const int line = site->line;
    if (cxl_dm_active_g && kind != 3) cxl_dm_fence_end();
    if (!G.active) return;
    if (kind != 3) preempt_point(NULL, 0, 0, 0);
    lock();
    int a = cur_agent;
    uint32_t mode = site_hit(site);
    if (kind == 2 && mode != CXL_MUT_DELETE) x_locked_op(); /* mfence drains the store buffer */
    if (kind == 3 || mode == CXL_MUT_DELETE) { unlock(); return; } /* a load fence orders no write-back */
    if (mode == CXL_MUT_FENCE_LATE) { /* done after this agent's next publication instead */
        agent_get(a)->late_fence = site;
        unlock();
        return;
    }
    G.evt++;
    trace_event(a, CXL_OP_FENCE, 0, 0, (uint64_t)kind, file, line);
    fence_locked(a, file, line);
    unlock();
}

void cxl_chk_invalidate(const void *p, size_t n, cxl_site_t *site) {
    const char *file = site->file;
    const int line = site->line;
    if (cxl_dm_active_g) cxl_dm_invalidate(p, n, 0); /* the device's read cost, timed only */
    if (!in_region(p, n ? n : 1)) return;
    preempt_point(p, n ? n : 1, 0, 0);
    lock();
    if (site_hit(site) != CXL_MUT_NONE) { unlock(); return; } /* served stale */
    int a = cur_agent;
    uint64_t off = (uint64_t)((const unsigned char *)p - G.base);
    G.evt++;
    trace_event(a, CXL_OP_INVALIDATE, off, n, 0, file, line);
    for (uint64_t x = off & ~63ull; x < off + (n ? n : 1); x += CXL_LINE) {
        on_invalidate(a, x / CXL_LINE);
        x_mark(x / CXL_LINE);
        x_fp(x / CXL_LINE, 1);
        co_t *xc = x_cur();
        if (xc) { if (xc->ninv < XINV_MAX) xc->inv[xc->ninv] = x / CXL_LINE; xc->ninv++; }
        if (G.cfg.model) drop_line(agent_get(a), x / CXL_LINE);
    }
    unlock();
}

void cxl_chk_set_agent(int agent) {
    cur_agent = agent;
    if (!G.active) return;
    lock();
    agent_get(agent)->step_evt = G.evt + 1; /* a runner sets the agent at each step's start */
    unlock();
}

/* The protocol hands these lines to the current agent: forget their previous writer (a clean
 * line only: one still pending with another agent stays a two-writer conflict). */
void cxl_chk_take_lines(const void *p, size_t n, cxl_site_t *site) {
    if (!in_region(p, n ? n : 1)) return;
    lock();
    if (site_hit(site) == CXL_MUT_DELETE) { unlock(); return; }
    uint64_t off = (uint64_t)((const unsigned char *)p - G.base);
    for (uint64_t x = off & ~63ull; x < off + (n ? n : 1); x += CXL_LINE) {
        line_state_t *s = &G.ls[x / CXL_LINE];
        if (s->state == S_CLEAN) s->owner = -1;
        x_mark(x / CXL_LINE);
        x_fp(x / CXL_LINE, 1);
    }
    unlock();
}

/* The region was formatted under the checker: its formatter hands every line it made durable
 * to the roles, who may write them (a line it left unflushed stays its own, so the next writer
 * conflicts). Readers still see the formatter as the line's last writer: they invalidate
 * before their first read, as a host that cached the region before it was formatted must. */
void cxl_chk_handoff(void) {
    lock();
    for (uint64_t li = 0; li < G.lines; li++)
        if (G.ls[li].state == S_CLEAN) G.ls[li].handed = 1;
    unlock();
}

/* ------------------------------------------------------------------ control */

static void free_state(void) {
    for (int a = 0; a < MAX_AGENTS; a++) {
        agent_t *A = &G.agents[a];
        if (A->cache) {
            for (uint64_t li = 0; li < G.lines; li++) free(A->cache[li]);
            free(A->cache);
        }
        free(A->inval_evt);
        free(A->pending);
    }
    free(G.ls);
    free(G.trace);
    free(G.sched);
    memset(&G, 0, sizeof G);
}

int cxl_chk_begin(void *base, uint64_t size, const cxl_chk_cfg_t *cfg) {
    lock();
    free_state();
    G.cfg = *cfg;
    G.base = (unsigned char *)base;
    G.size = size - size % CXL_LINE;
    G.lines = G.size / CXL_LINE;
    G.ls = (line_state_t *)calloc(G.lines ? G.lines : 1, sizeof(line_state_t));
    G.rng = cfg->seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    if (cfg->keep_trace && cfg->trace_capacity)
        G.trace = (cxl_chk_event_t *)calloc(cfg->trace_capacity, sizeof(cxl_chk_event_t));
    int ok = G.ls && (!cfg->keep_trace || !cfg->trace_capacity || G.trace);
    for (uint64_t i = 0; ok && i < G.lines; i++) G.ls[i].owner = -1;
    G.active = ok;
    unlock();
    return ok ? 0 : -1;
}

void cxl_chk_end(void) {
    lock();
    G.active = 0;
    unlock();
}

/* Drive the rule engine from a trace recorded elsewhere (no model: there is no memory). */
void cxl_chk_feed(int agent, int op, uint64_t off, uint64_t size, const char *file, int ln) {
    if (!G.ls || off >= G.size) return;
    lock();
    int a = agent < 0 || agent >= MAX_AGENTS ? MAX_AGENTS - 1 : agent;
    if (size == 0) size = 1;
    if (off + size > G.size) size = G.size - off;
    uint64_t li = off / CXL_LINE, end = (off + size - 1) / CXL_LINE;
    G.evt++;
    switch (op) {
    case CXL_OP_STORE:
    case CXL_OP_NT_STORE:
        for (uint64_t l = li; l <= end; l++) {
            uint64_t lo = l * CXL_LINE > off ? l * CXL_LINE : off;
            uint64_t hi = (l + 1) * CXL_LINE < off + size ? (l + 1) * CXL_LINE : off + size;
            on_store(a, l, byte_mask(lo - l * CXL_LINE, hi - lo), op == CXL_OP_NT_STORE ? K_NT : K_PLAIN, file, ln);
        }
        break;
    case CXL_OP_PUBLISH:
    case CXL_OP_COMMIT: {
        /* a fed publish of `size` bytes names its whole record: [off, off + size) */
        uint64_t tok = op == CXL_OP_PUBLISH ? end : li;
        on_publish(a, li, tok, op == CXL_OP_COMMIT, file, ln);
        break;
    }
    case CXL_OP_LOAD:
    case CXL_OP_CONSUME:
        for (uint64_t l = li; l <= end; l++) on_read(a, l, op == CXL_OP_CONSUME, file, ln);
        break;
    case CXL_OP_FLUSH:
        for (uint64_t l = li; l <= end; l++) on_flush(a, l, file, ln);
        break;
    case CXL_OP_FENCE: on_fence(a, file, ln); break;
    case CXL_OP_INVALIDATE:
        for (uint64_t l = li; l <= end; l++) on_invalidate(a, l);
        break;
    case CXL_OP_RMW: G.ls[li].rmw = 1; break;
    default: break;
    }
    unlock();
}

/* End of a trace: every store still pending was never made durable. */
void cxl_chk_finish(void) {
    lock();
    for (int a = 0; a < MAX_AGENTS; a++) {
        agent_t *A = &G.agents[a];
        for (uint64_t i = 0; A->used && i < A->npending; i++) {
            line_state_t *s = &G.ls[A->pending[i]];
            if (s->owner == a && s->state != S_CLEAN)
                finding(R_unpersisted_at_end, a, -1, A->pending[i], s->st_file, s->st_line);
        }
        suspect_fence(a, A);
        suspect_fence(a, A);
    }
    unlock();
}

uint64_t cxl_chk_findings(cxl_chk_finding_t *out, uint64_t max) {
    lock();
    uint64_t n = G.nfindings < max ? G.nfindings : max;
    memcpy(out, G.findings, n * sizeof *out);
    unlock();
    return n;
}

uint64_t cxl_chk_rule_total(uint32_t rule) { return rule < R_COUNT_PLUS1 ? G.rule_total[rule] : 0; }
uint32_t cxl_chk_rule_count(void) { return R_COUNT_PLUS1 - 1; }
const char *cxl_chk_rule_name(uint32_t r) { return r < R_COUNT_PLUS1 ? rule_names[r] : ""; }
const char *cxl_chk_rule_doc(uint32_t r) { return r < R_COUNT_PLUS1 ? rule_docs[r] : ""; }
uint32_t cxl_chk_rule_severity(uint32_t r) { return r < R_COUNT_PLUS1 ? rule_sev[r] : 0; }
uint64_t cxl_chk_event_count(void) { return G.evt; }

uint64_t cxl_chk_trace(cxl_chk_event_t **out) {
    *out = G.trace;
    return G.ntrace;
}

uint64_t cxl_chk_model_stats(uint64_t *early, uint64_t *evictions, uint64_t *stale_reads) {
    *early = G.early;
    *evictions = G.evictions;
    *stale_reads = G.stale_reads;
    return G.evt;
}
