/*
 * cxl_log_int.h -- private to the log's C files: the role structures, the log object and the
 * small helpers every role uses. One file per role includes it (cxl_log_layout.c,
 * cxl_publisher.c, cxl_scanner.c, cxl_sequencer.c, cxl_order5.c, cxl_subscriber.c, cxl_runner.c,
 * cxl_log_common.c); nothing outside the core does. Shared memory is still reached only
 * through cxl_seam.h.
 */
#ifndef CXL_LOG_INT_H
#define CXL_LOG_INT_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* Entry points shared between the log's files, not exported from the extension. */
#define CXL_INTERNAL __attribute__((visibility("hidden")))
#include "cxl_api.h"
#include "cxl_faults.h"
#include "cxl_layout.h"
#include "cxl_seam.h"
#include "cxl_ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef CXL_CHECKED
#define FAULT(L, name) ((L)->cfg.fault == CXL_FAULT_##name)
#else
#define FAULT(L, name) ((void)(L), 0)
#endif

/* configuration bounds (cxl_log_layout.c checks them; cxl_limits() reports them) */
#define MAX_PBR_SLOTS (1ull << 30)
#define MAX_GOI_SLOTS (1ull << 40)
#define MAX_BATCHES (1ull << 48)
#define MAX_PUBS_PER_BROKER 64u
#define MAX_MSG_SIZE (64ull << 20)
#define MAX_MSGS_PER_BATCH 65536u
#define MAX_BATCH_LOG_BYTES (1ull << 30)

#define POOL_SLOTS 1024u
#define SCAN_CHUNK 64u
#define SUB_CHUNK 64u
#define CHUNK_MAX 4096u
#define QUIESCENT UINT64_MAX
#define ENTRY_LOST 1u
#define ENTRY_CORRUPT 2u
#define ENTRY_LATE 4u      /* declared lost, then committed by its (live) publisher after all */
#define ENTRY_ORPHAN 8u    /* committed, declared lost: its broker's scanner stopped */
#define WATCH_NS 1000000u  /* the sequencer looks for dead scanners/subscribers this often */
#define LAT_BUCKETS 768u
#define BEAT_BYTES (256u << 10) /* a publisher's lease beats at least this often while it copies */
#define MAX_BEAT_BYTES (1ull << 30)
#define NO_CLIENT 0xffffffffu
#define CORRUPT_SEEN 512u  /* distinct corrupt (location, value) pairs remembered */

enum { CORRUPT_HEADER = 0, CORRUPT_GOI = 1, CORRUPT_CTRL = 2, CORRUPT_FOREIGN = 3 };

enum { STEP_IDLE = 0, STEP_PROGRESS = 1, STEP_DONE = 2 };
enum { AGENT_PUB = 0, AGENT_SCAN = 64, AGENT_SEQ = 96, AGENT_SUB = 100 };

/* An epoch-buffer entry: the metadata a scanner copied out of a PBR header. */
typedef struct entry {
    uint64_t pbr_index;
    uint64_t log_offset;
    uint64_t size;
    uint64_t checksum;
    uint64_t client_batch_seq;
    uint64_t publish_ns;
    uint32_t broker;
    uint32_t client;
    uint32_t msg_count;
    uint32_t flags;
} entry_t;
static_assert(sizeof(entry_t) == 64, "entry is one line");

typedef struct ebuf {
    uint64_t count;
    uint64_t cap;
    entry_t *e;
} ebuf_t;

typedef struct scanner {
    _Atomic uint64_t active; /* epoch this scanner is pushing into, or QUIESCENT */
    uint64_t next;           /* next ring index to read */
    uint64_t quota;
    uint64_t wait_since_ns;  /* when the pending slot's holder last showed life (own clock) */
    uint64_t wait_slot;      /* the slot wait_since_ns belongs to, + 1 */
    uint64_t wait_beat;      /* fingerprint of the holders' beats last seen */
    uint64_t lost_count;     /* slots this scanner declared lost (its line's lost_count) */
    uint64_t foreign_at;     /* last slot counted as carrying a foreign token */
    uint64_t pending_epoch;
    int phase;               /* deterministic mode: 1 = epoch announced, push on next step */
    uint32_t broker;
    uint64_t acked_msgs;     /* Order 0 acker: cumulative messages */
    uint64_t lost;
    uint64_t beat;           /* own beat (its line's beat) */
    uint64_t beat_steps;
    int crashed;             /* crash injection: this scanner stopped mid-epoch */
    _Atomic uint64_t pushed; /* ring slots pushed into the epoch buffers (release, per push) */
    _Atomic int finished;    /* scanned its whole quota: stopped, not dead */
    char pad[64];
} __attribute__((aligned(64))) scanner_t;

