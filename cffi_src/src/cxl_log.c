/*
 * cxl_log.c -- the totally ordered shared log in CXL memory.
 *
 * Roles: publishers write batches (payload, header, token) into their broker's log and PBR
 * ring; one scanner per broker collects committed slots into its own epoch buffer; the epoch
 * sequencer seals each epoch, merges once, reserves global positions with one atomic step and
 * writes the GOI; subscribers read the committed GOI prefix and the payloads. Order 0 replaces
 * scanner + sequencer by a per-broker acker. Every role is a non-blocking step function: the
 * threaded runner loops over it with back-off, the deterministic runner (checked build) picks
 * the next role from a seeded generator, so model runs are reproducible.
 *
 * All shared-memory access goes through cxl_seam.h. Everything read from the region is
 * bounds-checked; a bad value is counted and reported, never followed.
 */
#define _GNU_SOURCE
#include "cxl_api.h"
#include "cxl_faults.h"
#include "cxl_layout.h"
#include "cxl_seam.h"

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

#define POOL_SLOTS 1024u
#define SCAN_CHUNK 64u
#define SUB_CHUNK 64u
#define CHUNK_MAX 4096u
#define QUIESCENT UINT64_MAX
#define ENTRY_LOST 1u
#define ENTRY_CORRUPT 2u
#define ENTRY_LATE 4u      /* declared lost, then committed by its (live) publisher after all */
#define LAT_BUCKETS 768u
#define BEAT_BYTES (256u << 10) /* a publisher's lease beats at least this often while it copies */
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
    unsigned char *scratch;              /* checked build: read_view copies here */
    char pad[64];
} __attribute__((aligned(64))) subscriber_t;

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
    unsigned char *pbr;
    unsigned char *logs;
    cxl_goi_entry_t *goi;
    uint64_t log_bytes;
    uint64_t stride;        /* log bytes per ring slot */
    uint64_t msg_stride;
    uint64_t per_broker;    /* batches per broker */
    uint64_t slots_mask;
    uint64_t goi_mask;

    unsigned char *pool;
    uint64_t pool_hash[POOL_SLOTS];

    _Atomic uint64_t epoch;
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
    entry_t *cur;                   /* the chunk being ordered: points into a buffer */
    entry_t chunk_copy[CHUNK_MAX + 1]; /* planted seq_dup_identity needs a private copy */
    uint64_t chunk_pos[CHUNK_MAX + 1];
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

/* Four-lane multiply-rotate hash: fast enough that verification keeps up with the copy. */
uint64_t cxl_checksum_bytes(const void *p, uint64_t n, uint64_t seed) {
    const unsigned char *b = (const unsigned char *)p;
    uint64_t h0 = seed + P1 + P2, h1 = seed + P2, h2 = seed, h3 = seed - P1;
    uint64_t len = n;
    for (; n >= 32; n -= 32, b += 32) {
        uint64_t w[4];
        memcpy(w, b, 32);
        h0 = rotl64(h0 + w[0] * P2, 31) * P1;
        h1 = rotl64(h1 + w[1] * P2, 31) * P1;
        h2 = rotl64(h2 + w[2] * P2, 31) * P1;
        h3 = rotl64(h3 + w[3] * P2, 31) * P1;
    }
    uint64_t h = rotl64(h0, 1) + rotl64(h1, 7) + rotl64(h2, 12) + rotl64(h3, 18);
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = rotl64(h ^ (rotl64(w * P2, 31) * P1), 27) * P1;
    }
    for (; n > 0; n--, b++) h = rotl64(h ^ (*b * P1), 11) * P2;
    return mix64(h ^ len);
}

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
static void backoff(unsigned *n) {
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

static void *rec_slot(cxl_log_t *L, int kind) {
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

static void stat_max(uint64_t *p, uint64_t v) {
    uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (v > cur && !__atomic_compare_exchange_n(p, &cur, v, 1, __ATOMIC_RELAXED,
                                                   __ATOMIC_RELAXED)) {
    }
}

static void stat_add(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }

/* A value read from the region that cannot be right: counted once per distinct (location,
 * value), the first few kept with their offsets for the report. Lock-free (a CAS table). */
static void corrupt(cxl_log_t *L, int kind, const void *loc, uint64_t value) {
    uint64_t off = (uint64_t)((const unsigned char *)loc - L->base);
    uint64_t key = mix64(mix64(off * P1 + (uint64_t)kind) ^ value) | 1u;
    uint64_t h = key % CORRUPT_SEEN;
    for (unsigned i = 0; i < 32; i++) {
        _Atomic uint64_t *slot = &L->corrupt_seen[(h + i) % CORRUPT_SEEN];
        uint64_t cur = atomic_load_explicit(slot, memory_order_relaxed);
        if (cur == key) return;
        if (cur == 0) {
            uint64_t zero = 0;
            if (!atomic_compare_exchange_strong(slot, &zero, key)) {
                if (zero == key) return;
                continue;
            }
            break;
        }
    }
    /* new (or the table is full: counted, since it cannot be told apart any more) */
    uint64_t *ctr = kind == CORRUPT_HEADER ? &L->st.corrupt_headers
                  : kind == CORRUPT_GOI    ? &L->st.corrupt_goi
                  : kind == CORRUPT_CTRL   ? &L->st.corrupt_ctrl
                                           : &L->st.foreign_tokens;
    stat_add(ctr, 1);
    uint64_t n = atomic_fetch_add(&L->corrupt_n, 1);
    if (n < 8) {
        L->st.corrupt_off[n] = off;
        L->st.corrupt_val[n] = value;
        L->st.corrupt_kind[n] = (uint64_t)kind;
        stat_add(&L->st.corrupt_listed, 1);
    }
}

/* Host identity: boot id and pid namespace, so a pid is only compared on its own host. */
static uint64_t host_identity(void) {
    char buf[128] = {0};
    uint64_t h = 0x686f7374ull;
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) h = cxl_checksum_bytes(buf, (uint64_t)n, h);
    }
    char ns[128];
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof ns);
    if (n > 0) h = cxl_checksum_bytes(ns, (uint64_t)n, h);
    return h ? h : 1;
}

static uint32_t os_tid(void) { return (uint32_t)syscall(SYS_gettid); }

/* On this host: does thread tid of process pid still exist? (EPERM: exists, not ours.) */
static int os_thread_alive(uint32_t pid, uint32_t tid) {
    if (!pid) return 0;
    long rc = tid ? syscall(SYS_tgkill, (pid_t)pid, (pid_t)tid, 0) : kill((pid_t)pid, 0);
    return rc == 0 || errno == EPERM;
}

/* ------------------------------------------------------------------ layout */

static int is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

static uint64_t geom_check(const cxl_geom_t *g) {
    return cxl_checksum_bytes(g, offsetof(cxl_geom_t, geom_check), 0x5eed);
}

static uint64_t proto_check(const cxl_proto_t *p) {
    return cxl_checksum_bytes(p, offsetof(cxl_proto_t, proto_check), 0x9e37);
}

#define MAX_PBR_SLOTS (1ull << 30)
#define MAX_GOI_SLOTS (1ull << 40)
#define MAX_BATCHES (1ull << 48)

static int cfg_valid(const cxl_log_cfg_t *c) {
    uint64_t per_broker;
    return c->brokers >= 1 && c->brokers <= CXL_MAX_BROKERS && c->subscribers <= CXL_MAX_SUBS &&
           c->publishers_per_broker >= 1 && c->publishers_per_broker <= 64 &&
           (c->order == 0 || c->order == 2) && c->variant <= 1 && c->ack_level <= 2 &&
           is_pow2(c->pbr_slots) && c->pbr_slots >= 2 && c->pbr_slots <= MAX_PBR_SLOTS &&
           is_pow2(c->goi_slots) && c->goi_slots >= 2 && c->goi_slots <= MAX_GOI_SLOTS &&
           c->msg_size >= 1 && c->msg_size <= (64u << 20) && c->msgs_per_batch >= 1 &&
           c->msgs_per_batch <= 65536 &&
           (uint64_t)c->msgs_per_batch * align64(CXL_MSG_HDR + c->msg_size) <= (1ull << 30) &&
           c->batches_per_publisher <= MAX_BATCHES &&
           !__builtin_mul_overflow(c->batches_per_publisher, (uint64_t)c->publishers_per_broker,
                                   &per_broker) &&
           per_broker <= MAX_BATCHES &&
           c->crash_client <= c->brokers * c->publishers_per_broker;
}

/* at += n * k, page-aligned when `page`; 0 on overflow. */
static int grow(uint64_t *at, uint64_t n, uint64_t k) {
    uint64_t m;
    return !__builtin_mul_overflow(n, k, &m) && !__builtin_add_overflow(*at, m, at);
}

static int page_up(uint64_t *at) {
    if (*at > UINT64_MAX - 4095) return 0;
    *at = (*at + 4095) & ~4095ull;
    return 1;
}

/* Offsets of every area; 0 when a size does not fit in 64 bits (an impossible config). */
static int compute_offsets(const cxl_log_cfg_t *c, cxl_offsets_t *o, cxl_proto_t *pr,
                           uint64_t *stride) {
    uint64_t s = (uint64_t)c->msgs_per_batch * align64(CXL_MSG_HDR + c->msg_size); /* <= 1 GiB */
    *stride = s;
    memset(o, 0, sizeof *o);
    memset(pr, 0, sizeof *pr);
    uint64_t at = sizeof(cxl_ctrl_t);
    o->claim = at;
    at += CXL_MAX_BROKERS * sizeof(cxl_claim_line_t);
    o->seqline = at;
    at += CXL_MAX_BROKERS * sizeof(cxl_seq_line_t);
    o->subline = at;
    at += CXL_MAX_SUBS * sizeof(cxl_sub_line_t);
    pr->scanline = at;
    at += CXL_MAX_BROKERS * sizeof(cxl_scan_line_t);
    pr->publine = at;
    at += (uint64_t)c->brokers * c->publishers_per_broker * sizeof(cxl_pub_line_t);
    if (!page_up(&at)) return 0; /* 128-byte headers never straddle a page */
    o->pbr = at;
    if (!grow(&at, (uint64_t)c->brokers * c->pbr_slots, sizeof(cxl_batch_hdr_t))) return 0;
    if (!page_up(&at)) return 0;
    o->log = at;
    if (__builtin_mul_overflow((uint64_t)c->pbr_slots, s, &o->log_bytes)) return 0;
    if (!grow(&at, c->brokers, o->log_bytes)) return 0;
    o->goi = at;
    if (!grow(&at, c->goi_slots, sizeof(cxl_goi_entry_t))) return 0;
    o->end = at;
    pr->ack_level = c->ack_level;
    pr->publishers_per_broker = c->publishers_per_broker;
    pr->batches_per_publisher = c->batches_per_publisher;
    pr->variant = c->variant;
    pr->proto_check = proto_check(pr);
    return 1;
}

