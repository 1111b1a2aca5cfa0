/*
 * cxl_runner.c -- runners (threads, pinned workers, deterministic), watchdog, leases, stats, records, fault catalogue.
 */
#include "cxl_log_int.h"

/* ------------------------------------------------------------------ runners */

typedef struct role {
    cxl_log_t *L;
    int kind;    /* CXL_KIND_*: publisher, scanner/acker, sequencer, subscriber */
    void *obj;
    int agent;
    int done;
    pthread_t th;
} role_t;

static int role_step(role_t *r) {
    cxl_log_t *L = r->L;
    switch (r->kind) {
    case CXL_KIND_PUBLISHER: return pub_step(L, (publisher_t *)r->obj);
    case CXL_KIND_SCANNER: return L->cfg.order == 0 ? ack0_step(L, (scanner_t *)r->obj)
                                     : scan_step(L, (scanner_t *)r->obj);
    case CXL_KIND_SEQUENCER: return L->cfg.order == 5 ? seq5_step(L) : seq_step(L);
    default: return L->cfg.order == 0 ? sub0_step(L, (subscriber_t *)r->obj)
                                      : sub2_step(L, (subscriber_t *)r->obj);
    }
}

static void role_finished(role_t *r);

static void *role_thread(void *arg) {
    role_t *r = (role_t *)arg;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* 1 us: back-off sleeps stay short */
    CXL_AGENT_SET(r->agent);
    unsigned idle = 0;
    while (!atomic_load_explicit(&r->L->stop, memory_order_relaxed)) {
        int rc = role_step(r);
        if (rc == STEP_DONE) break;
        if (rc == STEP_PROGRESS) {
            idle = 0;
            note_progress(r->L);
        } else {
            backoff(&idle);
        }
    }
    role_finished(r);
    return NULL;
}

/* The roles of one worker, stepped round-robin; it backs off only when a whole round made
 * no progress, so a role that waits never starves the others on its CPU. */
typedef struct {
    cxl_log_t *L;
    role_t *roles;
    uint32_t n, first, stride;
    int cpu;
    pthread_t th;
} worker_t;

static void role_finished(role_t *r) {
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&r->L->done_mu);
    r->L->roles_finished++;
    pthread_cond_signal(&r->L->done_cv);
    pthread_mutex_unlock(&r->L->done_mu);
}

static void *worker_thread(void *arg) {
    worker_t *w = (worker_t *)arg;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set); /* best effort */
    }
    unsigned idle = 0;
    uint32_t left = 0;
    for (uint32_t i = w->first; i < w->n; i += w->stride) left++;
    while (left && !atomic_load_explicit(&w->L->stop, memory_order_relaxed)) {
        int progress = 0;
        for (uint32_t i = w->first; i < w->n; i += w->stride) {
            role_t *r = &w->roles[i];
            if (r->done) continue;
            CXL_AGENT_SET(r->agent);
            int rc = role_step(r);
            if (rc == STEP_DONE) {
                role_finished(r);
                left--;
                progress = 1;
            } else if (rc == STEP_PROGRESS) {
                progress = 1;
            }
        }
        if (progress) {
            idle = 0;
            note_progress(w->L);
        } else {
            backoff(&idle);
        }
    }
    /* stopped early: mark what is left, so the watchdog's count still closes */
    for (uint32_t i = w->first; i < w->n; i += w->stride)
        if (!w->roles[i].done) role_finished(&w->roles[i]);
    return NULL;
}