typedef struct publisher {
    uint32_t broker;
    uint32_t client;
    uint64_t quota;
    uint64_t done;
    uint64_t msg_seq;
    uint64_t abs;
    int have_slot;
    uint64_t floor;          /* cached reuse floor for this broker's ring */
    uint64_t last_ack;
    uint64_t last_abs;
    uint64_t first_ns;       /* first publish (per publisher: no shared counter on the hot path) */
    uint64_t last_ns;
    uint64_t waits;          /* back-pressure waits */
    uint64_t beat;           /* own lease beat */
    uint64_t since_beat;     /* payload bytes copied since the last beat */
    uint64_t lost_told;      /* own batches it found declared lost after it committed them */
    int lease_ready;
    int crashed;             /* crash injection: this publisher is dead */
    /* Order 5 */
    uint32_t cid;            /* client id: the index of the client's first publisher */
    uint32_t member;         /* which of the client's brokers this publisher is (0..spread-1) */
    uint64_t session;        /* the client session epoch this publisher writes in */
    uint64_t k;              /* batches this member sent in the session (seq = k*spread+member) */
    char pad[64];
} __attribute__((aligned(64))) publisher_t;

typedef struct subscriber {
    uint32_t idx;
    uint64_t pos;
    uint64_t last_committed;
    uint64_t next_pbr[CXL_MAX_BROKERS];  /* Order 0: next ring index per broker */
    uint64_t last_pbr[CXL_MAX_BROKERS];  /* last delivered ring index + 1, per broker */
    uint64_t hash;
    uint64_t bhash[CXL_MAX_BROKERS];
    uint64_t bad_at;                     /* position + 1 last counted as unreadable */
    uint64_t bad_done;                   /* last corrupt `done` value counted */
    int resumed;
    int crashed;                         /* crash injection: this subscriber is dead */
    uint64_t beat;                       /* own beat (its line's beat) */
    uint32_t idle_steps;
    unsigned char *scratch;              /* checked build: read_view copies here */
    uint64_t *last_cbs;                  /* Order 5: per client, last (session, seq) word + 1 */
    /* Order 5 delivers a broker's slots out of ring order (a held batch after later ones of
     * other clients), so what it releases is a prefix it knows is read: consumed_through as
     * read before a committed_seq it has since delivered up to */
    uint64_t rel5[CXL_MAX_BROKERS];
    uint64_t snap_cons[CXL_MAX_BROKERS];
    uint64_t snap_c;
    int snap_state;                      /* 0 none, 1 consumed read (committed next), 2 both */
    char pad[64];
} __attribute__((aligned(64))) subscriber_t;

/* Order 5, sequencer-private: per client session, and the hold buffer. */
typedef struct o5_client {
    uint64_t session;        /* current session epoch */
    uint64_t next_expected;  /* next client_batch_seq of it to order */
    uint64_t fenced_through;
    uint64_t markers, fences, late;
    uint64_t held;           /* entries of this client in the hold buffer */
    uint64_t gap_since_ns;   /* when its oldest waiting gap was first seen (0 = none) */
    int dirty;               /* its shared line needs writing */
} o5_client_t;

/* A held batch and the broker's frontier just before it (what the broker's ACK frontier may
 * show while it is held: ring slots are resolved in ring order). */
typedef struct held {
    entry_t e;
    uint64_t pre_consumed, pre_msgs, pre_lost;
} held_t;

#define O5_OUT_MAX CHUNK_MAX
enum { O5_BATCH = CXL_ORDER_BATCH, O5_MARKER = CXL_ORDER_MARKER };