uint64_t cxl_layout_size(const cxl_log_cfg_t *cfg) {
    if (!cfg_valid(cfg)) return 0;
    cxl_offsets_t o;
    cxl_proto_t pr;
    uint64_t s;
    if (!compute_offsets(cfg, &o, &pr, &s)) return 0;
    return o.end;
}

static void fill_geom(const cxl_log_cfg_t *c, uint64_t size, uint64_t stride, cxl_geom_t *g) {
    memset(g, 0, sizeof *g);
    g->magic = CXL_MAGIC;
    g->version = CXL_LAYOUT_VERSION;
    g->order = c->order;
    g->region_size = size;
    g->brokers = c->brokers;
    g->subscribers = c->subscribers;
    g->pbr_slots = c->pbr_slots;
    g->batch_stride = (uint32_t)stride;
    g->goi_slots = c->goi_slots;
    g->max_msgs = c->msgs_per_batch;
    g->msg_size = c->msg_size;
    g->geom_check = geom_check(g);
}

int cxl_layout_init(void *base, uint64_t size, const cxl_log_cfg_t *cfg) {
    uint64_t need = cxl_layout_size(cfg);
    if (!need) return -1;
    if (size < need) return -2;
    unsigned char *b = (unsigned char *)base;
    /* Zero everything the log uses (a zero token never matches), then publish geometry: nothing
     * a previous run (or random bytes) left in the region survives formatting. */
    cxl_offsets_t o;
    cxl_proto_t pr;
    uint64_t stride;
    compute_offsets(cfg, &o, &pr, &stride);
    static const unsigned char zeros[4096];
    for (uint64_t at = 0; at < o.end; at += sizeof zeros) {
        uint64_t n = o.end - at < sizeof zeros ? o.end - at : sizeof zeros;
        cxl_copy_in(b + at, zeros, n);
    }
    cxl_flush_range(b, o.end);
    cxl_sfence();
    cxl_ctrl_t c;
    memset(&c, 0, sizeof c);
    fill_geom(cfg, size, stride, &c.geom);
    c.off = o;
    c.proto = pr;
    c.run.seed = cfg->seed;
    cxl_ctrl_t *ctrl = (cxl_ctrl_t *)base;
    cxl_copy_in(&ctrl->off, &c.off, sizeof c.off);
    cxl_copy_in(&ctrl->run, &c.run, sizeof c.run);
    cxl_copy_in(&ctrl->proto, &c.proto, sizeof c.proto);
    cxl_flush_range(&ctrl->off, sizeof c.off);
    cxl_flush_range(&ctrl->run, sizeof c.run);
    cxl_flush_range(&ctrl->proto, sizeof c.proto);
    cxl_sfence();
    /* the magic (in the geometry line) is written last: a half-made region is never accepted */
    cxl_copy_in(base, &c.geom, sizeof c.geom);
    cxl_flush(base);
    cxl_sfence();
    return 0;
}