static uint32_t build_roles(cxl_log_t *L, uint32_t mask, uint32_t pub_brokers,
                            uint32_t sub_mask, role_t *roles) {
    uint32_t n = 0;
    if (mask & CXL_ROLE_PUBLISHERS)
        for (uint32_t i = 0; i < L->npubs; i++)
            if (pub_brokers & (1u << L->pubs[i].broker))
                roles[n++] = (role_t){L, CXL_KIND_PUBLISHER, &L->pubs[i], AGENT_PUB + (int)i, 0, 0};
    if (mask & CXL_ROLE_SCANNERS) {
        for (uint32_t b = 0; b < L->cfg.brokers; b++)
            roles[n++] = (role_t){L, CXL_KIND_SCANNER, &L->scan[b], AGENT_SCAN + (int)b, 0, 0};
        if (L->cfg.order >= 2) roles[n++] = (role_t){L, CXL_KIND_SEQUENCER, NULL, AGENT_SEQ, 0, 0};
    }
    if (mask & CXL_ROLE_SUBSCRIBERS)
        for (uint32_t k = 0; k < L->cfg.subscribers; k++)
            if (sub_mask & (1u << k))
                roles[n++] = (role_t){L, CXL_KIND_SUBSCRIBER, &L->sub[k], AGENT_SUB + (int)k, 0, 0};
    return n;
}

static uint32_t watchdog_roles(role_t *roles, uint32_t n) {
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!__atomic_load_n(&roles[i].done, __ATOMIC_ACQUIRE)) m |= 1u << roles[i].kind;
    return m;
}

static void place(cxl_log_t *L, const role_t *roles, uint32_t n, uint32_t nworkers) {
    L->nplaced = n < CXL_MAX_ROLES ? n : CXL_MAX_ROLES;
    for (uint32_t i = 0; i < L->nplaced; i++) {
        uint32_t w = nworkers ? i % nworkers : i;
        L->placed[i] = (cxl_placement_t){roles[i].kind, roles[i].agent, (int)w,
                                         nworkers && L->ncpus ? L->cpus[w % L->ncpus] : -1};
    }
}

static int watch(cxl_log_t *L, role_t *roles, uint32_t started, int rc);

static int run_workers(cxl_log_t *L, role_t *roles, uint32_t n) {
    uint32_t nw = L->workers < n ? L->workers : n;
    worker_t w[CXL_MAX_WORKERS];
    uint32_t started = 0;
    int rc = 0;
    place(L, roles, n, nw);
    for (; started < nw; started++) {
        w[started] = (worker_t){L, roles, n, started, nw,
                                L->ncpus ? L->cpus[started % L->ncpus] : -1, 0};
        if (pthread_create(&w[started].th, NULL, worker_thread, &w[started]) != 0) {
            atomic_store(&L->stop, 1);
            rc = -1;
            break;
        }
    }
    if (started < nw) /* roles of workers never started: finished, so the count closes */
        for (uint32_t i = 0; i < n; i++)
            if (i % nw >= started) role_finished(&roles[i]);
    rc = watch(L, roles, n, rc);
    for (uint32_t i = 0; i < started; i++) pthread_join(w[i].th, NULL);
    return rc;
}

static int run_threads(cxl_log_t *L, role_t *roles, uint32_t n) {
    uint32_t started = 0;
    int rc = 0;
    place(L, roles, n, 0);
    for (; started < n; started++)
        if (pthread_create(&roles[started].th, NULL, role_thread, &roles[started]) != 0) {
            atomic_store(&L->stop, 1);
            rc = -1;
            break;
        }
    rc = watch(L, roles, started, rc);
    for (uint32_t i = 0; i < started; i++) pthread_join(roles[i].th, NULL);
    return rc;
}

/* The caller's thread is the watchdog: a stall is reported, never waited on forever. */
static int watch(cxl_log_t *L, role_t *roles, uint32_t started, int rc) {
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 2000000;
        if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
        pthread_mutex_lock(&L->done_mu);
        if (L->roles_finished < started) pthread_cond_timedwait(&L->done_cv, &L->done_mu, &ts);
        pthread_mutex_unlock(&L->done_mu);
        uint32_t alive = watchdog_roles(roles, started);
        if (!alive) break;
        uint64_t last = atomic_load(&L->last_progress_ns), now = cxl_now_ns();
        if (L->cfg.watchdog_ns && now > last && now - last > L->cfg.watchdog_ns) {
            L->st.stalled = 1;
            L->st.stall_role = alive;
            atomic_store(&L->stop, 1);
            rc = rc ? rc : 1;
            break;
        }
        if (atomic_load(&L->stop)) break;
    }
    return rc;
}

