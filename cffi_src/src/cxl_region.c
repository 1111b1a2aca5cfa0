/* cxl_region.c -- mapping of the memory back-ends, and the device model a region may carry
 * (target costs, see cxl_seam.h). Errors are returned as -errno; the Python layer turns them
 * into messages (it also validates inputs before calling here). */
#define _GNU_SOURCE
#include "cxl_api.h"
#include "cxl_seam.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MPOL_BIND
#define MPOL_BIND 2
#endif
#ifndef MPOL_MF_STRICT
#define MPOL_MF_STRICT 1
#endif
#define MAX_NUMA_NODES 1024


static void region_reset(cxl_region_t *r, int backend) {
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->numa_node = -1;
    r->backend = backend;
    r->align = 4096;
}

int cxl_region_map_anon(cxl_region_t *r, uint64_t size, int hugepages) {
    region_reset(r, CXL_BACKEND_EMULATED);
    if (size == 0) return -EINVAL;
    void *p = MAP_FAILED;
    if (hugepages && size % (2u << 20) == 0) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
                 -1, 0);
        if (p != MAP_FAILED) { r->hugepages = 1; r->align = 2u << 20; }
    }
    if (p == MAP_FAILED) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return -errno;
        /* Transparent huge pages where allowed: fewer TLB misses on large rings. */
        if (hugepages && madvise(p, size, MADV_HUGEPAGE) == 0) r->hugepages = 1;
    }
    r->base = p;
    r->size = size;
    return 0;
}

static int take_lock(cxl_region_t *r) {
    if (flock(r->fd, LOCK_EX | LOCK_NB) != 0) return -errno;
    r->locked = 1;
    return 0;
}