int cxl_layout_attach(const void *base, uint64_t size, const cxl_log_cfg_t *cfg, char *err,
                      size_t errlen) {
    cxl_geom_t g, want;
    if (size < sizeof(cxl_ctrl_t)) {
        snprintf(err, errlen, "region of %llu bytes is smaller than a control block",
                 (unsigned long long)size);
        return -1;
    }
    cxl_invalidate(base, sizeof g);
    cxl_copy_out(&g, base, sizeof g);
    if (g.magic != CXL_MAGIC) {
        snprintf(err, errlen, "bad magic 0x%016llx (expected 0x%016llx): not a shared-log region",
                 (unsigned long long)g.magic, (unsigned long long)CXL_MAGIC);
        return -1;
    }
    if (g.version != CXL_LAYOUT_VERSION) {
        snprintf(err, errlen, "layout version %u, this build reads version %u", g.version,
                 CXL_LAYOUT_VERSION);
        return -1;
    }
    if (g.geom_check != geom_check(&g)) {
        snprintf(err, errlen, "geometry checksum mismatch: control block is corrupt");
        return -1;
    }
    if (!cfg_valid(cfg)) {
        snprintf(err, errlen, "invalid log configuration");
        return -1;
    }
    cxl_offsets_t o;
    cxl_proto_t pr, have;
    uint64_t stride;
    if (!compute_offsets(cfg, &o, &pr, &stride)) {
        snprintf(err, errlen, "configuration does not fit in a 64-bit region");
        return -1;
    }
    fill_geom(cfg, g.region_size, stride, &want);
    const char *what = NULL;
    if (g.brokers != want.brokers) what = "brokers";
    else if (g.subscribers != want.subscribers) what = "subscribers";
    else if (g.pbr_slots != want.pbr_slots) what = "pbr_slots";
    else if (g.batch_stride != want.batch_stride) what = "batch_stride";
    else if (g.goi_slots != want.goi_slots) what = "goi_slots";
    else if (g.max_msgs != want.max_msgs) what = "msgs_per_batch";
    else if (g.msg_size != want.msg_size) what = "msg_size";
    else if (g.order != want.order) what = "order";
    else if (g.region_size > size) what = "region_size";
    if (what) {
        snprintf(err, errlen, "geometry mismatch on %s: region was made for another configuration",
                 what);
        return -1;
    }
    const cxl_ctrl_t *ctrl = (const cxl_ctrl_t *)base;
    cxl_invalidate(&ctrl->proto, sizeof have);
    cxl_copy_out(&have, &ctrl->proto, sizeof have);
    if (have.proto_check != proto_check(&have)) {
        snprintf(err, errlen, "protocol line checksum mismatch: control block is corrupt");
        return -1;
    }
    if (have.ack_level != pr.ack_level) what = "ack_level";
    else if (have.publishers_per_broker != pr.publishers_per_broker) what = "publishers_per_broker";
    else if (have.batches_per_publisher != pr.batches_per_publisher)
        what = "batches_per_publisher (total size)";
    else if (have.variant != pr.variant) what = "variant";
    else if (have.scanline != pr.scanline || have.publine != pr.publine) what = "area offsets";
    if (what) {
        snprintf(err, errlen, "protocol mismatch on %s: region was made for another configuration",
                 what);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ creation */

/* Buffers are touched once here so that no page fault lands on the scanner's hot path. */
static int ebuf_init(ebuf_t *b, uint64_t cap) {
    b->count = 0;
    b->cap = cap;
    b->e = (entry_t *)malloc(cap * sizeof(entry_t));
    if (!b->e) return -1;
    memset(b->e, 0, cap * sizeof(entry_t));
    return 0;
}

static int recs_init(recs_t *r, uint64_t cap, uint64_t elem) {
    r->cap = cap;
    r->elem = elem;
    atomic_store(&r->count, 0);
    r->data = cap ? calloc(cap, elem) : NULL;
    return (!cap || r->data) ? 0 : -1;
}

cxl_log_t *cxl_log_new(void *base, uint64_t size, const cxl_log_cfg_t *cfg, char *err,
                       size_t errlen) {
    if (!cfg_valid(cfg)) {
        snprintf(err, errlen, "invalid log configuration (brokers 1..%u, power-of-two rings, ...)",
                 CXL_MAX_BROKERS);
        return NULL;
    }
    if (cxl_layout_attach(base, size, cfg, err, errlen) != 0) return NULL;
    cxl_log_t *L = (cxl_log_t *)calloc(1, sizeof *L);
    if (!L) { snprintf(err, errlen, "out of memory"); return NULL; }
    L->cfg = *cfg;
    if (!L->cfg.epoch_us) L->cfg.epoch_us = 50;
    L->base = (unsigned char *)base;
    L->size = size;
    L->ctrl = (cxl_ctrl_t *)base;
    cxl_offsets_t o;
    cxl_proto_t pr;
    compute_offsets(cfg, &o, &pr, &L->stride);
    L->scanl = (cxl_scan_line_t *)(void *)(L->base + pr.scanline);
    L->publ = (cxl_pub_line_t *)(void *)(L->base + pr.publine);
    L->claim = (cxl_claim_line_t *)(void *)(L->base + o.claim);
    L->seql = (cxl_seq_line_t *)(void *)(L->base + o.seqline);
    L->subl = (cxl_sub_line_t *)(void *)(L->base + o.subline);
    L->pbr = L->base + o.pbr;
    L->logs = L->base + o.log;
    L->log_bytes = o.log_bytes;
    L->goi = (cxl_goi_entry_t *)(void *)(L->base + o.goi);
    L->msg_stride = align64(CXL_MSG_HDR + cfg->msg_size);
    L->slots_mask = cfg->pbr_slots - 1;
    L->goi_mask = cfg->goi_slots - 1;
    L->npubs = cfg->brokers * cfg->publishers_per_broker;
    L->per_broker = (uint64_t)cfg->publishers_per_broker * cfg->batches_per_publisher;
    pthread_mutex_init(&L->mu, NULL);
    pthread_mutex_init(&L->done_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&L->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    int bad = 0;
    L->pubs = (publisher_t *)aligned_alloc(64, sizeof(publisher_t) * L->npubs);
    bad |= !L->pubs;
    size_t pool_bytes = POOL_SLOTS * 64u + cfg->msg_size + 64u;
    L->pool = (unsigned char *)malloc(pool_bytes);
    bad |= !L->pool;
    uint64_t cap = cfg->pbr_slots;
    for (int e = 0; e < 3 && !bad; e++) {
        if (cfg->variant == 1) bad |= ebuf_init(&L->shared[e], cap * cfg->brokers);
        else for (uint32_t b = 0; b < cfg->brokers; b++) bad |= ebuf_init(&L->bufs[e][b], cap);
    }
    uint64_t rc = cfg->record_capacity;
    uint64_t total = L->per_broker * cfg->brokers;
    if (rc) {
        uint64_t fr = rc + 4096;
        bad |= recs_init(&L->rec[CXL_REC_PUBLISH], total, sizeof(cxl_rec_publish_t));
        bad |= recs_init(&L->rec[CXL_REC_ORDER], rc, sizeof(cxl_rec_order_t));
        bad |= recs_init(&L->rec[CXL_REC_COMMIT], fr * (1 + cfg->subscribers), sizeof(cxl_rec_frontier_t));
        bad |= recs_init(&L->rec[CXL_REC_ACK], fr, sizeof(cxl_rec_frontier_t));
        bad |= recs_init(&L->rec[CXL_REC_LOSS], fr, sizeof(cxl_rec_loss_t));
        for (uint32_t k = 0; k < cfg->subscribers; k++)
            bad |= recs_init(&L->rec[CXL_REC_DELIVER + k], rc, sizeof(cxl_rec_deliver_t));
    }
    for (uint32_t k = 0; k < cfg->subscribers && !bad; k++) {
        L->sub[k].scratch = (unsigned char *)malloc(L->stride + 64);
        bad |= !L->sub[k].scratch;
    }
    if (bad) {
        snprintf(err, errlen, "out of memory for process-local buffers");
        cxl_log_free(L);
        return NULL;
    }
    /* Deterministic payload pool: content derived from the seed; per-slot hashes precomputed
     * so publishing a message costs one copy and a few multiplies. */
    uint64_t x = cfg->seed ^ 0x853c49e6748fea9bull;
    for (size_t i = 0; i < pool_bytes; i += 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        memcpy(L->pool + i, &x, pool_bytes - i < 8 ? pool_bytes - i : 8);
    }
    for (uint32_t s = 0; s < POOL_SLOTS; s++)
        L->pool_hash[s] = cxl_checksum_bytes(L->pool + (uint64_t)s * 64u, cfg->msg_size, 0);
    for (uint32_t i = 0; i < L->npubs; i++) {
        publisher_t *P = &L->pubs[i];
        memset(P, 0, sizeof *P);
        P->broker = i / cfg->publishers_per_broker;
        P->client = i;
        P->quota = cfg->batches_per_publisher;
    }
    for (uint32_t b = 0; b < cfg->brokers; b++) {
        scanner_t *S = &L->scan[b];
        atomic_store(&S->active, QUIESCENT);
        S->broker = b;
        S->quota = L->per_broker;
        S->foreign_at = UINT64_MAX;
    }
    for (uint32_t k = 0; k < cfg->subscribers; k++) L->sub[k].idx = k;
    L->next_epoch_ns = cxl_now_ns();
    L->host = host_identity();
    L->nonce = mix64(((uint64_t)getpid() << 32) ^ cxl_now_ns() ^ (uint64_t)(uintptr_t)L) | 1u;
    return L;
}

void cxl_log_free(cxl_log_t *L) {
    if (!L) return;
    for (int e = 0; e < 3; e++) {
        for (uint32_t b = 0; b < CXL_MAX_BROKERS; b++) free(L->bufs[e][b].e);
        free(L->shared[e].e);
    }
    for (int k = 0; k < CXL_REC_DELIVER + (int)CXL_MAX_SUBS; k++) free(L->rec[k].data);
    for (uint32_t k = 0; k < CXL_MAX_SUBS; k++) free(L->sub[k].scratch);
    free(L->pool);
    free(L->pubs);
    pthread_mutex_destroy(&L->mu);
    pthread_mutex_destroy(&L->done_mu);
    pthread_cond_destroy(&L->done_cv);
    free(L);
}

/* ------------------------------------------------------------------ publisher */

/* Lowest ring index still in use on broker b: ordering must have consumed it and every
 * subscriber must have read its payload. `limit` is the highest value possible (slots claimed
 * so far): a frontier beyond it is corrupt and ignored, never followed. */
static uint64_t reuse_floor(cxl_log_t *L, publisher_t *P, uint64_t limit) {
    const uint32_t b = P->broker;
    if (!FAULT(L, pub_no_invalidate_frontier)) cxl_invalidate(&L->seql[b], CXL_LINE);
    uint64_t f = cxl_consume64(&L->seql[b].consumed_through);
    uint64_t rel[CXL_MAX_SUBS];
    for (uint32_t k = 0; k < L->cfg.subscribers; k++) {
        cxl_invalidate(&L->subl[k].released[b], 8);
        rel[k] = cxl_consume64(&L->subl[k].released[b]);
    }
    if (limit == UINT64_MAX) { /* several publishers: the claims made so far, read after */
        cxl_invalidate(&L->claim[b], CXL_LINE);
        limit = cxl_consume64(&L->claim[b].claimed);
    }
    if (f > limit) {
        corrupt(L, CORRUPT_CTRL, &L->seql[b].consumed_through, f);
        f = P->floor;
    }
    for (uint32_t k = 0; k < L->cfg.subscribers; k++) {
        uint64_t r = rel[k];
        if (r > limit) {
            corrupt(L, CORRUPT_CTRL, &L->subl[k].released[b], r);
            r = P->floor;
        }
        if (r < f) f = r;
    }
    return f;
}

/* The publisher's lease: what it holds and a beat, in its own line. Only kept when slots can
 * be declared lost (slot_timeout_ns > 0); the next fence closes the flush. */
static void pub_lease(cxl_log_t *L, publisher_t *P, uint64_t holding) {
    cxl_pub_line_t *l = &L->publ[P->client];
    if (!P->lease_ready) {
        int det = (L->cfg.flags & CXL_F_DETERMINISTIC) != 0;
        cxl_st64_shared(&l->host, L->host);
        cxl_st64_shared(&l->ident, det ? 0u : (uint64_t)(uint32_t)getpid() | (uint64_t)os_tid() << 32);
        P->lease_ready = 1;
    }
    cxl_st64_shared(&l->holding, holding);
    cxl_st64_shared(&l->beat, ++P->beat);
    cxl_flush(l);
    P->since_beat = 0;
}

static inline void pub_progress(cxl_log_t *L, publisher_t *P, uint64_t bytes) {
    if (!L->cfg.slot_timeout_ns) return;
    P->since_beat += bytes;
    if (P->since_beat >= BEAT_BYTES) {
        cxl_pub_line_t *l = &L->publ[P->client];
        cxl_st64_shared(&l->beat, ++P->beat);
        cxl_flush(l);
        P->since_beat = 0;
    }
}

static void copy_beating(cxl_log_t *L, publisher_t *P, unsigned char *dst, const unsigned char *src,
                         uint64_t n, int nt) {
    while (n) {
        uint64_t k = n < BEAT_BYTES ? n : BEAT_BYTES;
        if (nt) cxl_copy_in_nt(dst, src, k);
        else cxl_copy_in(dst, src, k);
        pub_progress(L, P, k);
        dst += k; src += k; n -= k;
    }
}

/* Stream one message as whole 64-byte lines: a partial line written with non-temporal stores
 * goes out as several partial write-combining bursts, many times slower than a full line.
 * The header shares the first line with the payload's start; the last line is padded. */
static void write_message_nt(cxl_log_t *L, publisher_t *P, unsigned char *dst,
                             const cxl_msg_hdr_t *h, const unsigned char *src, uint32_t msz) {
    unsigned char line[CXL_LINE] __attribute__((aligned(64)));
    uint32_t first = msz < CXL_LINE - CXL_MSG_HDR ? msz : CXL_LINE - CXL_MSG_HDR;
    memcpy(line, h, CXL_MSG_HDR);
    memcpy(line + CXL_MSG_HDR, src, first);
    memset(line + CXL_MSG_HDR + first, 0, CXL_LINE - CXL_MSG_HDR - first);
    cxl_copy_in_nt(dst, line, CXL_LINE);
    uint32_t rest = msz - first, whole = rest / CXL_LINE * CXL_LINE, tail = rest - whole;
    if (whole) copy_beating(L, P, dst + CXL_LINE, src + first, whole, 1);
    if (tail) {
        memcpy(line, src + first + whole, tail);
        memset(line + tail, 0, CXL_LINE - tail);
        cxl_copy_in_nt(dst + CXL_LINE + whole, line, CXL_LINE);
    }
}

/* Crash injection: the publisher dies here, with its slot claimed and half its payload
 * written. Its thread stops (or its process is killed); nothing else is touched. */
static int pub_crash_here(cxl_log_t *L, publisher_t *P, uint32_t m) {
    if (!L->cfg.crash_client || L->cfg.crash_client != P->client + 1 ||
        P->done != L->cfg.crash_after || m != L->cfg.msgs_per_batch / 2)
        return 0;
    if (L->cfg.crash_kill) kill(getpid(), SIGKILL);
    P->crashed = 1;
    return 1;
}

static int write_payload(cxl_log_t *L, publisher_t *P, unsigned char *ext, uint64_t *size,
                         uint64_t *cs_out) {
    const int nt = (L->cfg.flags & CXL_F_NT_COPY) != 0;
    const uint32_t msz = L->cfg.msg_size;
    uint64_t cs = 0, off = 0;
    for (uint32_t m = 0; m < L->cfg.msgs_per_batch; m++) {
        if (pub_crash_here(L, P, m)) return -1;
        uint64_t seq = P->msg_seq++;
        uint32_t ps = pool_slot(P->client, seq, L->cfg.seed);
        cxl_msg_hdr_t h = {msz, P->client, seq};
        const unsigned char *src = L->pool + (uint64_t)ps * 64u;
        if (nt) {
            write_message_nt(L, P, ext + off, &h, src, msz);
        } else {
            cxl_copy_in(ext + off, &h, sizeof h);
            copy_beating(L, P, ext + off + sizeof h, src, msz, 0);
        }
        cs = fold_checksum(cs, msg_checksum(L->pool_hash[ps], msz, P->client, seq));
        off += L->msg_stride;
        pub_progress(L, P, 64);
        if (L->cfg.flags & CXL_F_EXTRA_FENCE) cxl_sfence();
    }
    /* Rule 1: payload flushed (non-temporal stores need no flush); the header's fence closes
     * these flushes too (rule 6: one fence may close several flushes). */
    if (!nt && !FAULT(L, pub_no_payload_flush)) cxl_flush_range(ext, off);
    *size = off;
    *cs_out = cs;
    return 0;
}

static void write_header(cxl_log_t *L, publisher_t *P, cxl_batch_hdr_t *h, uint64_t size,
                         uint64_t cs, uint64_t first_seq, uint64_t log_off, uint64_t now) {
    cxl_batch_hdr_t v;
    memset(&v, 0, sizeof v);
    v.slot_abs = P->abs;
    v.broker = P->broker;
    v.client = P->client;
    v.client_batch_seq = P->done;
    v.msg_count = L->cfg.msgs_per_batch;
    v.publish_ns = now;
    v.first_msg_seq = first_seq;
    v.log_offset = log_off;
    v.size = size;
    v.checksum = cs;
    uint64_t token = FAULT(L, pub_ready_flag) ? 1 : P->abs + 1;
    if (FAULT(L, pub_token_before_body)) cxl_publish_token(h, &h->token, token);
    /* Rule 2: both header lines flushed, one fence (the seed's amortisation), then the token. */
    cxl_copy_in(h, &v, offsetof(cxl_batch_hdr_t, token));
    if (FAULT(L, pub_fence_before_flush)) cxl_sfence();
    if (!FAULT(L, pub_no_hdr_flush_line0)) cxl_flush(h);
    if (L->cfg.flags & CXL_F_FENCE_PER_LINE) cxl_sfence();
    if (!FAULT(L, pub_no_hdr_flush_line1)) cxl_flush(&h->log_offset);
    if (!FAULT(L, pub_no_hdr_fence) && !FAULT(L, pub_fence_before_flush)) cxl_sfence();
    if (!FAULT(L, pub_token_before_body)) cxl_publish_token(h, &h->token, token);
    if (!FAULT(L, pub_no_token_flush)) cxl_flush(&h->token);
    cxl_sfence();
}

static void record_publish(cxl_log_t *L, publisher_t *P, uint64_t now, uint64_t size,
                           uint64_t cs) {
    recs_t *r = &L->rec[CXL_REC_PUBLISH];
    if (!r->data) return;
    uint64_t i = (uint64_t)P->broker * L->per_broker + P->abs;
    if (P->abs >= L->per_broker) return;
    cxl_rec_publish_t *p = (cxl_rec_publish_t *)r->data + i;
    p->publish_ns = now;
    p->pbr_index = P->abs;
    p->client_batch_seq = P->done;
    p->checksum = cs;
    p->broker = P->broker;
    p->client = P->client;
    p->msg_count = L->cfg.msgs_per_batch;
    p->size = (uint32_t)size;
    atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
}

/* Read the ACK frontier this publisher waits for; record each new value it sees. The frontier
 * counts ring slots resolved (acknowledged or declared lost): a slot below it is acknowledged
 * unless the broker's loss count says otherwise (see docs/architecture.md, ACK levels). */
static uint64_t poll_ack(cxl_log_t *L, publisher_t *P) {
    cxl_seq_line_t *s = &L->seql[P->broker];
    cxl_invalidate(s, CXL_LINE);
    const int durable = L->cfg.ack_level >= 2;
    uint64_t f = durable ? cxl_consume64(&s->durable_batches) : cxl_consume64(&s->ordered_batches);
    if (f > L->per_broker) {
        corrupt(L, CORRUPT_CTRL, durable ? &s->durable_batches : &s->ordered_batches, f);
        return P->last_ack;
    }
    if (f != P->last_ack) {
        uint64_t msgs = durable ? cxl_consume64(&s->durable_msgs) : cxl_consume64(&s->ordered_msgs);
        cxl_invalidate(&L->claim[P->broker], CXL_LINE);
        uint64_t claimed = cxl_consume64(&L->claim[P->broker].claimed);
        if (f > claimed) stat_add(&L->st.ack_ahead, 1);
        cxl_rec_frontier_t *r = (cxl_rec_frontier_t *)rec_slot(L, CXL_REC_ACK);
        if (r) {
            r->ns = cxl_now_ns();
            r->value = f;
            r->value2 = msgs;
            r->who = P->broker;
            r->kind = L->cfg.ack_level;
        }
        P->last_ack = f;
    }
    return f;
}

/* After committing slot abs (token written, then a full fence): did its scanner declare it
 * lost meanwhile? The scanner writes its loss, fences, and re-reads the token, so of the two
 * at least one sees the other (a false loss is always counted). */
static void pub_check_given_up(cxl_log_t *L, publisher_t *P, uint64_t abs) {
    cxl_scan_line_t *sl = &L->scanl[P->broker];
    cxl_invalidate(&sl->lost_count, CXL_LINE);
    if (!cxl_consume64(&sl->lost_count)) return;
    for (uint32_t i = 0; i < CXL_LOST_RING; i++)
        if (cxl_consume64(&sl->lost_ring[i]) == abs + 1) {
            P->lost_told++;
            stat_add(&L->st.lost_late_commits, 1);
            return;
        }
}

/* Claim the next ring slot, only once it is free: a publisher held back by the ring holds
 * nothing, so it never looks like a crashed one. Returns 1 with P->abs set. */
static int pub_claim(cxl_log_t *L, publisher_t *P) {
    const uint32_t b = P->broker;
    const uint64_t slots = L->cfg.pbr_slots;
    const int lease = L->cfg.slot_timeout_ns != 0;
    if (L->cfg.publishers_per_broker == 1) {
        /* the broker's only publisher: a plain store, not a locked RMW that would wait for
         * every earlier flush to drain */
        uint64_t abs = P->done;
        if (abs >= P->floor + slots && !FAULT(L, pub_reuse_early)) {
            P->floor = reuse_floor(L, P, abs);
            if (abs >= P->floor + slots) return 0;
        }
        P->abs = abs;
        if (lease) {
            pub_lease(L, P, abs + 1);
            cxl_sfence(); /* the lease is out before the claim it explains */
        }
        cxl_commit64(&L->claim[b].claimed, abs + 1);
        cxl_flush(&L->claim[b]); /* the header's fence closes it */
        return 1;
    }
    cxl_invalidate(&L->claim[b], CXL_LINE);
    uint64_t c = cxl_consume64(&L->claim[b].claimed);
    int leased = 0;
    for (int tries = 0; tries < 8; tries++) { /* a failed CAS leaves the value found in c */
        if (c >= L->per_broker) { /* every slot of the run is claimed, yet we have quota */
            corrupt(L, CORRUPT_CTRL, &L->claim[b].claimed, c);
            break;
        }
        if (c >= P->floor + slots && !FAULT(L, pub_reuse_early)) {
            P->floor = reuse_floor(L, P, UINT64_MAX);
            if (c >= P->floor + slots) break;
        }
        if (lease) {
            pub_lease(L, P, c + 1);
            cxl_sfence(); /* visible before the claim */
            leased = 1;
        }
        if (cxl_cas64(&L->claim[b].claimed, &c, c + 1)) {
            P->abs = c;
            return 1;
        }
    }
    /* a lease for a slot another publisher won must not make a crashed winner look alive */
    if (leased) pub_lease(L, P, 0);
    return 0;
}

static int pub_step(cxl_log_t *L, publisher_t *P) {
    const uint32_t b = P->broker;
    if (P->crashed) return STEP_DONE;
    if (P->done == P->quota) {
        if (L->cfg.ack_level == 0 || P->quota == 0) return STEP_DONE;
        /* resolved: acknowledged, or declared lost (then counted lost, never acknowledged) */
        if (poll_ack(L, P) > P->last_abs) {
            stat_max(&L->st.last_ack_ns, cxl_now_ns());
            return STEP_DONE;
        }
        return STEP_IDLE;
    }
    if (!P->have_slot) {
        if (!pub_claim(L, P)) {
            P->waits++;
            return STEP_IDLE;
        }
        P->have_slot = 1;
    }
    uint64_t now = cxl_now_ns();
    if (P->done == 0) P->first_ns = now;
    uint64_t log_off = (P->abs & L->slots_mask) * L->stride;
    if (L->cfg.publishers_per_broker > 1) {
        /* the slot passed the reuse floor: it is ours now, whoever wrote it on the last lap */
        cxl_take_lines(slot_at(L, b, P->abs), sizeof(cxl_batch_hdr_t));
        cxl_take_lines(log_of(L, b) + log_off, L->stride);
    }
    uint64_t first_seq = P->msg_seq, size, cs;
    if (write_payload(L, P, log_of(L, b) + log_off, &size, &cs) != 0) return STEP_DONE;
    cxl_batch_hdr_t *h = slot_at(L, b, P->abs);
    write_header(L, P, h, size, cs, first_seq, log_off, now);
    if (L->cfg.slot_timeout_ns) {
        pub_lease(L, P, 0);
        cxl_mfence(); /* token and lease out before the scanner's loss line is read */
        pub_check_given_up(L, P, P->abs);
    }
    record_publish(L, P, now, size, cs);
    P->last_ns = now;
    P->last_abs = P->abs;
    P->done++;
    P->have_slot = 0;
    if (L->cfg.ack_level && L->rec[CXL_REC_ACK].data && (P->done & 15) == 0) poll_ack(L, P);
    return STEP_PROGRESS;
}

/* ------------------------------------------------------------------ scanner */

/* Identity fields a run can contain: the client publishes on its own broker, its batch
 * sequence stays below its quota, the ring index below the broker's total. */
static int identity_valid(const cxl_log_t *L, uint32_t b, uint32_t client, uint64_t cbs,
                          uint64_t pbr_index) {
    return client < L->npubs && client / L->cfg.publishers_per_broker == b &&
           cbs < L->cfg.batches_per_publisher && pbr_index < L->per_broker;
}

/* Validate a header copied out of the ring. Returns 1 when every field is in range. */
static int header_valid(const cxl_log_t *L, const cxl_batch_hdr_t *v, uint32_t b, uint64_t abs) {
    if (v->slot_abs != abs || v->broker != b) return 0;
    if (v->msg_count == 0 || v->msg_count > L->cfg.msgs_per_batch) return 0;
    if (v->size < (uint64_t)v->msg_count * CXL_MSG_HDR || v->size > L->stride) return 0;
    if (v->log_offset % CXL_LINE || v->log_offset > L->log_bytes - v->size) return 0;
    if (!identity_valid(L, b, v->client, v->client_batch_seq, abs)) return 0;
    return 1;
}

/* Who holds slot abs of broker b: a fingerprint of the holders' beats (it moves while any of
 * them works), and the holder's client. On this host, a holder whose thread still exists is
 * alive (slow, not crashed) however long its beat stands still. */
static uint64_t holder_beats(cxl_log_t *L, uint32_t b, uint64_t abs, uint32_t *client,
                             int check_os, int *alive) {
    uint64_t fp = 0x686f6c64ull;
    *client = NO_CLIENT;
    *alive = 0;
    const uint32_t ppb = L->cfg.publishers_per_broker;
    for (uint32_t i = 0; i < ppb; i++) {
        cxl_pub_line_t *l = &L->publ[b * ppb + i];
        cxl_invalidate(l, CXL_LINE);
        if (cxl_consume64(&l->holding) != abs + 1) continue;
        fp = mix64(fp ^ cxl_consume64(&l->beat) ^ ((uint64_t)i << 48));
        *client = b * ppb + i;
        uint64_t ident = check_os ? cxl_consume64(&l->ident) : 0;
        if (check_os && cxl_consume64(&l->host) == L->host &&
            os_thread_alive((uint32_t)ident, (uint32_t)(ident >> 32)))
            *alive = 1;
    }
    return fp;
}

/* Declare slot S->next lost: tell it on the scanner's line, then look at the token once more
 * (a publisher that committed meanwhile reads our line after its token: see
 * pub_check_given_up). The scanner line is the scanner's own. */
static int scan_declare_lost(cxl_log_t *L, scanner_t *S, cxl_batch_hdr_t *h, uint64_t want) {
    cxl_scan_line_t *sl = &L->scanl[S->broker];
    cxl_st64_shared(&sl->lost_ring[S->lost_count % CXL_LOST_RING], S->next + 1);
    cxl_st64_shared(&sl->lost_count, ++S->lost_count);
    cxl_flush(&sl->lost_count);
    cxl_mfence();
    cxl_invalidate(&h->log_offset, CXL_LINE);
    return cxl_consume64(&h->token) == want;
}

/* Try to take the next slot. Returns 1 with *out filled, 0 if it is not there yet. */
static int scan_take(cxl_log_t *L, scanner_t *S, entry_t *out) {
    const uint32_t b = S->broker;
    cxl_batch_hdr_t *h = slot_at(L, b, S->next);
    if (!FAULT(L, scan_no_invalidate_token)) cxl_invalidate(&h->log_offset, CXL_LINE);
    uint64_t tok = cxl_consume64(&h->token);
    uint64_t want = FAULT(L, pub_ready_flag) ? 1 : S->next + 1;
    memset(out, 0, sizeof *out);
    out->broker = b;
    out->pbr_index = S->next;
    if (tok != want) {
        /* An earlier lap of this slot is expected; a later lap or another slot's token is not. */
        int foreign = tok > want || (tok && ((tok - 1) & L->slots_mask) != (S->next & L->slots_mask));
        if (foreign && S->foreign_at != S->next && !FAULT(L, pub_ready_flag)) {
            S->foreign_at = S->next;
            corrupt(L, CORRUPT_FOREIGN, &h->token, tok);
        }
        if (FAULT(L, scan_skip_empty)) { out->flags = ENTRY_LOST; return 2; }
        if (!L->cfg.slot_timeout_ns) return 0;
        /* Each pending slot has its own clock, and it runs only while the slot is claimed and
         * its holder shows no life: a slot not yet claimed waits for a publisher held back by
         * the ring, a beating holder is slow, not crashed. */
        uint64_t now = cxl_now_ns();
        uint32_t client;
        int alive;
        if (S->wait_slot != S->next + 1) {
            S->wait_slot = S->next + 1;
            S->wait_since_ns = now;
            S->wait_beat = holder_beats(L, b, S->next, &client, 0, &alive);
            return 0;
        }
        cxl_invalidate(&L->claim[b], CXL_LINE);
        uint64_t claimed = cxl_consume64(&L->claim[b].claimed);
        if (claimed > L->per_broker) {
            corrupt(L, CORRUPT_CTRL, &L->claim[b].claimed, claimed);
            S->wait_since_ns = now;
            return 0;
        }
        if (claimed <= S->next) { S->wait_since_ns = now; return 0; }
        uint64_t fp = holder_beats(L, b, S->next, &client, 0, &alive);
        if (fp != S->wait_beat) {
            S->wait_beat = fp;
            S->wait_since_ns = now;
            return 0;
        }
        if (now - S->wait_since_ns <= L->cfg.slot_timeout_ns) return 0;
        holder_beats(L, b, S->next, &client, 1, &alive);
        if (alive) { S->wait_since_ns = now; return 0; }
        /* claimed, never committed, its holder gone: resolve it explicitly */
        out->flags = ENTRY_LOST;
        out->client = client;
        if (scan_declare_lost(L, S, h, want)) {
            out->flags |= ENTRY_LATE;
            stat_add(&L->st.lost_late_commits, 1);
        }
        S->wait_slot = 0; /* the next slot starts its own clock */
        return 1;
    }
    S->wait_slot = 0;
    cxl_batch_hdr_t v;
    if (!FAULT(L, scan_no_invalidate_body)) cxl_invalidate(h, CXL_LINE);
    cxl_copy_out(&v, h, sizeof v);
    if (!header_valid(L, &v, b, S->next)) {
        corrupt(L, CORRUPT_HEADER, h, S->next);
        out->flags = ENTRY_CORRUPT;
        out->client = NO_CLIENT;
        return 1;
    }
    out->log_offset = v.log_offset;
    out->size = v.size;
    out->checksum = v.checksum;
    out->client_batch_seq = v.client_batch_seq;
    out->publish_ns = v.publish_ns;
    out->client = v.client;
    out->msg_count = v.msg_count;
    return 1;
}

static void record_loss(cxl_log_t *L, const entry_t *e) {
    stat_add(&L->st.lost_by_broker[e->broker], 1);
    cxl_rec_loss_t *r = (cxl_rec_loss_t *)rec_slot(L, CXL_REC_LOSS);
    if (!r) return;
    r->ns = cxl_now_ns();
    r->pbr_index = e->pbr_index;
    r->broker = e->broker;
    r->reason = (e->flags & ENTRY_CORRUPT) ? 2 : 1;
    r->client = e->client;
    r->alive = (e->flags & ENTRY_LATE) ? 1 : 0;
}

/* Announce the epoch this scanner pushes into. The re-check closes the window in which the
 * sequencer bumps the epoch between our load and our store (see seq_seal). */
static uint64_t scanner_enter(cxl_log_t *L, scanner_t *S) {
    for (;;) {
        uint64_t e = atomic_load(&L->epoch);
        atomic_store(&S->active, e);
        if (atomic_load(&L->epoch) == e) return e;
    }
}

/* Collect up to SCAN_CHUNK committed slots. Per-scanner variant: into this scanner's own
 * buffer, no lock. Shared-mutex variant (the seed's "before"): each push takes the one mutex
 * and appends to the shared buffer of the current epoch, as the seed did per batch. */
static uint64_t scan_collect(cxl_log_t *L, scanner_t *S, ebuf_t *own) {
    uint64_t n = 0;
    const int shared = L->cfg.variant == 1;
    while (S->next < S->quota && n < SCAN_CHUNK) {
        /* the ring is read in order: fetch a few headers ahead of the token poll */
        const cxl_batch_hdr_t *ahead = slot_at(L, S->broker, S->next + 8);
        __builtin_prefetch(ahead);
        __builtin_prefetch(&ahead->log_offset);
        entry_t e;
        if (!shared && own->count >= own->cap) break;
        if (!scan_take(L, S, &e)) break;
        if (shared) {
            pthread_mutex_lock(&L->mu);
            ebuf_t *buf = &L->shared[atomic_load(&L->epoch) % 3];
            int full = buf->count >= buf->cap;
            if (!full) buf->e[buf->count++] = e;
            pthread_mutex_unlock(&L->mu);
            if (full) break; /* buffers are sized for every slot of every ring: not reached */
        } else {
            own->e[own->count++] = e;
        }
        if (e.flags) record_loss(L, &e);
        S->next++;
        n++;
    }
    return n;
}

static int scan_step(cxl_log_t *L, scanner_t *S) {
    if (S->next >= S->quota) return STEP_DONE;
    uint64_t n;
    if (L->cfg.variant == 1) {
        n = scan_collect(L, S, NULL);
    } else {
        if ((L->cfg.flags & CXL_F_DETERMINISTIC) && S->phase == 0) {
            S->pending_epoch = scanner_enter(L, S);
            S->phase = 1;
            return STEP_IDLE; /* the sequencer may run between announce and push */
        }
        uint64_t e = S->phase ? S->pending_epoch : scanner_enter(L, S);
        S->phase = 0;
        n = scan_collect(L, S, &L->bufs[e % 3][S->broker]);
        atomic_store(&S->active, QUIESCENT);
    }
    if (S->next >= S->quota) {
        atomic_fetch_add(&L->scanners_done, 1);
        return STEP_DONE;
    }
    return n ? STEP_PROGRESS : STEP_IDLE;
}

/* ------------------------------------------------------------------ Order 0 acker */

static void publish_frontier(cxl_log_t *L, uint32_t b, uint64_t consumed, uint64_t batches,
                             uint64_t msgs, uint64_t lost) {
    cxl_seq_line_t *s = &L->seql[b];
    cxl_commit64(&s->lost_batches, lost);
    cxl_commit64(&s->ordered_msgs, msgs);
    cxl_commit64(&s->ordered_batches, batches);
    cxl_commit64(&s->consumed_through, consumed);
    if (!FAULT(L, seq_no_frontier_flush)) cxl_flush(s);
}

static void publish_durable(cxl_log_t *L, uint32_t b, uint64_t batches, uint64_t msgs) {
    cxl_seq_line_t *s = &L->seql[b];
    cxl_commit64(&s->durable_msgs, msgs);
    cxl_commit64(&s->durable_batches, batches);
    cxl_flush(s);
}

static int ack0_step(cxl_log_t *L, scanner_t *S) {
    if (S->next >= S->quota) return STEP_DONE;
    uint64_t n = 0, live = 0, msgs0 = S->acked_msgs;
    while (S->next < S->quota && n < SCAN_CHUNK) {
        entry_t e;
        int rc = scan_take(L, S, &e);
        if (!rc) break;
        if (e.flags) {
            record_loss(L, &e);
            S->lost++;
            stat_add(&L->st.batches_lost, 1);
        } else {
            live++;
            S->acked_msgs += e.msg_count;
            /* Order 0: a batch's position is its ring index in its broker's log */
            cxl_rec_order_t *r = (cxl_rec_order_t *)rec_slot(L, CXL_REC_ORDER);
            if (r) {
                r->seq = e.pbr_index;
                r->pbr_index = e.pbr_index;
                r->commit_ns = cxl_now_ns();
                r->first_msg_order = S->acked_msgs - e.msg_count;
                r->client_batch_seq = e.client_batch_seq;
                r->broker = S->broker;
                r->msg_count = e.msg_count;
                r->client = e.client;
            }
        }
        S->next++;
        n++;
    }
    if (!n) return STEP_IDLE;
    /* The broker's own frontier is the ACK in Order 0: flushed and fenced before it counts.
     * Its record time is taken before the store that makes it visible (see seq_commit). */
    const uint64_t t_commit = L->rec[CXL_REC_COMMIT].data ? cxl_now_ns() : 0;
    publish_frontier(L, S->broker, S->next, S->next, S->acked_msgs, S->lost);
    cxl_sfence();
    cxl_rec_frontier_t *cr = (cxl_rec_frontier_t *)rec_slot(L, CXL_REC_COMMIT);
    if (cr) { cr->ns = t_commit; cr->value = S->next; cr->who = S->broker; cr->kind = 0; }
    if (L->cfg.ack_level >= 2) {
        publish_durable(L, S->broker, S->next, S->acked_msgs);
        cxl_sfence();
    }
    atomic_fetch_add(&L->progress_msgs, S->acked_msgs - msgs0);
    stat_add(&L->st.batches_ordered, live);
    stat_add(&L->st.messages_ordered, S->acked_msgs - msgs0);
    if (S->next >= S->quota) {
        atomic_fetch_add(&L->scanners_done, 1);
        return STEP_DONE;
    }
    return STEP_PROGRESS;
}

/* ------------------------------------------------------------------ epoch sequencer */

/*
 * Sealing epoch E (per-scanner variant). The sequencer stores epoch = E+1 and then waits until
 * no scanner announces E. A scanner pushes into buffer E only after it stored active = E and
 * then re-read epoch == E (scanner_enter). All four accesses are sequentially consistent, so
 * in their single total order either the scanner's re-read comes before our store of E+1 --
 * then its store of active = E comes before our reads of active, and we wait until it stores
 * QUIESCENT after its pushes -- or the re-read sees E+1 and the scanner retries with E+1 and
 * never touches buffer E. Buffer E is reused only at epoch E+3, after we drained it.
 * Returns 1 when the epoch is sealed and its buffers are stable.
 */
static int seq_seal(cxl_log_t *L) {
    if (!L->sealing) {
        L->seal_epoch = atomic_load(&L->epoch);
        if (L->cfg.variant == 1) {
            pthread_mutex_lock(&L->mu); /* no scanner is inside its push while we hold it */
            atomic_store(&L->epoch, L->seal_epoch + 1);
            pthread_mutex_unlock(&L->mu);
            return 1;
        }
        atomic_store(&L->epoch, L->seal_epoch + 1);
        L->sealing = 1;
    }
    if (!FAULT(L, seq_unsealed_read)) {
        for (uint32_t b = 0; b < L->cfg.brokers; b++)
            if (atomic_load(&L->scan[b].active) == L->seal_epoch) return 0;
    }
    L->sealing = 0;
    return 1;
}

/* Merge once per epoch: the sealed buffers are stable until epoch E + 3, so the sequencer
 * reads them where the scanners wrote them instead of copying them together. */
static void seq_count_live(cxl_log_t *L) {
    L->epoch_live = 0;
    for (uint32_t i = 0; i < L->nseg; i++)
        for (uint64_t k = 0; k < L->seg_n[i]; k++) L->epoch_live += !L->seg[i][k].flags;
}

static void seq_merge(cxl_log_t *L) {
    uint64_t E = L->seal_epoch % 3;
    L->nseg = L->seg_i = 0;
    L->seg_at = 0;
    if (L->cfg.variant == 1) {
        ebuf_t *sb = &L->shared[E];
        if (sb->count) { L->seg[0] = sb->e; L->seg_n[0] = sb->count; L->nseg = 1; }
        sb->count = 0;
    } else {
        for (uint32_t b = 0; b < L->cfg.brokers; b++) {
            ebuf_t *eb = &L->bufs[E][b];
            if (eb->count) { L->seg[L->nseg] = eb->e; L->seg_n[L->nseg++] = eb->count; }
            eb->count = 0;
        }
    }
    seq_count_live(L);
}

static int seq_pending(const cxl_log_t *L) { return L->seg_i < L->nseg; }

/* GOI space: positions below the slowest subscriber's may be overwritten. */
static uint64_t goi_room(cxl_log_t *L, uint64_t next_pos) {
    if (!L->cfg.subscribers) return L->cfg.goi_slots;
    uint64_t lo = UINT64_MAX;
    for (uint32_t k = 0; k < L->cfg.subscribers; k++) {
        cxl_invalidate(&L->subl[k], CXL_LINE);
        uint64_t p = cxl_consume64(&L->subl[k].goi_pos);
        if (p > next_pos) { /* a subscriber ahead of what exists: corrupt, not trusted */
            corrupt(L, CORRUPT_CTRL, &L->subl[k].goi_pos, p);
            continue;
        }
        if (p < lo) lo = p;
    }
    if (lo == UINT64_MAX) lo = next_pos;
    if (next_pos - lo > L->cfg.goi_slots) return 0; /* cannot happen: we never overran them */
    return L->cfg.goi_slots - (next_pos - lo);
}

static void goi_write_body(cxl_goi_entry_t *g, const entry_t *e, uint64_t order) {
    cxl_goi_entry_t v;
    v.first_msg_order = order;
    v.log_offset = e->log_offset;
    v.pbr_index = e->pbr_index;
    v.client_batch_seq = e->client_batch_seq;
    v.broker = e->broker;
    v.client = e->client;
    v.size = (uint32_t)e->size;
    v.msg_count = e->msg_count;
    v.checksum = e->checksum;
    v.token = 0;
    cxl_copy_in(g, &v, offsetof(cxl_goi_entry_t, token));
}

/* Take the next chunk of the epoch (within one buffer): up to `room` live entries plus the
 * lost/corrupt ones among them (those take no position). Returns the number of live ones. */
static uint64_t seq_take_chunk(cxl_log_t *L, uint64_t room, uint64_t *taken) {
    entry_t *e = L->seg[L->seg_i] + L->seg_at;
    uint64_t avail = L->seg_n[L->seg_i] - L->seg_at, n = 0, live = 0;
    while (n < avail && n < CHUNK_MAX) {
        if (!e[n].flags && live == room) break;
        live += !e[n].flags;
        n++;
    }
    L->cur = e;
    *taken = n;
    return live;
}

static void seq_advance(cxl_log_t *L, uint64_t n) {
    L->seg_at += n;
    if (L->seg_at >= L->seg_n[L->seg_i]) {
        L->seg_i++;
        L->seg_at = 0;
    }
}

static void seq_account(cxl_log_t *L, const entry_t *e) {
    uint32_t b = e->broker;
    if (e->pbr_index != L->seq_next_pbr[b]) stat_add(&L->st.order_gaps, 1);
    L->seq_next_pbr[b] = e->pbr_index + 1;
    L->seq_consumed[b] = e->pbr_index + 1;
    if (e->flags) {
        L->seq_lost[b]++;
        stat_add(&L->st.batches_lost, 1);
    } else {
        L->seq_ordered_msgs[b] += e->msg_count;
    }
}

static void seq_publish_frontiers(cxl_log_t *L) {
    for (uint32_t b = 0; b < L->cfg.brokers; b++)
        publish_frontier(L, b, L->seq_consumed[b], L->seq_consumed[b], L->seq_ordered_msgs[b],
                         L->seq_lost[b]);
}

static void seq_fence(cxl_log_t *L) {
    if (!FAULT(L, seq_no_fence_at_all)) cxl_sfence();
}

/* Assign positions to the live entries of the chunk: one reservation per chunk (= per epoch
 * in steady state), or one per batch in the ablation. */
/* Reserve global positions for the rest of the epoch with one fetch-add (as many as the GOI
 * has room for). Returns how many positions are in hand. */
/* One atomic step on next_global. This sequencer is its only user (the lease), so the value
 * found must be what it reserved so far: another is corrupt, counted and not followed. */
static uint64_t seq_reserve(cxl_log_t *L, uint64_t n) {
    uint64_t got = cxl_fetch_add64(&L->ctrl->reserve.next_global, n);
    uint64_t skew = got - L->next_pos; /* one corruption shifts every later value: count once */
    if (skew != L->resv_skew) {
        if (skew) corrupt(L, CORRUPT_CTRL, &L->ctrl->reserve.next_global, got);
        L->resv_skew = skew;
    }
    uint64_t base = L->next_pos;
    L->next_pos += n;
    return base;
}

static uint64_t seq_reserve_epoch(cxl_log_t *L) {
    if (L->resv_left) return L->resv_left;
    uint64_t room = goi_room(L, L->next_pos);
    uint64_t want = L->epoch_live < room ? L->epoch_live : room;
    if (want) {
        L->resv_base = seq_reserve(L, want);
        L->resv_left = want;
        stat_add(&L->st.reservations, 1);
    }
    return room;
}

/* Assign positions to the live entries of the chunk: from the epoch's reservation, or with one
 * fetch-add per batch in the ablation. Returns one past the highest position. */
static uint64_t seq_assign(cxl_log_t *L, uint64_t n, uint64_t live, uint64_t of_epoch) {
    const int per_batch = (L->cfg.flags & CXL_F_RESERVE_PER_BATCH) != 0;
    if (!per_batch && live > L->resv_left) { /* only the planted duplicate needs more */
        uint64_t extra = live - L->resv_left;
        uint64_t b = seq_reserve(L, extra);
        if (L->resv_left == 0) L->resv_base = b;
        L->resv_left += extra;
    }
    uint64_t hi = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (L->cur[i].flags) continue;
        uint64_t s;
        if (per_batch) {
            s = seq_reserve(L, 1);
            stat_add(&L->st.reservations, 1);
        } else {
            s = L->resv_base++;
            L->resv_left--;
        }
        L->chunk_pos[i] = s;
        if (s + 1 > hi) hi = s + 1;
    }
    L->epoch_live = L->epoch_live > of_epoch ? L->epoch_live - of_epoch : 0;
    return hi;
}

/* Rule 4: bodies flushed and fenced, then tokens flushed and fenced, then committed_seq. */
static void seq_write_goi(cxl_log_t *L, uint64_t n) {
    uint64_t order = L->total_msgs_ordered;
    const int flush = !FAULT(L, seq_no_goi_flush);
    for (uint64_t i = 0; i < n; i++) {
        if (L->cur[i].flags) continue;
        cxl_goi_entry_t *g = &L->goi[L->chunk_pos[i] & L->goi_mask];
        if (FAULT(L, seq_goi_token_first)) {
            cxl_publish_token(g, &g->token, L->chunk_pos[i] + 1);
            cxl_flush(g);
            seq_fence(L);
        }
        goi_write_body(g, &L->cur[i], order);
        if (flush) cxl_flush(g);
        order += L->cur[i].msg_count;
    }
    if (!FAULT(L, seq_no_goi_fence)) seq_fence(L);
    if (FAULT(L, seq_goi_token_first)) return;
    for (uint64_t i = 0; i < n; i++) {
        if (L->cur[i].flags) continue;
        cxl_goi_entry_t *g = &L->goi[L->chunk_pos[i] & L->goi_mask];
        cxl_publish_token(g, &g->token, L->chunk_pos[i] + 1);
        if (flush && !FAULT(L, seq_commit_unflushed)) cxl_flush(g);
    }
    if (!FAULT(L, seq_commit_unflushed)) seq_fence(L);
}

static void seq_flush_late_tokens(cxl_log_t *L, uint64_t n) {
    /* planted seq_commit_unflushed: the token lines are flushed only after the commit */
    for (uint64_t i = 0; i < n; i++)
        if (!L->cur[i].flags) cxl_flush(&L->goi[L->chunk_pos[i] & L->goi_mask]);
    seq_fence(L);
}

static void seq_commit(cxl_log_t *L, uint64_t hi, uint64_t now) {
    cxl_seq_ctrl_t *sc = &L->ctrl->seq;
    uint64_t prev = L->committed; /* what we wrote: the line's copy is never trusted back */
    cxl_commit64(&sc->epoch, L->seal_epoch);
    cxl_commit64(&sc->heartbeat_ns, now);
    cxl_commit64(&sc->ordered_msgs, L->total_msgs_ordered);
    if (hi > prev) {
        cxl_commit64(&sc->committed_seq, hi);
        L->committed = hi;
    }
    if (!FAULT(L, seq_no_frontier_flush)) cxl_flush(sc);
    cxl_rec_frontier_t *cr = (cxl_rec_frontier_t *)rec_slot(L, CXL_REC_COMMIT);
    if (cr) {
        /* the record time is `now`, taken before the store that made the commit visible: a
         * reader that sees the new committed_seq never seems to have read it before it */
        cr->ns = now;
        cr->value = hi > prev ? hi : prev;
        cr->who = 0;
        cr->kind = 0;
    }
}

static void seq_record(cxl_log_t *L, uint64_t n, uint64_t now) {
    uint64_t order = L->total_msgs_ordered;
    for (uint64_t i = 0; i < n; i++) {
        const entry_t *e = &L->cur[i];
        if (e->flags) continue;
        cxl_rec_order_t *r = (cxl_rec_order_t *)rec_slot(L, CXL_REC_ORDER);
        if (r) {
            r->seq = L->chunk_pos[i];
            r->pbr_index = e->pbr_index;
            r->commit_ns = now;
            r->first_msg_order = order;
            r->client_batch_seq = e->client_batch_seq;
            r->broker = e->broker;
            r->msg_count = e->msg_count;
            r->client = e->client;
        }
        if (e->publish_ns && now > e->publish_ns) L->st.lat_hist[lat_bucket(now - e->publish_ns)]++;
        order += e->msg_count;
    }
}

static int seq_drained(cxl_log_t *L) {
    for (int e = 0; e < 3; e++) {
        if (L->shared[e].count) return 0;
        for (uint32_t b = 0; b < L->cfg.brokers; b++)
            if (L->bufs[e][b].count) return 0;
    }
    return 1;
}

/* Seal and merge the next epoch when the current one is fully written. */
static int seq_next_epoch(cxl_log_t *L) {
    const int det = (L->cfg.flags & CXL_F_DETERMINISTIC) != 0;
    uint32_t done = atomic_load(&L->scanners_done);
    if (!L->sealing && !det && cxl_now_ns() < L->next_epoch_ns && done < L->cfg.brokers)
        return STEP_IDLE;
    if (!seq_seal(L)) return STEP_IDLE;
    seq_merge(L);
    L->next_epoch_ns = cxl_now_ns() + (uint64_t)L->cfg.epoch_us * 1000u;
    stat_add(&L->st.epochs, 1);
    if (seq_pending(L)) return STEP_PROGRESS;
    if (done >= L->cfg.brokers && seq_drained(L)) {
        /* done names the final committed_seq, so a stray value cannot end subscribers early */
        cxl_commit64(&L->ctrl->seq.done, L->committed + 1);
        cxl_flush(&L->ctrl->seq);
        cxl_sfence();
        return STEP_DONE;
    }
    return STEP_IDLE;
}

static int seq_step(cxl_log_t *L) {
    if (!seq_pending(L)) {
        int rc = seq_next_epoch(L);
        if (rc != STEP_PROGRESS) return rc;
    }
    uint64_t room;
    if (L->cfg.flags & CXL_F_RESERVE_PER_BATCH) {
        room = goi_room(L, L->next_pos);
    } else {
        seq_reserve_epoch(L);
        room = L->resv_left;
    }
    if (room == 0 && L->epoch_live) return STEP_IDLE;
    uint64_t n, live = seq_take_chunk(L, room, &n);
    const uint64_t taken = n, live_taken = live;
    if (n == 0) return STEP_IDLE;
    if (FAULT(L, seq_dup_identity) && live && n < CHUNK_MAX) {
        /* planted: the chunk's first live batch is ordered a second time, at the end */
        memcpy(L->chunk_copy, L->cur, n * sizeof(entry_t));
        L->cur = L->chunk_copy;
        for (uint64_t i = 0; i < n; i++)
            if (!L->cur[i].flags) { L->cur[n++] = L->cur[i]; live++; break; }
    }
    if (FAULT(L, seq_ack_before_order) && !L->acked_early) {
        /* planted: the ACK frontiers move a whole step before the chunk is ordered */
        for (uint64_t i = 0; i < n; i++) seq_account(L, &L->cur[i]);
        seq_publish_frontiers(L);
        seq_fence(L);
        L->acked_early = 1;
        return STEP_PROGRESS;
    }
    L->acked_early = 0;
    uint64_t hi = seq_assign(L, n, live, live_taken);
    seq_write_goi(L, n);
    uint64_t now = cxl_now_ns();
    seq_record(L, n, now);
    uint64_t order0 = L->total_msgs_ordered;
    for (uint64_t i = 0; i < n; i++)
        if (!L->cur[i].flags) L->total_msgs_ordered += L->cur[i].msg_count;
    if (!FAULT(L, seq_ack_before_order))
        for (uint64_t i = 0; i < n; i++) seq_account(L, &L->cur[i]);
    seq_commit(L, hi, now);
    if (FAULT(L, seq_commit_unflushed)) seq_flush_late_tokens(L, n);
    seq_publish_frontiers(L);
    seq_fence(L);
    if (L->cfg.ack_level >= 2) {
        for (uint32_t b = 0; b < L->cfg.brokers; b++)
            publish_durable(L, b, L->seq_consumed[b], L->seq_ordered_msgs[b]);
        seq_fence(L);
    }
    seq_advance(L, taken);
    stat_add(&L->st.batches_ordered, live);
    stat_add(&L->st.messages_ordered, L->total_msgs_ordered - order0);
    atomic_fetch_add(&L->progress_msgs, L->total_msgs_ordered - order0);
    return STEP_PROGRESS;
}

/* ------------------------------------------------------------------ subscribers */

/* Verify a batch's payload against its checksum, message by message, never reading past
 * `size`. Returns the recomputed checksum, or a value != expected on any malformed message. */
static uint64_t verify_payload(cxl_log_t *L, subscriber_t *U, const unsigned char *p,
                               uint64_t size, uint32_t msg_count, int *ok) {
    if (!FAULT(L, sub_no_invalidate_payload)) cxl_invalidate(p, size);
    const unsigned char *v = (const unsigned char *)cxl_read_view(p, size, U->scratch);
    uint64_t cs = 0, off = 0;
    *ok = 1;
    for (uint32_t m = 0; m < msg_count; m++) {
        cxl_msg_hdr_t h;
        if (size - off < sizeof h) { *ok = 0; break; }
        memcpy(&h, v + off, sizeof h);
        if (h.size > size - off - sizeof h) { *ok = 0; break; }
        uint64_t ph = cxl_checksum_bytes(v + off + sizeof h, h.size, 0);
        cs = fold_checksum(cs, msg_checksum(ph, h.size, h.client, h.msg_seq));
        off += align64(sizeof h + h.size);
        if (off > size) off = size;
    }
    return cs;
}

static void sub_deliver(cxl_log_t *L, subscriber_t *U, uint64_t pos, uint32_t b,
                        uint64_t pbr_index, uint64_t log_offset, uint64_t size,
                        uint32_t msg_count, uint32_t client, uint64_t cbs, uint64_t checksum) {
    const uint32_t k = U->idx;
    uint64_t got = checksum;
    if (!(L->cfg.flags & CXL_F_NO_VERIFY)) {
        int ok;
        got = verify_payload(L, U, log_of(L, b) + log_offset, size, msg_count, &ok);
        if (!ok || got != checksum) stat_add(&L->st.sub_checksum_errors[k], 1);
    }
    /* per-broker arrival order: ring indices strictly increase within a broker */
    if (pbr_index + 1 <= U->last_pbr[b]) stat_add(&L->st.sub_order_errors[k], 1);
    U->last_pbr[b] = pbr_index + 1;
    /* Order 2: one sequence, hashed in delivery order. Order 0: only each broker's sequence is
     * defined, so hash per broker and combine independently of the interleaving. */
    if (L->cfg.order == 2)
        U->hash = mix64(U->hash ^ pos) ^ mix64(((uint64_t)b << 56) ^ pbr_index) ^ checksum;
    else
        U->bhash[b] = mix64(U->bhash[b] ^ pbr_index) ^ checksum;
    L->st.sub_batches[k]++;
    L->st.sub_messages[k] += msg_count;
    cxl_rec_deliver_t *r = (cxl_rec_deliver_t *)rec_slot(L, CXL_REC_DELIVER + (int)k);
    if (r) {
        r->pos = pos;
        r->pbr_index = pbr_index;
        r->checksum = got;
        r->ns = cxl_now_ns();
        r->client_batch_seq = cbs;
        r->broker = b;
        r->client = client;
        r->size = (uint32_t)size;
        r->msg_count = msg_count;
    }
}

static void sub_publish_position(cxl_log_t *L, subscriber_t *U) {
    cxl_sub_line_t *s = &L->subl[U->idx];
    for (uint32_t b = 0; b < L->cfg.brokers; b++) cxl_commit64(&s->released[b], U->last_pbr[b]);
    cxl_commit64(&s->delivered_batches, L->st.sub_batches[U->idx]);
    cxl_commit64(&s->heartbeat_ns, cxl_now_ns());
    cxl_commit64(&s->goi_pos, U->pos);
    cxl_flush(&s->released[0]);
    cxl_flush(s);
    cxl_sfence();
}

static int goi_valid(const cxl_log_t *L, const cxl_goi_entry_t *g) {
    if (g->broker >= L->cfg.brokers) return 0;
    if (g->msg_count == 0 || g->msg_count > L->cfg.msgs_per_batch) return 0;
    if (g->size < (uint64_t)g->msg_count * CXL_MSG_HDR || g->size > L->stride) return 0;
    if (g->log_offset % CXL_LINE || g->log_offset > L->log_bytes - g->size) return 0;
    if (!identity_valid(L, g->broker, g->client, g->client_batch_seq, g->pbr_index)) return 0;
    return 1;
}

/* A restarted subscriber continues after the last position it published: everything
 * before it was delivered, nothing after it was acknowledged by this subscriber. */
static void sub_resume(cxl_log_t *L, subscriber_t *U) {
    U->resumed = 1;
    if (!(L->cfg.flags & CXL_F_RESUME)) return;
    cxl_sub_line_t *s = &L->subl[U->idx];
    cxl_invalidate(s, sizeof *s);
    uint64_t pos = cxl_consume64(&s->goi_pos);
    cxl_invalidate(&L->ctrl->seq, CXL_LINE);
    uint64_t committed = cxl_consume64(&L->ctrl->seq.committed_seq);
    if (committed > L->per_broker * L->cfg.brokers) {
        corrupt(L, CORRUPT_CTRL, &L->ctrl->seq.committed_seq, committed);
        committed = 0;
    }
    if (pos > committed) { corrupt(L, CORRUPT_CTRL, &s->goi_pos, pos); pos = committed; }
    U->pos = pos;
    U->last_committed = pos;
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        uint64_t r = cxl_consume64(&s->released[b]);
        if (r > L->per_broker) { corrupt(L, CORRUPT_CTRL, &s->released[b], r); r = 0; }
        U->last_pbr[b] = r;
        U->next_pbr[b] = r;
    }
}

static uint64_t sub_read_committed(cxl_log_t *L, subscriber_t *U) {
    if (!FAULT(L, sub_no_invalidate_commit)) cxl_invalidate(&L->ctrl->seq, CXL_LINE);
    uint64_t c = cxl_consume64(&L->ctrl->seq.committed_seq);
    if (c > L->per_broker * L->cfg.brokers) { /* more than the run can ever order */
        corrupt(L, CORRUPT_CTRL, &L->ctrl->seq.committed_seq, c);
        return U->last_committed;
    }
    if (c < U->last_committed) {
        stat_add(&L->st.committed_regressions, 1);
        c = U->last_committed;
    }
    if (c != U->last_committed) {
        cxl_rec_frontier_t *r = (cxl_rec_frontier_t *)rec_slot(L, CXL_REC_COMMIT);
        if (r) { r->ns = cxl_now_ns(); r->value = c; r->who = U->idx; r->kind = 1 + U->idx; }
    }
    U->last_committed = c;
    return c;
}

/* A caught-up subscriber releases the ring slots the sequencer resolved without a position
 * (declared lost): they never come through the GOI, and must not block the ring. Each broker's
 * consumed_through is read before committed_seq, and the sequencer writes them the other way
 * round, so every live slot below it has a position below committed_seq -- delivered, since
 * this subscriber is caught up. Returns 1 when it released something. */
static int sub_release_lost(cxl_log_t *L, subscriber_t *U) {
    uint64_t cons[CXL_MAX_BROKERS];
    int any = 0;
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        cxl_invalidate(&L->seql[b], CXL_LINE);
        cons[b] = cxl_consume64(&L->seql[b].consumed_through);
        if (cons[b] > L->per_broker) {
            corrupt(L, CORRUPT_CTRL, &L->seql[b].consumed_through, cons[b]);
            cons[b] = 0;
        }
        any |= cons[b] > U->last_pbr[b];
    }
    if (!any) return 0;
    cxl_invalidate(&L->ctrl->seq, CXL_LINE);
    if (cxl_consume64(&L->ctrl->seq.committed_seq) != U->pos) return 0;
    for (uint32_t b = 0; b < L->cfg.brokers; b++)
        if (cons[b] > U->last_pbr[b]) U->last_pbr[b] = cons[b];
    sub_publish_position(L, U);
    return 1;
}