/* One thread; the next role is drawn from a seeded generator, so a run is reproducible. */
#ifdef CXL_CHECKED
/* Checked build: the model may preempt a role at any shared-memory access and run another
 * role's whole step there (cxl_check.c). */
typedef struct {
    role_t *roles;
    uint32_t n;
    uint32_t running;
    uint32_t *left;
} det_ctx_t;

/* One preemption runs 1..8 steps of other roles (drawn from `draw`), so a window inside a
 * step can hold a whole publish-order-commit chain of the others. */
static void det_preempt(void *arg, uint64_t draw) {
    det_ctx_t *c = (det_ctx_t *)arg;
    const int planned = (draw & CXL_PREEMPT_PLANNED) != 0; /* exploration: role and steps given */
    uint32_t steps = planned ? (uint32_t)((draw >> 16) & 0xff) : 1 + (uint32_t)((draw >> 40) & 7);
    for (uint32_t k = 0; k < steps; k++) {
        if (!planned) { draw ^= draw << 13; draw ^= draw >> 7; draw ^= draw << 17; }
        uint32_t i = planned ? (uint32_t)(draw & 0xffff) % c->n : (uint32_t)(draw % c->n);
        role_t *r = &c->roles[i];
        if (i == c->running || r->done) continue;
        CXL_AGENT_SET(r->agent);
        if (role_step(r) == STEP_DONE) {
            r->done = 1;
            (*c->left)--;
        }
    }
}
/* Exploration (cxl_chk_explore_set): every role is a coroutine and the explorer decides, at
 * every shared-memory access and control atomic, who goes on. */
static int det_co_step(void *arg, uint32_t i) {
    role_t *r = &((role_t *)arg)[i];
    int rc = role_step(r);
    if (rc == STEP_DONE) r->done = 1;
    return rc == STEP_DONE ? 2 : rc == STEP_PROGRESS ? 1 : 0;
}

static int run_explored(cxl_log_t *L, role_t *roles, uint32_t n) {
    int agents[32], groups[32];
    if (n > 32) return -1;
    for (uint32_t i = 0; i < n; i++) {
        agents[i] = roles[i].agent;
        groups[i] = roles[i].kind == CXL_KIND_SCANNER || roles[i].kind == CXL_KIND_SEQUENCER;
    }
    int rc = cxl_chk_co_run(n, agents, groups, det_co_step, roles);
    if (rc == 0) return 0;
    L->st.stalled = 1; /* no role could go on, or the point bound was hit */
    L->st.stall_role = watchdog_roles(roles, n);
    return 1;
}
/* the hook points into this run's stack: unset it before the run returns */
#define DET_RETURN(v) do { cxl_chk_set_preempt(NULL, NULL); return (v); } while (0)
#else
#define DET_RETURN(v) return (v)
#endif