typedef struct recs {
    void *data;
    _Atomic uint64_t count;
    uint64_t cap;
    uint64_t elem;
} recs_t;

struct cxl_log {
    cxl_log_cfg_t cfg;
    unsigned char *base;
    uint64_t size;
    cxl_ctrl_t *ctrl;
    cxl_claim_line_t *claim;
    cxl_seq_line_t *seql;
    cxl_sub_line_t *subl;
    cxl_scan_line_t *scanl;
    cxl_pub_line_t *publ;
    cxl_client_line_t *clientl;     /* Order 5 session lines, else NULL */
    unsigned char *pbr;
    unsigned char *logs;
    cxl_goi_entry_t *goi;
    uint64_t log_bytes;
    uint64_t stride;        /* log bytes per ring slot */
    uint64_t msg_stride;
    uint64_t per_broker;    /* batches per broker */
    uint64_t slots_mask;
    uint64_t goi_mask;
    uint64_t max_pos;       /* positions a run can ever commit (batches, plus Order 5 markers) */

    unsigned char *pool;
    uint64_t pool_hash[POOL_SLOTS];

    _Atomic uint64_t epoch;
#ifdef CXL_CHECKED
    _Atomic uint64_t sealed_below; /* the seal's promise, checked: epochs below it are sealed */
#endif
    ebuf_t bufs[3][CXL_MAX_BROKERS];
    ebuf_t shared[3];
    pthread_mutex_t mu;

    scanner_t scan[CXL_MAX_BROKERS];
    publisher_t *pubs;
    uint32_t npubs;
    subscriber_t sub[CXL_MAX_SUBS];

    /* sequencer state */
    entry_t *seg[CXL_MAX_BROKERS];  /* the sealed epoch's buffers, read in place */
    uint64_t seg_n[CXL_MAX_BROKERS];
    uint32_t nseg, seg_i;
    uint64_t seg_at;
    uint64_t epoch_live;            /* live entries of the sealed epoch not yet given a position */
    uint64_t resv_base, resv_left;  /* positions reserved for them */
    int sealing;
    int acked_early;        /* planted seq_ack_before_order: frontiers already moved */
    uint64_t seal_epoch;
    uint64_t next_epoch_ns;
    uint64_t seq_consumed[CXL_MAX_BROKERS];
    uint64_t seq_ordered_msgs[CXL_MAX_BROKERS];
    uint64_t seq_lost[CXL_MAX_BROKERS];
    uint64_t seq_next_pbr[CXL_MAX_BROKERS];
    uint64_t next_pos;              /* positions this sequencer reserved: next_global must agree */
    uint64_t resv_skew;             /* next_global - next_pos last seen (0 unless corrupt) */
    uint64_t committed;             /* what it last wrote to committed_seq */
    uint64_t total_msgs_ordered;
    /* dead roles, found by their beat standing still past slot_timeout_ns and their thread gone */
    uint64_t watch_ns;              /* last look */
    uint32_t scan_dead;             /* brokers whose scanner is dead: the sequencer scans for them */
    uint32_t sub_dead;              /* subscribers found dead (mirrors ctrl->seq.sub_dead) */
    uint64_t scan_seen[CXL_MAX_BROKERS], scan_since[CXL_MAX_BROKERS];
    uint64_t sub_seen[CXL_MAX_SUBS], sub_since[CXL_MAX_SUBS];
    scanner_t takeover[CXL_MAX_BROKERS]; /* the sequencer's scan of a dead scanner's ring */
    entry_t *cur;                   /* the chunk being ordered: points into a buffer */
    entry_t chunk_copy[CHUNK_MAX + 1]; /* planted seq_dup_identity needs a private copy */
    uint64_t chunk_pos[CHUNK_MAX + 1];
    /* Order 5 */
    o5_client_t *o5;
    held_t *hold;
    uint32_t hold_n;
    uint32_t o5n;                       /* outputs of this step: batches and markers */
    uint64_t o5_at[CXL_MAX_BROKERS];    /* per sealed buffer: next entry */
    /* per broker, the batches that found the hold buffer full, in ring order: their slots
     * stay unconsumed (at most one ring of them), retried before anything newer of it */
    entry_t *wait[CXL_MAX_BROKERS];
    uint64_t wait_head[CXL_MAX_BROKERS], wait_n[CXL_MAX_BROKERS];
    entry_t o5out[O5_OUT_MAX];
    uint8_t o5kind[O5_OUT_MAX];
    uint64_t o5pos[O5_OUT_MAX];
    uint32_t fence_n;                   /* fences of this step, for the records */
    uint32_t fence_c[O5_OUT_MAX];
    _Atomic uint32_t scanners_done;
    _Atomic int stop;
    /* Placement: 0 workers = one thread per role; else, when roles outnumber them, roles are
     * stepped cooperatively by that many threads, worker w pinned to cpus[w % ncpus]. */
    uint32_t workers, ncpus;
    int cpus[CXL_MAX_WORKERS];
    cxl_placement_t placed[CXL_MAX_ROLES];
    uint32_t nplaced;
    _Atomic uint64_t progress_msgs;
    _Atomic uint64_t last_progress_ns;