static int sub2_step(cxl_log_t *L, subscriber_t *U) {
    if (!U->resumed) sub_resume(L, U);
    uint64_t c = sub_read_committed(L, U);
    if (c > U->pos + L->cfg.goi_slots) {
        /* committed_seq claims more than the ring can hold unread: corrupt control block */
        corrupt(L, CORRUPT_CTRL, &L->ctrl->seq.committed_seq, c);
        c = U->pos + L->cfg.goi_slots;
    }
    uint64_t n = 0;
    while (U->pos < c && n < SUB_CHUNK) {
        cxl_goi_entry_t *g = &L->goi[U->pos & L->goi_mask];
        if (!FAULT(L, sub_no_invalidate_goi)) cxl_invalidate(g, CXL_LINE);
        if (cxl_consume64(&g->token) != U->pos + 1) {
            /* committed but not readable: the prefix was not flushed before committed_seq */
            if (U->bad_at != U->pos + 1) corrupt(L, CORRUPT_GOI, &g->token, U->pos);
            U->bad_at = U->pos + 1;
            break;
        }
        cxl_goi_entry_t v;
        cxl_copy_out(&v, g, sizeof v);
        if (goi_valid(L, &v)) {
            sub_deliver(L, U, U->pos, v.broker, v.pbr_index, v.log_offset, v.size, v.msg_count,
                        v.client, v.client_batch_seq, v.checksum);
        } else {
            corrupt(L, CORRUPT_GOI, g, U->pos);
        }
        U->pos++;
        n++;
    }
    if (n) {
        sub_publish_position(L, U);
        stat_max(&L->st.sub_last_ns[U->idx], cxl_now_ns());
        return STEP_PROGRESS;
    }
    if (U->pos == c) {
        if (sub_release_lost(L, U)) return STEP_PROGRESS;
        cxl_invalidate(&L->ctrl->seq, CXL_LINE);
        uint64_t done = cxl_consume64(&L->ctrl->seq.done);
        uint64_t committed = cxl_consume64(&L->ctrl->seq.committed_seq);
        if (committed > L->per_broker * L->cfg.brokers) return STEP_IDLE; /* counted above */
        if (done && done == committed + 1 && committed == U->pos) return STEP_DONE;
        if (done && done != committed + 1 && U->bad_done != done) {
            U->bad_done = done;
            corrupt(L, CORRUPT_CTRL, &L->ctrl->seq.done, done);
        }
    }
    return STEP_IDLE;
}