static int run_deterministic(cxl_log_t *L, role_t *roles, uint32_t n) {
    uint64_t x = L->cfg.seed * 0x9e3779b97f4a7c15ull + 1;
    uint64_t idle_streak = 0, limit = 200000 + 2000ull * n;
    /* a hard bound too: a role that keeps claiming progress without finishing is a stall */
    uint64_t steps = 0, step_limit = 1000000 + 20000ull * (L->per_broker * L->cfg.brokers + 1);
    uint32_t left = n;
    /* A crashed publisher's slot is declared lost on a wall-clock timeout, and idle steps can
     * outrun it on a fast host: such a run is called stalled only once the timeout (and half
     * again) has passed since its idle streak began, so the loss is always seen. */
    const uint64_t wait_ns = L->cfg.crash_client ? L->cfg.slot_timeout_ns + L->cfg.slot_timeout_ns / 2 : 0;
    uint64_t idle_since = 0;
#ifdef CXL_CHECKED
    if (cxl_chk_explore_on()) return run_explored(L, roles, n);
    det_ctx_t ctx = {roles, n, 0, &left};
    cxl_chk_set_preempt(det_preempt, &ctx);
#endif
    while (left && !atomic_load(&L->stop)) {
        if (++steps > step_limit) {
            L->st.stalled = 1;
            L->st.stall_role = watchdog_roles(roles, n);
            DET_RETURN(1);
        }
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint32_t pick = (uint32_t)(x % n);
#ifdef CXL_CHECKED
        pick = cxl_chk_sched_pick(n, pick); /* a replayed schedule, and the record of this one */
        if (pick >= n) DET_RETURN(0);       /* the replayed schedule ends the run here */
        ctx.running = pick;
#endif
        role_t *r = &roles[pick];
        if (r->done) continue;
        CXL_AGENT_SET(r->agent);
        int rc = role_step(r);
        if (rc == STEP_DONE) {
            r->done = 1;
            left--;
            idle_streak = 0;
        } else if (rc == STEP_PROGRESS) {
            idle_streak = 0;
        } else {
            if (wait_ns && idle_streak == 0) idle_since = cxl_now_ns();
            if (++idle_streak > limit && (!wait_ns || cxl_now_ns() - idle_since >= wait_ns)) {
                L->st.stalled = 1;
                L->st.stall_role = watchdog_roles(roles, n);
                DET_RETURN(1);
            }
        }
    }
    DET_RETURN(0);
}

int cxl_log_run(cxl_log_t *L, uint32_t mask) { return cxl_log_run_subset(L, mask, ~0u, ~0u); }

/* A store to a line that is written with atomics (a lease): an atomic one too. */
static void rmw_store(uint64_t *p, uint64_t v) {
    uint64_t cur = cxl_consume64(p);
    while (!cxl_cas64(p, &cur, v)) {
    }
}

/* Take one ownership lease: free, ours already, or held by a process that is gone on this
 * host. A live holder -- or one on another host, unless CXL_F_TAKE_OVER -- refuses the run. */
static int lease_take(cxl_log_t *L, cxl_owner_t *o, const char *what) {
    cxl_invalidate(o, sizeof *o);
    uint64_t cur = cxl_consume64(&o->owner);
    if (cur != 0 && cur != L->nonce) {
        uint64_t host = cxl_consume64(&o->host);
        uint32_t pid = (uint32_t)cxl_consume64(&o->pid);
        int same_host = host == L->host;
        int gone = same_host && !os_thread_alive(pid, 0);
        if (same_host && pid == (uint32_t)getpid()) gone = 0; /* another instance in this process */
        if (!gone && !(L->cfg.flags & CXL_F_TAKE_OVER)) {
            snprintf(L->err, sizeof L->err,
                     "the %s of this region is already running (%s pid %u): one %s per region; "
                     "stop it, or format the region anew%s",
                     what, same_host ? "this host," : "another host,", pid, what,
                     same_host ? "" : " (a crashed owner on another host: take over explicitly)");
            return -1;
        }
    }
    if (cur != L->nonce && !cxl_cas64(&o->owner, &cur, L->nonce)) {
        snprintf(L->err, sizeof L->err, "the %s lease changed hands while taking it over", what);
        return -1;
    }
    rmw_store(&o->host, L->host);
    rmw_store(&o->pid, (uint64_t)getpid());
    rmw_store(&o->since_ns, cxl_now_ns());
    return 0;
}

static void lease_drop(cxl_log_t *L, cxl_owner_t *o) {
    uint64_t mine = L->nonce;
    cxl_cas64(&o->owner, &mine, 0);
}

static void leases_drop(cxl_log_t *L) {
    if (L->owns & 1) lease_drop(L, &L->ctrl->seq_owner.o);
    for (uint32_t b = 0; b < L->cfg.brokers; b++)
        if (L->owns & (2 << b)) lease_drop(L, &L->scanl[b].o);
    L->owns = 0;
}