    cxl_log_stats_t st;
    _Atomic uint64_t corrupt_seen[CORRUPT_SEEN]; /* keys of corrupt values already counted */
    _Atomic uint64_t corrupt_n;
    uint64_t host;                  /* this process's host identity */
    uint64_t nonce;                 /* this instance's ownership nonce */
    int owns;                       /* leases this instance holds (bit 0 sequencer, 1+b scanner b) */
    char err[256];
    recs_t rec[CXL_REC_DELIVER + CXL_MAX_SUBS];
    pthread_mutex_t done_mu;  /* role threads signal their end: the runner wakes at once */
    pthread_cond_t done_cv;
    uint32_t roles_finished;
};

/* ------------------------------------------------------------------ small helpers */

static inline uint64_t rotl64(uint64_t x, unsigned r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

#define P1 0x9e3779b185ebca87ull
#define P2 0xc2b2ae3d27d4eb4full


static inline uint64_t msg_checksum(uint64_t payload_hash, uint32_t size, uint32_t client,
                                    uint64_t seq) {
    return mix64(payload_hash ^ ((uint64_t)size * P1) ^ ((uint64_t)client * P2) ^ rotl64(seq, 17));
}

static inline uint64_t fold_checksum(uint64_t cs, uint64_t msg_cs) {
    return (rotl64(cs, 7) ^ msg_cs) * P1;
}

static inline uint32_t pool_slot(uint32_t client, uint64_t seq, uint64_t seed) {
    return (uint32_t)(mix64(((uint64_t)client << 40) ^ seq ^ seed) % POOL_SLOTS);
}

static inline uint64_t align64(uint64_t x) { return (x + 63u) & ~63ull; }

static inline unsigned lat_bucket(uint64_t v) {
    if (v < 32) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 4u;
    unsigned idx = 32u + (msb - 5u) * 16u + (unsigned)((v >> shift) - 16u);
    return idx < LAT_BUCKETS ? idx : LAT_BUCKETS - 1;
}

static inline void cpu_relax(void) {
#ifdef CXL_X86
    _mm_pause();
#endif
}

/* Spin briefly, then yield, then sleep with growing intervals: on two cores a dozen spinning
 * role threads must leave the CPU to the ones with work. */
static inline void backoff(unsigned *n) {
    unsigned k = (*n)++;
    if (k < 8) {
        for (unsigned i = 0; i < (4u << k); i++) cpu_relax();
    } else if (k < 16) {
        sched_yield();
    } else {
        unsigned us = 1u << ((k - 16) < 6 ? (k - 16) : 6);
        struct timespec ts = {0, (long)us * 1000};
        nanosleep(&ts, NULL);
    }
}

static inline void *rec_slot(cxl_log_t *L, int kind) {
    recs_t *r = &L->rec[kind];
    if (!r->data) return NULL;
    uint64_t i = atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
    if (i >= r->cap) return NULL;
    return (unsigned char *)r->data + i * r->elem;
}

static inline void note_progress(cxl_log_t *L) {
    atomic_store_explicit(&L->last_progress_ns, cxl_now_ns(), memory_order_relaxed);
}

static inline cxl_batch_hdr_t *slot_at(cxl_log_t *L, uint32_t b, uint64_t abs) {
    return (cxl_batch_hdr_t *)(void *)(L->pbr +
                                      ((uint64_t)b * L->cfg.pbr_slots + (abs & L->slots_mask)) *
                                          sizeof(cxl_batch_hdr_t));
}

static inline unsigned char *log_of(cxl_log_t *L, uint32_t b) {
    return L->logs + (uint64_t)b * L->log_bytes;
}

static inline void stat_max(uint64_t *p, uint64_t v) {
    uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v > cur && !__atomic_compare_exchange_n(p, &cur, v, 1, __ATOMIC_RELAXED,
                                                   __ATOMIC_RELAXED)) {
    }
}