/* Order 0: no global order; deliver each broker's acknowledged slots in ring order. */
static int sub0_step(cxl_log_t *L, subscriber_t *U) {
    if (!U->resumed) sub_resume(L, U);
    uint64_t n = 0;
    int all_done = 1;
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        if (U->next_pbr[b] >= L->per_broker) continue;
        all_done = 0;
        cxl_invalidate(&L->seql[b], CXL_LINE);
        uint64_t acked = cxl_consume64(&L->seql[b].ordered_batches);
        if (acked > L->per_broker) {
            corrupt(L, CORRUPT_CTRL, &L->seql[b].ordered_batches, acked);
            acked = U->next_pbr[b]; /* not followed */
        }
        while (U->next_pbr[b] < acked && n < SUB_CHUNK) {
            uint64_t i = U->next_pbr[b];
            cxl_batch_hdr_t *h = slot_at(L, b, i);
            cxl_invalidate(h, sizeof *h);
            cxl_batch_hdr_t v;
            if (cxl_consume64(&h->token) == i + 1) {
                cxl_copy_out(&v, h, sizeof v);
                if (header_valid(L, &v, b, i))
                    sub_deliver(L, U, i, b, i, v.log_offset, v.size, v.msg_count, v.client,
                                v.client_batch_seq, v.checksum);
            } /* else: resolved as lost by the broker; nothing to deliver */
            U->next_pbr[b] = i + 1;
            U->last_pbr[b] = i + 1;
            n++;
        }
    }
    if (n) {
        sub_publish_position(L, U);
        stat_max(&L->st.sub_last_ns[U->idx], cxl_now_ns());
        return STEP_PROGRESS;
    }
    return all_done ? STEP_DONE : STEP_IDLE;
}