int cxl_region_map_file(cxl_region_t *r, const char *path, uint64_t size, int create, int lock) {
    region_reset(r, CXL_BACKEND_FILE);
    if (size == 0) return -EINVAL;
    /* O_EXCL when creating: never truncate a file that the caller did not ask us to make. */
    int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
    int fd = open(path, flags, 0600);
    if (fd < 0) return -errno;
    r->fd = fd;
    r->created = create ? 1 : 0;
    int rc = 0;
    if (lock && (rc = take_lock(r)) != 0) goto fail;
    struct stat st;
    if (fstat(fd, &st) != 0) { rc = -errno; goto fail; }
    if (create) {
        if (ftruncate(fd, (off_t)size) != 0) { rc = -errno; goto fail; }
    } else if ((uint64_t)st.st_size < size) {
        rc = -ENOSPC; /* too small: refuse rather than grow the user's file */
        goto fail;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { rc = -errno; goto fail; }
    r->base = p;
    r->size = size;
    return 0;
fail:
    close(fd);
    if (create) unlink(path);
    r->fd = -1;
    return rc;
}

int cxl_region_map_devdax(cxl_region_t *r, const char *path, uint64_t size, uint64_t align,
                          int lock) {
    region_reset(r, CXL_BACKEND_DEVDAX);
    if (size == 0 || align == 0 || size % align != 0) return -EINVAL;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    r->fd = fd;
    int rc = 0;
    if (lock && (rc = take_lock(r)) != 0) goto fail;
    /* device-dax needs the virtual address aligned to the device alignment: reserve a
     * larger window, then map the device at its aligned start. */
    void *win = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (win == MAP_FAILED) { rc = -errno; goto fail; }
    uintptr_t a = ((uintptr_t)win + align - 1) & ~(uintptr_t)(align - 1);
    void *p = mmap((void *)a, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        rc = -errno;
        munmap(win, size + align);
        goto fail;
    }
    if (a > (uintptr_t)win) munmap(win, a - (uintptr_t)win);
    uintptr_t tail = (uintptr_t)win + size + align - (a + size);
    if (tail) munmap((void *)(a + size), tail);
    r->base = p;
    r->size = size;
    r->align = align;
    return 0;
fail:
    close(fd);
    r->fd = -1;
    return rc;
}

int cxl_region_map_numa(cxl_region_t *r, uint64_t size, int node) {
    region_reset(r, CXL_BACKEND_NUMA);
    if (size == 0 || node < 0 || node >= MAX_NUMA_NODES) return -EINVAL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -errno;
    unsigned long mask[MAX_NUMA_NODES / (8 * sizeof(unsigned long))];
    memset(mask, 0, sizeof mask);
    mask[(unsigned)node / (8 * sizeof(unsigned long))] |= 1ul << ((unsigned)node % (8 * sizeof(unsigned long)));
    /* Bind before the first touch, so every page is allocated on the node. */
    if (syscall(SYS_mbind, p, size, MPOL_BIND, mask, (unsigned long)MAX_NUMA_NODES,
                MPOL_MF_STRICT) != 0) {
        int e = errno;
        munmap(p, size);
        return -e;
    }
    memset(p, 0, size);
    r->base = p;
    r->size = size;
    r->numa_node = node;
    return 0;
}

static void model_detach(cxl_region_t *r);

void cxl_region_unmap(cxl_region_t *r) {
    model_detach(r);
    if (r->base) munmap(r->base, r->size);
    if (r->fd >= 0) close(r->fd); /* closing drops the flock */
    r->base = NULL;
    r->fd = -1;
    r->locked = 0;
}

/* ------------------------------------------------------------------ the device model */

#define DM_SLOTS 16
typedef struct dm_slot {
    uintptr_t lo, hi;          /* [lo, hi) of the region; hi == 0: free */
    cxl_devmodel_t *m;
} dm_slot_t;

int cxl_dm_active_g;                    /* regions with a model (the seam's fast check) */
static uint64_t dm_epoch_g;             /* bumped whenever a model is freed */
static dm_slot_t dm_slots_g[DM_SLOTS];
static pthread_mutex_t dm_mu_g = PTHREAD_MUTEX_INITIALIZER;

/* The model of the region holding [p, p+n), or NULL. Readers take no lock: a slot is filled
 * before the count that makes the seam look, and emptied only when its region is unmapped
 * (after every agent on it has finished). */
cxl_devmodel_t *cxl_dm_find(const void *p, size_t n) {
    uintptr_t x = (uintptr_t)p;
    for (int i = 0; i < DM_SLOTS; i++) {
        uintptr_t hi = __atomic_load_n(&dm_slots_g[i].hi, __ATOMIC_ACQUIRE);
        if (!hi) continue;
        uintptr_t lo = __atomic_load_n(&dm_slots_g[i].lo, __ATOMIC_RELAXED);
        if (x >= lo && x < hi && n <= hi - x) return __atomic_load_n(&dm_slots_g[i].m, __ATOMIC_RELAXED);
    }
    return NULL;
}

static uint64_t ns_cycles(double ns) {
    double c = ns * cxl_tsc_per_ns();
    return c >= 1.0 ? (uint64_t)(c + 0.5) : (ns > 0.0 ? 1 : 0);
}

/* cycles per byte * 1024 for a bandwidth in GB/s (bytes per ns) */
static uint64_t gbps_cpb(double gbps) {
    if (!(gbps > 0.0)) return 0;
    double c = 1024.0 * cxl_tsc_per_ns() / gbps;
    return c >= 1.0 ? (uint64_t)(c + 0.5) : 1;
}

static void calibrate_self(cxl_devmodel_t *m, const void *line);

/* The model and what cxl_region_model_unpadded keeps aside (the model is the first member:
 * r->model points at both). */
typedef struct dm_box {
    cxl_devmodel_t m;
    uint64_t saved[4]; /* load_cycles, flush_cycles, wr_cpb_1024, rd_cpb_1024 */
    int unpadded;
    cxl_dm_chan_t *shared;  /* the shared channel mapping (cxl_region_model_share), or NULL */
    cxl_dm_chan_t own __attribute__((aligned(64))); /* the channels when none is shared */
} dm_box_t;

static void chan_init(cxl_dm_chan_t *c, uint64_t now) {
    memset(c, 0, sizeof *c);
    c->version = CXL_DM_CHAN_VERSION;
    c->size = (uint32_t)sizeof *c;
    c->win_start = now;
    c->mult_1024 = 1024;
    __atomic_store_n(&c->magic, CXL_DM_CHAN_MAGIC, __ATOMIC_RELEASE);
}

#define CXL_DM_CHAN_MAP 4096 /* the shared channel file: one page */

/* The multiplier and utilisation in force, bounded: a shared channel mapping may hold
 * anything another process wrote (the curve's multipliers are 1..100, utilisation 0..4). */
static inline uint64_t dm_mult(const cxl_devmodel_t *m) {
    uint64_t x = __atomic_load_n(&m->ch->mult_1024, __ATOMIC_ACQUIRE);
    return x < 1024 ? 1024 : (x > 100u * 1024 ? 100u * 1024 : x);
}
static inline uint64_t dm_util(const cxl_devmodel_t *m) {
    uint64_t x = __atomic_load_n(&m->ch->util_1024, __ATOMIC_RELAXED);
    return x > 4096 ? 4096 : x;
}

int cxl_region_set_model(cxl_region_t *r, const cxl_devmodel_cfg_t *cfg) {
    if (!r || !r->base || !cfg) return -EINVAL;
    if (r->model) return -EBUSY;
    const double figs[] = {cfg->load_ns, cfg->flush_fence_ns, cfg->write_gbps, cfg->read_gbps,
                           cfg->window_us};
    for (unsigned i = 0; i < sizeof figs / sizeof figs[0]; i++)
        if (!(figs[i] >= 0.0) || figs[i] > 1e9) return -EINVAL;
    if ((cfg->write_gbps > 0.0 && cfg->write_gbps < 1e-3) ||
        (cfg->read_gbps > 0.0 && cfg->read_gbps < 1e-3))
        return -EINVAL; /* below 1 MB/s: a typo, and per-byte costs would saturate */
    if (cfg->curve_n > CXL_DM_CURVE_MAX) return -EINVAL;
    for (uint32_t i = 0; i < cfg->curve_n; i++) {
        if (!(cfg->curve_util[i] >= 0.0 && cfg->curve_util[i] <= 4.0)) return -EINVAL;
        if (!(cfg->curve_mult[i] >= 1.0 && cfg->curve_mult[i] <= 100.0)) return -EINVAL;
        if (i && !(cfg->curve_util[i] > cfg->curve_util[i - 1])) return -EINVAL;
    }
    dm_box_t *box = (dm_box_t *)aligned_alloc(64, (sizeof *box + 63) / 64 * 64);
    if (!box) return -ENOMEM;
    memset(box, 0, sizeof *box);
    cxl_devmodel_t *m = &box->m;
    m->load_cycles = ns_cycles(cfg->load_ns);
    m->flush_cycles = ns_cycles(cfg->flush_fence_ns);
    m->wr_cpb_1024 = gbps_cpb(cfg->write_gbps);
    m->rd_cpb_1024 = gbps_cpb(cfg->read_gbps);
    m->window_cycles = ns_cycles((cfg->window_us > 0.0 ? cfg->window_us : 10.0) * 1000.0);
    m->curve_n = cfg->curve_n;
    for (uint32_t i = 0; i < cfg->curve_n; i++) {
        m->curve_util[i] = (uint32_t)(cfg->curve_util[i] * 1024.0 + 0.5);
        m->curve_mult[i] = (uint32_t)(cfg->curve_mult[i] * 1024.0 + 0.5);
    }
    m->host_flush = cfg->host_flush ? 1 : 0;
    m->invalidate_flushes = cfg->invalidate_flushes ? 1 : 0;
    chan_init(&box->own, cxl_rdtsc());
    m->ch = &box->own;
    m->ahead_max = ns_cycles(10e9); /* 10 s: no slot is booked further ahead than that */
    pthread_mutex_lock(&dm_mu_g);
    int slot = -1;
    for (int i = 0; i < DM_SLOTS && slot < 0; i++)
        if (dm_slots_g[i].hi == 0) slot = i;
    if (slot < 0) {
        pthread_mutex_unlock(&dm_mu_g);
        free(m);
        return -ENOSPC;
    }
    __atomic_store_n(&dm_slots_g[slot].lo, (uintptr_t)r->base, __ATOMIC_RELAXED);
    __atomic_store_n(&dm_slots_g[slot].m, m, __ATOMIC_RELAXED);
    __atomic_store_n(&dm_slots_g[slot].hi, (uintptr_t)r->base + r->size, __ATOMIC_RELEASE);
    __atomic_fetch_add(&cxl_dm_active_g, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&dm_mu_g);
    r->model = m;
    calibrate_self(m, r->base);
    return 0;
}

static void model_detach(cxl_region_t *r) {
    if (!r->model) return;
    pthread_mutex_lock(&dm_mu_g);
    for (int i = 0; i < DM_SLOTS; i++) {
        if (dm_slots_g[i].m == r->model) {
            __atomic_store_n(&dm_slots_g[i].hi, 0, __ATOMIC_RELEASE);
            __atomic_store_n(&dm_slots_g[i].m, NULL, __ATOMIC_RELAXED);
            __atomic_fetch_sub(&cxl_dm_active_g, 1, __ATOMIC_RELEASE);
        }
    }
    /* threads still holding this model in their pending state drop it at their next call */
    __atomic_fetch_add(&dm_epoch_g, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&dm_mu_g);
    dm_box_t *box = (dm_box_t *)r->model;
    if (box->shared) munmap(box->shared, CXL_DM_CHAN_MAP);
    free(box);
    r->model = NULL;
}

int cxl_region_model_stats(const cxl_region_t *r, cxl_devmodel_stats_t *out) {
    memset(out, 0, sizeof *out);
    const cxl_devmodel_t *m = (const cxl_devmodel_t *)r->model;
    if (!m) return -ENOENT;
    double k = cxl_tsc_per_ns();
    for (int i = 0; i < CXL_DM_KINDS; i++) {
        out->ops[i] = __atomic_load_n(&m->ops[i], __ATOMIC_RELAXED);
        out->ops_short[i] = __atomic_load_n(&m->ops_short[i], __ATOMIC_RELAXED);
        out->ops_queued[i] = __atomic_load_n(&m->ops_queued[i], __ATOMIC_RELAXED);
        out->short_ns[i] = (double)__atomic_load_n(&m->short_cycles[i], __ATOMIC_RELAXED) / k;
        out->target_ns[i] = (double)__atomic_load_n(&m->target_cycles[i], __ATOMIC_RELAXED) / k;
    }
    out->utilisation = (double)dm_util(m) / 1024.0;
    out->multiplier = (double)dm_mult(m) / 1024.0;
    return 0;
}

void cxl_region_model_reset(cxl_region_t *r) {
    cxl_devmodel_t *m = (cxl_devmodel_t *)r->model;
    if (!m) return;
    for (int i = 0; i < CXL_DM_KINDS; i++) {
        __atomic_store_n(&m->ops[i], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&m->ops_short[i], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&m->ops_queued[i], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&m->short_cycles[i], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&m->target_cycles[i], 0, __ATOMIC_RELAXED);
    }
    uint64_t now = cxl_rdtsc();
    cxl_dm_chan_t *c = m->ch; /* a shared channel is reset for every process that shares it */
    __atomic_store_n(&c->wr_free, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->rd_free, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->win_busy, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->win_start, now, __ATOMIC_RELAXED);
    __atomic_store_n(&c->util_1024, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->mult_1024, 1024, __ATOMIC_RELEASE);
}

int cxl_region_model_share(cxl_region_t *r, int fd, int create) {
    if (!r || fd < 0) return -EINVAL;
    dm_box_t *box = (dm_box_t *)r->model;
    if (!box) return -ENOENT;
    if (box->shared) return -EBUSY;
    struct stat st;
    if (fstat(fd, &st) != 0) return -errno;
    if (!S_ISREG(st.st_mode)) return -EINVAL;
    if (create) {
        if (st.st_size != 0) return -EEXIST; /* never initialise over another file's contents */
        if (ftruncate(fd, CXL_DM_CHAN_MAP) != 0) return -errno;
    } else if (st.st_size != CXL_DM_CHAN_MAP) {
        return -EPROTO;
    }
    void *p = mmap(NULL, CXL_DM_CHAN_MAP, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return -errno;
    cxl_dm_chan_t *c = (cxl_dm_chan_t *)p;
    if (create) {
        chan_init(c, cxl_rdtsc()); /* the magic last, released: an attacher sees it all */
    } else if (__atomic_load_n(&c->magic, __ATOMIC_ACQUIRE) != CXL_DM_CHAN_MAGIC ||
               c->version != CXL_DM_CHAN_VERSION || c->size != sizeof *c) {
        munmap(p, CXL_DM_CHAN_MAP);
        return -EPROTO;
    }
    box->shared = c;
    __atomic_store_n(&box->m.ch, c, __ATOMIC_RELEASE);
    return 0;
}

int cxl_region_model_unpadded(cxl_region_t *r, int unpadded) {
    dm_box_t *box = (dm_box_t *)r->model;
    if (!box) return -ENOENT;
    cxl_dm_fence_end(); /* this thread's pending costs are paid under the targets they had */
    cxl_devmodel_t *m = &box->m;
    uint64_t *fields[4] = {&m->load_cycles, &m->flush_cycles, &m->wr_cpb_1024, &m->rd_cpb_1024};
    unpadded = unpadded ? 1 : 0;
    if (unpadded == box->unpadded) return 0;
    for (int i = 0; i < 4; i++) {
        if (unpadded) {
            box->saved[i] = *fields[i];
            __atomic_store_n(fields[i], 0, __ATOMIC_RELEASE);
        } else {
            __atomic_store_n(fields[i], box->saved[i], __ATOMIC_RELEASE);
        }
    }
    box->unpadded = unpadded;
    return 0;
}

/* --- costs */

static void spin_until(uint64_t deadline) {
    while ((int64_t)(cxl_rdtsc() - deadline) < 0) {
    }
#ifdef CXL_X86
    _mm_lfence(); /* later loads wait for the device instead of running under the wait */
#endif
}

/* The multiplier of the load curve at utilisation u (both * 1024), piecewise linear, flat
 * outside the points. */
static uint64_t curve_at(const cxl_devmodel_t *m, uint64_t u) {
    uint32_t n = m->curve_n;
    if (n == 0) return 1024;
    if (u <= m->curve_util[0]) return m->curve_mult[0];
    for (uint32_t i = 1; i < n; i++) {
        if (u <= m->curve_util[i]) {
            uint64_t u0 = m->curve_util[i - 1], u1 = m->curve_util[i];
            uint64_t y0 = m->curve_mult[i - 1], y1 = m->curve_mult[i];
            /* y0 + (y1 - y0) * (u - u0) / (u1 - u0), in either direction of y */
            return y1 >= y0 ? y0 + (y1 - y0) * (u - u0) / (u1 - u0)
                            : y0 - (y0 - y1) * (u - u0) / (u1 - u0);
        }
    }
    return m->curve_mult[n - 1];
}

/* Busy channel time charged; closes the utilisation window when it is over (one agent wins
 * the compare-and-swap and sets the multiplier for the next window). */
static void window_charge(cxl_devmodel_t *m, uint64_t busy, uint64_t now) {
    if (m->curve_n == 0) return;
    cxl_dm_chan_t *c = m->ch;
    __atomic_fetch_add(&c->win_busy, busy, __ATOMIC_RELAXED);
    uint64_t start = __atomic_load_n(&c->win_start, __ATOMIC_RELAXED);
    int64_t age = (int64_t)(now - start);
    /* a window opened in the future, or absurdly long ago (another process's clock of a
     * shared mapping, or garbage there): closed now, over one window's span */
    int bogus = age < -(int64_t)m->ahead_max || age > (int64_t)m->ahead_max;
    if (!bogus && (age < 0 || (uint64_t)age < m->window_cycles)) return;
    if (!__atomic_compare_exchange_n(&c->win_start, &start, now, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return;
    uint64_t b = __atomic_exchange_n(&c->win_busy, 0, __ATOMIC_ACQ_REL);
    uint64_t span = bogus ? m->window_cycles : now - start;
    uint64_t u = span ? (b > (span << 2) ? 4096 : (b << 10) / span) : 0;
    __atomic_store_n(&c->util_1024, u, __ATOMIC_RELAXED);
    __atomic_store_n(&c->mult_1024, curve_at(m, u), __ATOMIC_RELEASE);
}

/* A slot of `cost` cycles on a channel, no earlier than `now`: returns its start. A free-at
 * time more than ahead_max ahead is not a booking (garbage in a shared mapping): the slot
 * starts now and replaces it. */
static uint64_t channel_reserve(const cxl_devmodel_t *m, uint64_t *free_at, uint64_t cost,
                                uint64_t now) {
    uint64_t cur = __atomic_load_n(free_at, __ATOMIC_RELAXED), start;
    do {
        int64_t ahead = (int64_t)(cur - now);
        start = ahead > 0 && (uint64_t)ahead <= m->ahead_max ? cur : now;
    } while (!__atomic_compare_exchange_n(free_at, &cur, start + cost, 1, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    return start;
}

/* Count an operation that began at t0 and is due at deadline; the host took until now. */
static void account(cxl_devmodel_t *m, int kind, uint64_t t0, uint64_t deadline, uint64_t now) {
    __atomic_fetch_add(&m->ops[kind], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&m->target_cycles[kind], deadline - t0, __ATOMIC_RELAXED);
    if ((int64_t)(now - deadline) > 0) {
        __atomic_fetch_add(&m->ops_short[kind], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&m->short_cycles[kind], now - deadline, __ATOMIC_RELAXED);
    }
}

/* Cycles to carry n bytes at cpb_1024 (cycles per byte * 1024), saturating, never wrapping. */
static inline uint64_t per_bytes(uint64_t n, uint64_t cpb_1024) {
    if (cpb_1024 && n > (UINT64_MAX >> 12) / cpb_1024) return UINT64_MAX >> 12;
    return (n * cpb_1024) >> 10;
}

static inline uint64_t scaled(uint64_t cycles, uint64_t mult_1024) {
    return mult_1024 == 1024 ? cycles : (cycles * mult_1024) >> 10;
}

/* Per thread: the flushes waiting for this thread's next fence; the copies not yet charged
 * to the write channel (charged in batches of WR_BATCH bytes, so that small copies take no
 * locked instruction each -- one would drain the non-temporal stores' write-combining buffers
 * and cost the host far more than the copy); the remainder of a multi-line read. */
#define WR_BATCH 4096u
static __thread cxl_devmodel_t *pend_m;
static __thread uint64_t pend_t0, pend_n;
static __thread cxl_devmodel_t *nt_m;   /* non-temporal stores in flight to this device */
static __thread uint64_t nt_end;        /* when the last of them was issued */
static __thread cxl_devmodel_t *copy_m, *wr_m;
static __thread uint64_t wr_bytes, wr_t0;
static __thread cxl_devmodel_t *rd_m;
static __thread uint64_t rd_due, rd_t0;
static __thread uint64_t tls_epoch;

/* A model was freed since this thread last looked: forget every pending reference (its debts
 * go unpaid once, rather than read a freed model). */
static inline void tls_sync(void) {
    uint64_t e = __atomic_load_n(&dm_epoch_g, __ATOMIC_ACQUIRE);
    if (__builtin_expect(e != tls_epoch, 0)) {
        pend_m = NULL;
        pend_n = 0;
        nt_m = copy_m = wr_m = rd_m = NULL;
        wr_bytes = 0;
        tls_epoch = e;
    }
}

static void write_settle(void) {
    cxl_devmodel_t *m = wr_m;
    if (!m || wr_bytes == 0) return;
    uint64_t cost = per_bytes(wr_bytes, m->wr_cpb_1024);
    uint64_t now = cxl_rdtsc();
    uint64_t start = channel_reserve(m, &m->ch->wr_free, cost, wr_t0);
    if (start != wr_t0) __atomic_fetch_add(&m->ops_queued[CXL_DM_WRITE], 1, __ATOMIC_RELAXED);
    window_charge(m, cost, now);
    uint64_t deadline = start + cost;
    account(m, CXL_DM_WRITE, wr_t0, deadline, now);
    wr_bytes = 0;
    wr_m = NULL;
    spin_until(deadline);
}

static void read_settle(void) {
    if (!rd_m) return;
    cxl_devmodel_t *m = rd_m;
    rd_m = NULL;
    account(m, CXL_DM_LOAD, rd_t0, rd_due, cxl_rdtsc());
    spin_until(rd_due);
}

void cxl_dm_read_end(void) {
    tls_sync();
    read_settle();
}

int cxl_dm_flush_begin(const void *p) {
    tls_sync();
    cxl_devmodel_t *m = cxl_dm_find(p, 1);
    if (!m) return 1;
    if (pend_n == 0 || pend_m != m) {
        if (pend_n && pend_m != m) cxl_dm_fence_end(); /* another region's flushes: close them */
        pend_m = m;
        pend_t0 = cxl_rdtsc();
    }
    pend_n++;
    return m->host_flush;
}

static void nt_settle(void) {
    cxl_devmodel_t *m = nt_m;
    nt_m = NULL;
    uint64_t now = cxl_rdtsc();
    uint64_t want = scaled(m->flush_cycles, dm_mult(m));
    uint64_t deadline = nt_end + (want > m->self_flush_cycles ? want - m->self_flush_cycles : 0);
    account(m, CXL_DM_FLUSH, nt_end, deadline, now);
    spin_until(deadline);
}

void cxl_dm_fence_end(void) {
    tls_sync();
    if (wr_m) write_settle();
    if (rd_m) read_settle();
    /* a fence after non-temporal stores waits for the last of them to reach the device (their
     * bandwidth is on the write channel already): one write latency after the last was issued */
    if (nt_m && pend_n == 0) { nt_settle(); return; }
    if (pend_n == 0) return;
    cxl_devmodel_t *m = pend_m;
    uint64_t now = cxl_rdtsc();
    uint64_t mult = dm_mult(m);
    /* first line's latency, then each further line in flight behind it at the link rate */
    uint64_t extra = per_bytes((pend_n - 1) * CXL_LINE, m->wr_cpb_1024);
    uint64_t lat = scaled(m->flush_cycles, mult);
    uint64_t want = lat + extra;
    uint64_t deadline = pend_t0 + (want > m->self_flush_cycles ? want - m->self_flush_cycles : 0);
    if (nt_m == m) { /* and the non-temporal stores behind the same fence */
        uint64_t d2 = nt_end + (lat > m->self_flush_cycles ? lat - m->self_flush_cycles : 0);
        if ((int64_t)(d2 - deadline) > 0) deadline = d2;
    }
    nt_m = NULL;
    pend_n = 0;
    pend_m = NULL;
    account(m, CXL_DM_FLUSH, pend_t0, deadline, now);
    spin_until(deadline);
}

void cxl_dm_invalidate(const void *p, size_t n, int touch) {
    tls_sync();
    if (rd_m) read_settle();
    cxl_devmodel_t *m = cxl_dm_find(p, n ? n : 1);
    if (!m) return;
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(CXL_LINE - 1);
    uintptr_t end = (uintptr_t)p + (n ? n : 1);
    uint64_t lines = (end - a + CXL_LINE - 1) / CXL_LINE;
    uint64_t t0 = cxl_rdtsc();
    if (m->invalidate_flushes) {
        for (uintptr_t x = a; x < end; x += CXL_LINE) cxl_raw_flush_line((const void *)x);
        cxl_raw_mfence();
    }
    if (touch) { /* the first line is the device read; the rest streams into the copy out */
        __asm__ volatile("" : : "r"(*(const volatile unsigned char *)a));
        cxl_raw_lfence();
    }
    if (m->load_cycles == 0 && m->rd_cpb_1024 == 0) return;
    uint64_t mult = dm_mult(m);
    uint64_t stream = per_bytes(lines * CXL_LINE, m->rd_cpb_1024);
    uint64_t start = t0;
    if (stream) {
        start = channel_reserve(m, &m->ch->rd_free, stream, t0);
        if (start != t0) __atomic_fetch_add(&m->ops_queued[CXL_DM_LOAD], 1, __ATOMIC_RELAXED);
        window_charge(m, stream, t0);
    }
    /* the first line at the device's latency, the rest streamed behind it at the read
     * bandwidth: paid when the data is consumed (copy out, read view) or at this thread's
     * next fence or invalidate */
    uint64_t want = scaled(m->load_cycles, mult);
    uint64_t first = start + (want > m->self_load_cycles ? want - m->self_load_cycles : 0);
    uint64_t rest = lines > 1 ? per_bytes((lines - 1) * CXL_LINE, m->rd_cpb_1024) : 0;
    if (rest) {
        rd_m = m;
        rd_t0 = t0;
        rd_due = first + rest;
        spin_until(first);
        return;
    }
    account(m, CXL_DM_LOAD, t0, first, cxl_rdtsc());
    spin_until(first);
}

uint64_t cxl_dm_copy_begin(const void *dst, size_t n) {
    tls_sync();
    cxl_devmodel_t *m = cxl_dm_find(dst, n ? n : 1);
    copy_m = m;
    if (!m || m->wr_cpb_1024 == 0 || n == 0) return 0;
    if (wr_m && wr_m != m) write_settle();
    uint64_t t0 = cxl_rdtsc();
    if (!wr_m) { wr_m = m; wr_t0 = t0; }
    return t0 ? t0 : 1;
}

void cxl_dm_nt_issued(const void *dst, size_t n) {
    tls_sync();
    cxl_devmodel_t *m = cxl_dm_find(dst, n ? n : 1);
    if (!m || m->flush_cycles == 0) return;
    nt_m = m;
    nt_end = cxl_rdtsc();
}

void cxl_dm_copy_end(const void *dst, size_t n, uint64_t t0) {
    (void)dst;
    tls_sync();
    if (!t0 || !copy_m) return;
    copy_m = NULL;
    wr_bytes += n < CXL_LINE ? CXL_LINE : n; /* a partial line still crosses as a line */
    if (wr_bytes >= WR_BATCH) write_settle();
}

/* The seam's cost of having a device model at all, on a region without one: `iters` of one
 * operation through the seam (seam = 1) or through the raw primitive it wraps (seam = 0).
 * op 0: store fence; 1: invalidate + load of a cached line; 2: 64-byte copy in; 3: flush of a
 * clean cached line + store fence. Returns ns. */
uint64_t cxl_dm_bench_guard(void *buf, uint64_t lines, uint64_t iters, int op, int seam) {
    unsigned char *b = (unsigned char *)buf;
    static const unsigned char src[CXL_LINE];
    uint64_t sink = 0;
    if (lines == 0) lines = 1;
    uint64_t t0 = cxl_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        unsigned char *line = b + (i % lines) * CXL_LINE;
        switch (op) {
        case 0:
            if (seam) cxl_sfence(); else cxl_raw_sfence();
            break;
        case 1:
            if (seam) cxl_invalidate(line, CXL_LINE);
            sink += *(volatile uint64_t *)line;
            break;
        case 2:
            if (seam) cxl_copy_in(line, src, CXL_LINE); else memcpy(line, src, CXL_LINE);
            __asm__ volatile("" : : "r"(line) : "memory");
            break;
        default:
            if (seam) { cxl_flush(line); cxl_sfence(); }
            else { cxl_raw_flush_line(line); cxl_raw_sfence(); }
            break;
        }
    }
    uint64_t dt = cxl_now_ns() - t0;
    __asm__ volatile("" : : "r"(sink));
    return dt;
}

/* The model's own cost that no window covers (the call, the lookup, the TSC reads before the
 * window opens and after the wait ends): measured here on the region's first line with a
 * known target, best of a few batches (a preempted batch only ever reads longer), and taken
 * off every later target so that an operation costs its target, not target + overhead. The
 * statistics are reset afterwards. */
static uint64_t self_cost(const void *line, int kind, uint64_t target) {
    _Alignas(64) uint64_t store_line[8] = {0};
    uint64_t best = UINT64_MAX;
    for (int batch = 0; batch < 7; batch++) {
        uint64_t t0 = cxl_rdtsc();
        for (int i = 0; i < 32; i++) {
            if (kind == CXL_DM_FLUSH) {
                /* a store, a flush and the fence: the least a caller does (the store goes to a
                 * private line: the region may hold another process's data already) */
                __atomic_store_n(&store_line[i & 7], (uint64_t)i, __ATOMIC_RELAXED);
                if (cxl_dm_flush_begin(line)) cxl_raw_flush_line(line);
                cxl_raw_sfence();
                cxl_dm_fence_end();
            } else {
                cxl_dm_invalidate(line, 8, 1);
                __asm__ volatile("" : : "r"(*(const volatile uint64_t *)line));
            }
        }
        uint64_t per = (cxl_rdtsc() - t0) / 32;
        if (per < best) best = per;
    }
    return best > target ? best - target : 0;
}

static void calibrate_self(cxl_devmodel_t *m, const void *line) {
    uint64_t flush = m->flush_cycles, load = m->load_cycles, rd = m->rd_cpb_1024;
    uint64_t probe = ns_cycles(1000.0);
    m->rd_cpb_1024 = 0;
    m->flush_cycles = probe;
    if (flush) m->self_flush_cycles = self_cost(line, CXL_DM_FLUSH, probe);
    m->load_cycles = probe;
    if (load || rd) m->self_load_cycles = self_cost(line, CXL_DM_LOAD, probe);
    m->flush_cycles = flush;
    m->load_cycles = load;
    m->rd_cpb_1024 = rd;
    for (int i = 0; i < CXL_DM_KINDS; i++)
        m->ops[i] = m->ops_short[i] = m->ops_queued[i] = m->short_cycles[i] = m->target_cycles[i] = 0;
}