static inline void stat_add(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }





/* ------------------------------------------------------------------ between the files */

/* cxl_log_common.c */
CXL_INTERNAL void corrupt(cxl_log_t *L, int kind, const void *loc, uint64_t value);
CXL_INTERNAL uint64_t host_identity(void);
CXL_INTERNAL uint32_t os_tid(void);
CXL_INTERNAL int os_thread_alive(uint32_t pid, uint32_t tid);
CXL_INTERNAL int peer_gone(const cxl_log_t *L, uint64_t host, uint64_t ident);
CXL_INTERNAL uint64_t thread_ident(const cxl_log_t *L);
CXL_INTERNAL void note_detect(cxl_log_t *L);

/* cxl_publisher.c */
CXL_INTERNAL int pub_step(cxl_log_t *L, publisher_t *P);

/* cxl_scanner.c */
CXL_INTERNAL int scan_step(cxl_log_t *L, scanner_t *S);
CXL_INTERNAL int scan_take(cxl_log_t *L, scanner_t *S, entry_t *out);
CXL_INTERNAL void record_loss(cxl_log_t *L, const entry_t *e);
CXL_INTERNAL int ack0_step(cxl_log_t *L, scanner_t *S);
CXL_INTERNAL int identity_valid(const cxl_log_t *L, uint32_t b, uint32_t client, uint64_t cbs, uint64_t pbr_index);
CXL_INTERNAL int header_valid(const cxl_log_t *L, const cxl_batch_hdr_t *v, uint32_t b, uint64_t abs);
CXL_INTERNAL void publish_frontier(cxl_log_t *L, uint32_t b, uint64_t consumed, uint64_t batches, uint64_t msgs, uint64_t lost);
CXL_INTERNAL void publish_durable(cxl_log_t *L, uint32_t b, uint64_t batches, uint64_t msgs);

/* cxl_sequencer.c (shared with cxl_order5.c) */
CXL_INTERNAL uint64_t goi_room(cxl_log_t *L, uint64_t next_pos);
CXL_INTERNAL void goi_write_body(cxl_goi_entry_t *g, const entry_t *e, uint64_t order);
CXL_INTERNAL void seq_account(cxl_log_t *L, const entry_t *e);
CXL_INTERNAL void record_order(cxl_log_t *L, const entry_t *ents, const uint64_t *pos,
                               const uint8_t *kinds, uint64_t n, uint64_t now);
CXL_INTERNAL void seq_commit(cxl_log_t *L, uint64_t hi, uint64_t now);
CXL_INTERNAL int seq_drained(cxl_log_t *L);
CXL_INTERNAL void seq_merge(cxl_log_t *L);
CXL_INTERNAL uint64_t seq_reserve(cxl_log_t *L, uint64_t n);
CXL_INTERNAL int seq_seal(cxl_log_t *L);
/* A macro, not a function: each call is its own seam site (one mutation point per fence). */
#define seq_fence(L)                                                                       \
    do {                                                                                   \
        if (!FAULT((L), seq_no_fence_at_all)) cxl_sfence();                                \
    } while (0)

CXL_INTERNAL int seq_step(cxl_log_t *L);
CXL_INTERNAL int seq5_step(cxl_log_t *L);

/* cxl_subscriber.c */
CXL_INTERNAL int sub0_step(cxl_log_t *L, subscriber_t *U);
CXL_INTERNAL int sub2_step(cxl_log_t *L, subscriber_t *U);


#endif /* CXL_LOG_INT_H */