/* ------------------------------------------------------------------ runners */

typedef struct role {
    cxl_log_t *L;
    int kind;    /* 0 pub, 1 scanner/acker, 2 sequencer, 3 subscriber */
    void *obj;
    int agent;
    int done;
    pthread_t th;
} role_t;

static int role_step(role_t *r) {
    cxl_log_t *L = r->L;
    switch (r->kind) {
    case 0: return pub_step(L, (publisher_t *)r->obj);
    case 1: return L->cfg.order == 0 ? ack0_step(L, (scanner_t *)r->obj)
                                     : scan_step(L, (scanner_t *)r->obj);
    case 2: return seq_step(L);
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
                roles[n++] = (role_t){L, 0, &L->pubs[i], AGENT_PUB + (int)i, 0, 0};
    if (mask & CXL_ROLE_SCANNERS) {
        for (uint32_t b = 0; b < L->cfg.brokers; b++)
            roles[n++] = (role_t){L, 1, &L->scan[b], AGENT_SCAN + (int)b, 0, 0};
        if (L->cfg.order == 2) roles[n++] = (role_t){L, 2, NULL, AGENT_SEQ, 0, 0};
    }
    if (mask & CXL_ROLE_SUBSCRIBERS)
        for (uint32_t k = 0; k < L->cfg.subscribers; k++)
            if (sub_mask & (1u << k))
                roles[n++] = (role_t){L, 3, &L->sub[k], AGENT_SUB + (int)k, 0, 0};
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
static int run_deterministic(cxl_log_t *L, role_t *roles, uint32_t n) {
    uint64_t x = L->cfg.seed * 0x9e3779b97f4a7c15ull + 1;
    uint64_t idle_streak = 0, limit = 200000 + 2000ull * n;
    /* a hard bound too: a role that keeps claiming progress without finishing is a stall */
    uint64_t steps = 0, step_limit = 1000000 + 20000ull * (L->per_broker * L->cfg.brokers + 1);
    uint32_t left = n;
    while (left && !atomic_load(&L->stop)) {
        if (++steps > step_limit) {
            L->st.stalled = 1;
            L->st.stall_role = watchdog_roles(roles, n);
            return 1;
        }
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        role_t *r = &roles[x % n];
        if (r->done) continue;
        CXL_AGENT_SET(r->agent);
        int rc = role_step(r);
        if (rc == STEP_DONE) {
            r->done = 1;
            left--;
            idle_streak = 0;
        } else if (rc == STEP_PROGRESS) {
            idle_streak = 0;
        } else if (++idle_streak > limit) {
            L->st.stalled = 1;
            L->st.stall_role = watchdog_roles(roles, n);
            return 1;
        }
    }
    return 0;
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
    if (L->cfg.order == 2) {
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
        out->ordered_by_broker[b] = L->cfg.order == 2
            ? (L->seq_consumed[b] > L->seq_lost[b] ? L->seq_consumed[b] - L->seq_lost[b] : 0)
            : (S->next > S->lost ? S->next - S->lost : 0);
    }
    out->messages_acked = L->cfg.ack_level ? acked : 0;
    out->batches_acked = L->cfg.ack_level ? acked_b : 0;
    cxl_invalidate(&L->ctrl->seq, CXL_LINE);
    out->committed_seq = cxl_consume64(&L->ctrl->seq.committed_seq);
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