/* The scanners and the sequencer (or the ackers) of a region: one of each, ever at a time. */
static int leases_take(cxl_log_t *L) {
    if (L->cfg.order >= 2) {
        if (lease_take(L, &L->ctrl->seq_owner.o, "sequencer") != 0) return -1;
        L->owns |= 1;
    }
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        char what[32];
        snprintf(what, sizeof what, "scanner of broker %u", b);
        if (lease_take(L, &L->scanl[b].o, what) != 0) {
            leases_drop(L);
            return -1;
        }
        L->owns |= 2 << b;
    }
    return 0;
}

int cxl_log_run_subset(cxl_log_t *L, uint32_t mask, uint32_t pub_brokers, uint32_t sub_mask) {
    L->err[0] = 0;
    if ((mask & CXL_ROLE_SCANNERS) && leases_take(L) != 0) return -2;
    role_t *roles = (role_t *)calloc(L->npubs + 2u * CXL_MAX_BROKERS + CXL_MAX_SUBS + 2u,
                                     sizeof(role_t));
    if (!roles) {
        leases_drop(L);
        return -1;
    }
    uint32_t n = build_roles(L, mask, pub_brokers, sub_mask, roles);
    /* a run after a watchdog stop (or a stop request) continues where the roles stood */
    atomic_store(&L->stop, 0);
    L->st.stalled = 0;
    L->st.stall_role = 0;
    L->roles_finished = 0;
    note_progress(L);
    int rc = (L->cfg.flags & CXL_F_DETERMINISTIC) ? run_deterministic(L, roles, n)
             : L->workers && n > L->workers ? run_workers(L, roles, n)
                          : run_threads(L, roles, n);
    free(roles);
    leases_drop(L);
    L->st.end_ns = cxl_now_ns();
    return rc;
}

const char *cxl_log_error(const cxl_log_t *L) { return L->err; }

void cxl_log_request_stop(cxl_log_t *L) { atomic_store(&L->stop, 1); }

int cxl_log_set_workers(cxl_log_t *L, uint32_t workers, const int *cpus, uint32_t ncpus) {
    if (workers > CXL_MAX_WORKERS || ncpus > CXL_MAX_WORKERS || (ncpus && !cpus)) return -1;
    for (uint32_t i = 0; i < ncpus; i++)
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) return -1;
    L->workers = workers;
    L->ncpus = ncpus;
    for (uint32_t i = 0; i < ncpus; i++) L->cpus[i] = cpus[i];
    return 0;
}

uint32_t cxl_log_max_workers(void) { return CXL_MAX_WORKERS; }

uint32_t cxl_log_placement(const cxl_log_t *L, cxl_placement_t *out, uint32_t max) {
    uint32_t n = L->nplaced < max ? L->nplaced : max;
    for (uint32_t i = 0; i < n; i++) out[i] = L->placed[i];
    return n;
}

uint64_t cxl_log_progress(const cxl_log_t *L) {
    return atomic_load_explicit(&((cxl_log_t *)L)->progress_msgs, memory_order_relaxed);
}

void cxl_log_stats(const cxl_log_t *L, cxl_log_stats_t *out) {
    *out = L->st;
    for (uint32_t i = 0; i < L->npubs; i++) {
        const publisher_t *P = &L->pubs[i];
        out->batches_published += P->done;
        out->messages_published += P->done * L->cfg.msgs_per_batch;
        out->bytes_published += P->done * L->cfg.msgs_per_batch * (uint64_t)L->cfg.msg_size;
        out->backpressure_waits += P->waits;
        out->published_by_broker[P->broker] += P->done;
        if (P->first_ns && (!out->first_publish_ns || P->first_ns < out->first_publish_ns))
            out->first_publish_ns = P->first_ns;
        if (P->last_ns > out->last_publish_ns) out->last_publish_ns = P->last_ns;
    }
    /* ACK covers the slots below the frontier that were not declared lost. The frontier is
     * read before the loss count (written in the other order), so this never overstates. */
    uint64_t acked = 0, acked_b = 0;
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        const cxl_seq_line_t *s = &L->seql[b];
        cxl_invalidate(s, CXL_LINE);
        uint64_t f = L->cfg.ack_level >= 2 ? cxl_consume64(&s->durable_batches)
                                           : cxl_consume64(&s->ordered_batches);
        uint64_t m = L->cfg.ack_level >= 2 ? cxl_consume64(&s->durable_msgs)
                                           : cxl_consume64(&s->ordered_msgs);
        uint64_t lost = cxl_consume64(&s->lost_batches);
        if (f > L->per_broker) continue; /* corrupt: acknowledges nothing */
        acked += m;
        acked_b += f > lost ? f - lost : 0;
    }
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        const scanner_t *S = &L->scan[b];
        out->ordered_by_broker[b] = L->cfg.order >= 2
            ? (L->seq_consumed[b] > L->seq_lost[b] ? L->seq_consumed[b] - L->seq_lost[b] : 0)
            : (S->next > S->lost ? S->next - S->lost : 0);
    }
    out->messages_acked = L->cfg.ack_level ? acked : 0;
    out->batches_acked = L->cfg.ack_level ? acked_b : 0;
    cxl_invalidate(&L->ctrl->seq, CXL_LINE);
    out->committed_seq = cxl_consume64(&L->ctrl->seq.committed_seq);
    /* Order 5: the session lines are what a sequencer taking over would start from; read
     * back, they must say what this process's sequencer holds (where it ran here) */
    if (L->clientl && L->st.epochs) {
        for (uint32_t c = 0; c < L->npubs; c++) {
            const cxl_client_line_t *l = &L->clientl[c];
            const o5_client_t *C = &L->o5[c];
            cxl_invalidate(l, CXL_LINE);
            out->o5_line_mismatch +=
                cxl_consume64(&l->session) != C->session ||
                cxl_consume64(&l->next_expected) != C->next_expected ||
                cxl_consume64(&l->fenced_through) != C->fenced_through ||
                cxl_consume64(&l->markers) != C->markers || cxl_consume64(&l->fences) != C->fences ||
                cxl_consume64(&l->late) != C->late;
        }
    }
    for (uint32_t k = 0; k < L->cfg.subscribers; k++) {
        uint64_t h = L->sub[k].hash;
        for (uint32_t b = 0; L->cfg.order == 0 && b < L->cfg.brokers; b++)
            h += mix64(L->sub[k].bhash[b] + b);
        out->sub_hash[k] = h;
    }
}

int cxl_log_records(const cxl_log_t *L, int kind, void **ptr, uint64_t *count, uint64_t *elem) {
    if (kind < 0 || kind >= CXL_REC_DELIVER + (int)CXL_MAX_SUBS) return -1;
    const recs_t *r = &L->rec[kind];
    uint64_t c = atomic_load(&((recs_t *)r)->count);
    *ptr = r->data;
    *count = c < r->cap ? c : r->cap;
    if (kind == CXL_REC_PUBLISH) *count = r->cap; /* indexed by slot: unwritten rows are zero */
    *elem = r->elem;
    return r->data ? 0 : -1;
}

/* ------------------------------------------------------------------ fault catalogue */

static const char *const fault_names[] = {
    "none",
#define CXL_FAULT_NAME(id, name, doc) #name,
    CXL_FAULT_LIST(CXL_FAULT_NAME)
#undef CXL_FAULT_NAME
};
static const char *const fault_docs[] = {
    "no planted defect",
#define CXL_FAULT_DOC(id, name, doc) doc,
    CXL_FAULT_LIST(CXL_FAULT_DOC)
#undef CXL_FAULT_DOC
};

uint32_t cxl_fault_count(void) { return CXL_FAULT_COUNT_PLUS1 - 1; }
const char *cxl_fault_name(uint32_t id) { return id < CXL_FAULT_COUNT_PLUS1 ? fault_names[id] : ""; }
const char *cxl_fault_doc(uint32_t id) { return id < CXL_FAULT_COUNT_PLUS1 ? fault_docs[id] : ""; }

int cxl_is_checked(void) {
#ifdef CXL_CHECKED
    return 1;
#else
    return 0;
#endif
}
