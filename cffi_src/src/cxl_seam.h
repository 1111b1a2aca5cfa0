/*
 * cxl_seam.h -- the one seam through which all C code touches shared (CXL) memory.
 *
 * Every load, store, copy, flush, fence and invalidation of the region goes through the
 * functions below. In the normal build they are inline and compile to plain accesses and the
 * flush instruction chosen once from CPUID (clwb > clflushopt > clflush). In the checked build
 * (CXL_CHECKED) each one calls into cxl_check.c, which records the event with its source
 * location and serves it through the non-coherent software model.
 *
 * Ordering words used below:
 *   publish  -- a release store of a record's commit token that makes the record visible;
 *   commit   -- a release store of a frontier that covers earlier tokens (committed_seq, ...);
 *   consume  -- the acquire load that reads such a token before the record it guards.
 */
#ifndef CXL_SEAM_H
#define CXL_SEAM_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#include <x86intrin.h>
#define CXL_X86 1
#endif

#define CXL_LINE 64u

/* Which flush instruction the normal build uses (chosen in cxl_cpu.c). */
enum cxl_flush_kind {
    CXL_FLUSH_NONE = 0,       /* no cache-line flush on this CPU: fences only */
    CXL_FLUSH_CLFLUSH = 1,
    CXL_FLUSH_CLFLUSHOPT = 2,
    CXL_FLUSH_CLWB = 3,
};

/* ---------------------------------------------------------------- the device model
 *
 * An emulated region may carry a device model: what each operation costs *on the device*
 * (target costs, not added costs). The seam measures the real operation on the TSC and spins
 * for the remainder of the target; when the host alone is already slower, the shortfall is
 * counted (ops_short / short_cycles), never hidden. The model lives with the region it
 * describes (cxl_region_set_model), so two regions can model two devices and a region without
 * one (the `ci` profile) costs one load and one untaken branch per seam call.
 *
 * Overlap: a flush's cost is paid at the fence that waits for it. Write-backs issued before
 * one fence are in flight together, as clwb/clflushopt are weakly ordered and the device
 * queues them: the fence waits for the first line's latency plus, for each further line, the
 * time the link needs to carry it (64 B at the write bandwidth). So one fence closing k
 * flushes costs flush_fence + (k - 1) * 64 B / write bandwidth. A fence after non-temporal
 * stores waits one write latency (flush_fence) after the last of them was issued.
 *
 * Bandwidth: copies into (and reads out of) the region are charged by bytes against a token
 * bucket shared by every agent (thread) on the region: a virtual time at which the device's
 * write (read) channel is next free, advanced with a lock-free compare-and-swap. A copy ends
 * no earlier than its slot in that schedule, so four writers together cannot exceed the cap
 * (a thread charges copies under 4 KiB in batches of 4 KiB: see cxl_region.c). Every
 * process that maps the region attaches the same model (role processes get it from their
 * coordinator); the channels (cxl_dm_chan_t) are the model's own unless the processes share
 * them through one mapping (cxl_region_model_share: the coordinator's role processes do), so
 * that agents of different processes also write through one cap.
 *
 * Load-dependent latency: the channels' busy time over a short window gives the utilisation;
 * an optional curve (utilisation -> latency multiplier, piecewise linear) scales the latency
 * targets of later operations. */
#define CXL_DM_CURVE_MAX 8
enum { CXL_DM_LOAD = 0, CXL_DM_FLUSH = 1, CXL_DM_WRITE = 2, CXL_DM_KINDS = 3 };

/* The device's channel state, atomics only: what every agent of the device shares. In a
 * process's own memory, or (cxl_region_model_share) in a small shared mapping that every
 * process attaching the model maps, so that agents of different processes share one
 * bandwidth cap and one utilisation. Each word that agents write has a line of its own, away
 * from the model's read-only targets that every seam call reads. What is read from a shared
 * mapping is bounded where it is used (another process may have written anything). */
#define CXL_DM_CHAN_MAGIC 0x314e414843444d43ull /* "CMDCHAN1" */
#define CXL_DM_CHAN_VERSION 1u
typedef struct cxl_dm_chan {
    uint64_t magic;
    uint32_t version, size;
    uint64_t pad0[6];
    uint64_t wr_free;              /* TSC at which the write channel is next free */
    uint64_t pad1[7];
    uint64_t rd_free;              /* ... the read channel */
    uint64_t pad2[7];
    uint64_t win_start;            /* the utilisation window opened at this TSC */
    uint64_t win_busy;             /* channel-busy cycles charged in this window */
    uint64_t pad3[6];
    uint64_t mult_1024;            /* the latency multiplier now in force */
    uint64_t util_1024;            /* the utilisation of the last closed window */
    uint64_t pad4[6];
} cxl_dm_chan_t;
static_assert(sizeof(cxl_dm_chan_t) == 5 * 64, "channel state: five lines");
static_assert(offsetof(cxl_dm_chan_t, wr_free) == 64 && offsetof(cxl_dm_chan_t, rd_free) == 128 &&
              offsetof(cxl_dm_chan_t, win_start) == 192 && offsetof(cxl_dm_chan_t, mult_1024) == 256,
              "one line per written word group");

typedef struct cxl_devmodel {
    /* targets in TSC cycles (x 1024 for the per-byte costs) */
    uint64_t load_cycles;          /* first line read after an invalidate */
    uint64_t flush_cycles;         /* flush + fence of one line */
    uint64_t wr_cpb_1024;          /* write channel: cycles per byte * 1024; 0 = no cap */
    uint64_t rd_cpb_1024;          /* read channel: cycles per byte * 1024; 0 = no cap */
    uint64_t window_cycles;        /* utilisation window */
    uint32_t curve_n;
    uint32_t curve_util[CXL_DM_CURVE_MAX]; /* utilisation * 1024, ascending */
    uint32_t curve_mult[CXL_DM_CURVE_MAX]; /* latency multiplier * 1024 */
    uint64_t self_flush_cycles;    /* the model's own cost outside the timed window, per fence */
    uint64_t self_load_cycles;     /* ... and per invalidate (calibrated when attached) */
    int host_flush;                /* also issue the host's own flush instruction */
    int invalidate_flushes;        /* non-coherent hardware: invalidate = flush the line */
    /* the device's channels: this model's own, or a mapping every process shares */
    struct cxl_dm_chan *ch;
    uint64_t ahead_max;            /* a channel free-at time further ahead is not believed */
    /* statistics, per operation kind */
    uint64_t ops[CXL_DM_KINDS];
    uint64_t ops_short[CXL_DM_KINDS];     /* the host alone took longer than the target */
    uint64_t ops_queued[CXL_DM_KINDS];    /* waited for a channel another agent kept busy */
    uint64_t short_cycles[CXL_DM_KINDS];  /* by how much, in total */
    uint64_t target_cycles[CXL_DM_KINDS]; /* sum of the targets paid */
} cxl_devmodel_t;

extern int cxl_flush_kind_g;
extern int cxl_dm_active_g; /* number of regions with a device model, in this module */

uint64_t cxl_rdtsc(void);
void cxl_delay_cycles(uint64_t cycles);
cxl_devmodel_t *cxl_dm_find(const void *p, size_t n);
/* Out-of-line halves of the seam's model calls (only when a model is active). */
int cxl_dm_flush_begin(const void *p);      /* 1: issue the host flush too */
void cxl_dm_fence_end(void);
void cxl_dm_invalidate(const void *p, size_t n, int touch);
uint64_t cxl_dm_copy_begin(const void *dst, size_t n);
void cxl_dm_copy_end(const void *dst, size_t n, uint64_t t0);
void cxl_dm_read_end(void);                 /* the rest of a multi-line read is due */
void cxl_dm_nt_issued(const void *dst, size_t n); /* non-temporal stores for the next fence */

#ifdef CXL_X86
__attribute__((target("clwb"))) static inline void cxl__clwb(const void *p) {
    __builtin_ia32_clwb((void *)p);
}
__attribute__((target("clflushopt"))) static inline void cxl__clflushopt(const void *p) {
    __builtin_ia32_clflushopt((void *)p);
}
#endif

/* Raw primitives (no injection, no recording); used by the seam and by calibration. */
static inline void cxl_raw_flush_line(const void *p) {
#ifdef CXL_X86
    switch (cxl_flush_kind_g) {
    case CXL_FLUSH_CLWB: cxl__clwb(p); break;
    case CXL_FLUSH_CLFLUSHOPT: cxl__clflushopt(p); break;
    case CXL_FLUSH_CLFLUSH: _mm_clflush(p); break;
    default: break;
    }
#else
    (void)p;
#endif
}

static inline void cxl_raw_sfence(void) {
#ifdef CXL_X86
    _mm_sfence();
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

static inline void cxl_raw_mfence(void) {
#ifdef CXL_X86
    _mm_mfence();
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

static inline void cxl_raw_lfence(void) {
#ifdef CXL_X86
    _mm_lfence();
#else
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
#endif
}

/* Non-temporal copy: 16-byte streaming stores where dst is 16-aligned, plain copy for the rest. */
static inline void cxl_raw_copy_nt(void *dst, const void *src, size_t n) {
#ifdef CXL_X86
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    while (n > 0 && ((uintptr_t)d & 15u) != 0) { *d++ = *s++; n--; }
    for (; n >= 64; n -= 64, d += 64, s += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)s);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + 48));
        _mm_stream_si128((__m128i *)(void *)d, a);
        _mm_stream_si128((__m128i *)(void *)(d + 16), b);
        _mm_stream_si128((__m128i *)(void *)(d + 32), c);
        _mm_stream_si128((__m128i *)(void *)(d + 48), e);
    }
    for (; n >= 16; n -= 16, d += 16, s += 16)
        _mm_stream_si128((__m128i *)(void *)d, _mm_loadu_si128((const __m128i *)(const void *)s));
    if (n) memcpy(d, s, n);
#else
    memcpy(dst, src, n);
#endif
}

/* The line cxl_raw_line_nt streams, built in memory (where it cannot be built in registers,
 * and for the checked build's model). */
static inline void cxl_stage_line(unsigned char *line, unsigned lead, uint64_t w0, uint64_t w1,
                                  const void *src, uint32_t k) {
    memset(line, 0, CXL_LINE);
    lead = lead ? 1u : 0u;
    if (k > CXL_LINE - 16u * lead) k = CXL_LINE - 16u * lead; /* never past the line */
    if (lead) {
        memcpy(line, &w0, 8);
        memcpy(line + 8, &w1, 8);
    }
    memcpy(line + 16 * lead, src, k);
}

/* One whole 64-byte line streamed: `lead` (0 or 1) 16-byte words given in registers, then
 * k bytes of src (k <= 64 - 16 * lead), then zeros. The line is built in vector registers:
 * staged in a stack buffer first, each 16-byte load of it waited on the narrower stores
 * that had just filled it (no store forwarding across sizes), twice per message. */
static inline void cxl_raw_line_nt(void *dst, unsigned lead, uint64_t w0, uint64_t w1,
                                   const void *src, uint32_t k) {
#ifdef CXL_X86
    if (((uintptr_t)dst & 15u) == 0) {
        unsigned char *d = (unsigned char *)dst;
        const unsigned char *s = (const unsigned char *)src;
        if (lead) /* two register moves and an unpack; _mm_set_epi64x went through the stack */
            _mm_stream_si128((__m128i *)(void *)d,
                             _mm_unpacklo_epi64(_mm_cvtsi64_si128((long long)w0),
                                                _mm_cvtsi64_si128((long long)w1)));
        for (unsigned v = lead; v < 4; v++) {
            uint32_t take = k < 16 ? k : 16;
            __m128i x = _mm_setzero_si128();
            if (take == 16) {
                x = _mm_loadu_si128((const __m128i *)(const void *)s);
            } else if (take) {
                unsigned char t[16] = {0};
                memcpy(t, s, take);
                x = _mm_loadu_si128((const __m128i *)(const void *)t);
            }
            _mm_stream_si128((__m128i *)(void *)(d + 16 * v), x);
            s += take;
            k -= take;
        }
        return;
    }
#endif
    unsigned char line[CXL_LINE] __attribute__((aligned(64)));
    cxl_stage_line(line, lead, w0, w1, src, k);
    cxl_raw_copy_nt(dst, line, CXL_LINE);
}

#ifndef CXL_CHECKED
/* ------------------------------------------------------------------ normal build */

/* The model's hooks cost one load and an untaken branch when no region has a model. */
#define CXL_DM_ON() __builtin_expect(cxl_dm_active_g != 0, 0)

static inline void cxl_st64(void *p, uint64_t v) { *(volatile uint64_t *)p = v; }
static inline void cxl_st32(void *p, uint32_t v) { *(volatile uint32_t *)p = v; }
static inline uint64_t cxl_ld64(const void *p) { return *(const volatile uint64_t *)p; }
static inline uint32_t cxl_ld32(const void *p) { return *(const volatile uint32_t *)p; }

/* Release store of a record's commit token: everything stored before it is ordered before
 * it. `rec` is the record's first byte (the token is its last word); the checked build uses
 * it to tell the record's body from other data. */
static inline void cxl_publish_token(const void *rec, void *p, uint64_t v) {
    (void)rec;
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
}
/* Release store of a frontier that covers earlier tokens (committed_seq, ACK frontiers,
 * consumed_through): the checked build requires those tokens flushed and fenced first. */
static inline void cxl_commit64(void *p, uint64_t v) {
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
}
/* Acquire load of a token/frontier: the record it guards is read after it. */
static inline uint64_t cxl_consume64(const void *p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}
/* Atomic read-modify-write on a shared counter (claims, reservations). */
static inline uint64_t cxl_fetch_add64(void *p, uint64_t v) {
    return __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_ACQ_REL);
}
/* A word another agent polls without a token (a lease beat, a loss ring): a relaxed atomic
 * store, so the reader's atomic load is no data race. Flushed and fenced like any store. */
static inline void cxl_st64_shared(void *p, uint64_t v) {
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
}
/* Atomic compare-and-swap on a shared word (claims, ownership leases). On failure *expected
 * holds the value found. Returns 1 when the swap happened. */
static inline int cxl_cas64(void *p, uint64_t *expected, uint64_t desired) {
    return __atomic_compare_exchange_n((uint64_t *)p, expected, desired, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE);
}

static inline void cxl_copy_in(void *dst, const void *src, size_t n) {
    if (CXL_DM_ON()) {
        uint64_t t0 = cxl_dm_copy_begin(dst, n);
        memcpy(dst, src, n);
        cxl_dm_copy_end(dst, n, t0);
        return;
    }
    memcpy(dst, src, n);
}
static inline void cxl_copy_in_nt(void *dst, const void *src, size_t n) {
    if (CXL_DM_ON()) {
        uint64_t t0 = cxl_dm_copy_begin(dst, n);
        cxl_raw_copy_nt(dst, src, n);
        cxl_dm_copy_end(dst, n, t0);
        cxl_dm_nt_issued(dst, n);
        return;
    }
    cxl_raw_copy_nt(dst, src, n);
}
/* One padded line streamed (cxl_raw_line_nt): a message's first line (its header in the
 * lead word) or its last. Under a device model it is one timed non-temporal copy of the
 * staged line, as everywhere else. */
static inline void cxl_line_nt(void *dst, unsigned lead, uint64_t w0, uint64_t w1, const void *src,
                               uint32_t k) {
    if (CXL_DM_ON()) {
        unsigned char line[CXL_LINE] __attribute__((aligned(64)));
        cxl_stage_line(line, lead, w0, w1, src, k);
        cxl_copy_in_nt(dst, line, CXL_LINE);
        return;
    }
    cxl_raw_line_nt(dst, lead, w0, w1, src, k);
}
static inline void cxl_copy_out(void *dst, const void *src, size_t n) {
    memcpy(dst, src, n);
    if (CXL_DM_ON()) cxl_dm_read_end();
}

/* A read-only view of [p, p+n): the memory itself in the normal build. */
static inline const void *cxl_read_view(const void *p, size_t n, void *scratch) {
    (void)n; (void)scratch;
    if (CXL_DM_ON()) cxl_dm_read_end();
    return p;
}

/* A flush's device cost is paid at the fence that waits for it (see the device model). */
static inline void cxl_flush(const void *p) {
    if (CXL_DM_ON() && !cxl_dm_flush_begin(p)) return;
    cxl_raw_flush_line(p);
}
static inline void cxl_flush_range(const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(CXL_LINE - 1);
    uintptr_t end = (uintptr_t)p + n;
    for (; a < end; a += CXL_LINE) cxl_flush((const void *)a);
}
static inline void cxl_sfence(void) { cxl_raw_sfence(); if (CXL_DM_ON()) cxl_dm_fence_end(); }
static inline void cxl_mfence(void) { cxl_raw_mfence(); if (CXL_DM_ON()) cxl_dm_fence_end(); }
static inline void cxl_lfence(void) { cxl_raw_lfence(); }

/* Invalidate lines another agent wrote, before reading them. On coherent memory the hardware
 * does it; on non-coherent hardware the model flushes the line out of this cache. With a
 * device model the lines are fetched here, timed, and padded to the device's read cost, so
 * the read that follows finds them cached (the fetch *is* the device read). */
static inline void cxl_invalidate(const void *p, size_t n) {
    if (CXL_DM_ON()) cxl_dm_invalidate(p, n, 1);
}

/* Ownership hand-off: lines another agent wrote on an earlier lap, released to us by the
 * protocol (consumed_through), are about to be overwritten whole. Nothing to do in hardware. */
static inline void cxl_take_lines(const void *p, size_t n) { (void)p; (void)n; }

#define CXL_AGENT_SET(id) ((void)(id))

#else
/* ------------------------------------------------------------------ checked build */
/* Every operation is recorded with its source location and routed through the model. */
void cxl_chk_st(void *p, uint64_t v, unsigned size, const char *file, int line);
uint64_t cxl_chk_ld(const void *p, unsigned size, const char *file, int line);
#include "cxl_check_api.h"
/* Every flush, fence, invalidate, publication, commit and hand-off is a *site*: a static
 * record of its function, operation and source line, listed in the section `cxl_sites`
 * (the linker's __start_/__stop_cxl_sites bound the list), so the whole set is enumerated
 * from the binary and any one site can be switched off at run time (mutation testing). */
#define CXL_SITE(opc)                                                                     \
    __extension__({                                                                      \
        static cxl_site_t s_ = {__FILE__, __func__, __LINE__, (opc), 0, 0, 0};           \
        static cxl_site_t *p_ __attribute__((section("cxl_sites"), used)) = &s_;        \
        (void)p_;                                                                        \
        &s_;                                                                             \
    })
void cxl_chk_publish64(const void *rec, void *p, uint64_t v, int commit, cxl_site_t *site);
uint64_t cxl_chk_consume64(const void *p, const char *file, int line);
uint64_t cxl_chk_fetch_add64(void *p, uint64_t v, const char *file, int line);
int cxl_chk_cas64(void *p, uint64_t *expected, uint64_t desired, const char *file, int line);
void cxl_chk_copy_in(void *dst, const void *src, size_t n, int nt, const char *file, int line);
void cxl_chk_copy_out(void *dst, const void *src, size_t n, const char *file, int line);
void cxl_chk_flush(const void *p, cxl_site_t *site);
void cxl_chk_fence(int kind, cxl_site_t *site);
void cxl_chk_invalidate(const void *p, size_t n, cxl_site_t *site);
void cxl_chk_set_agent(int agent);
void cxl_chk_take_lines(const void *p, size_t n, cxl_site_t *site);

#define cxl_st64(p, v) cxl_chk_st((p), (uint64_t)(v), 8, __FILE__, __LINE__)
#define cxl_st32(p, v) cxl_chk_st((p), (uint64_t)(v), 4, __FILE__, __LINE__)
#define cxl_st64_shared(p, v) cxl_chk_st((p), (uint64_t)(v), 8, __FILE__, __LINE__)
#define cxl_ld64(p) cxl_chk_ld((p), 8, __FILE__, __LINE__)
#define cxl_ld32(p) ((uint32_t)cxl_chk_ld((p), 4, __FILE__, __LINE__))
#define cxl_publish_token(rec, p, v) \
    cxl_chk_publish64((rec), (p), (v), 0, CXL_SITE(CXL_SITE_PUBLISH))
#define cxl_commit64(p, v) cxl_chk_publish64((p), (p), (v), 1, CXL_SITE(CXL_SITE_COMMIT))
#define cxl_consume64(p) cxl_chk_consume64((p), __FILE__, __LINE__)
#define cxl_fetch_add64(p, v) cxl_chk_fetch_add64((p), (v), __FILE__, __LINE__)
#define cxl_cas64(p, e, d) cxl_chk_cas64((p), (e), (d), __FILE__, __LINE__)
#define cxl_copy_in(d, s, n) cxl_chk_copy_in((d), (s), (n), 0, __FILE__, __LINE__)
#define cxl_copy_in_nt(d, s, n) cxl_chk_copy_in((d), (s), (n), 1, __FILE__, __LINE__)
#define cxl_copy_out(d, s, n) cxl_chk_copy_out((d), (s), (n), __FILE__, __LINE__)
/* The model sees the line as one 64-byte non-temporal copy, from the caller's line. */
static inline void cxl_chk_line_nt(void *dst, unsigned lead, uint64_t w0, uint64_t w1,
                                   const void *src, uint32_t k, const char *file, int line) {
    unsigned char buf[CXL_LINE];
    cxl_stage_line(buf, lead, w0, w1, src, k);
    cxl_chk_copy_in(dst, buf, CXL_LINE, 1, file, line);
}
#define cxl_line_nt(d, lead, w0, w1, s, k) \
    cxl_chk_line_nt((d), (lead), (w0), (w1), (s), (k), __FILE__, __LINE__)

#define cxl_read_view(p, n, scratch) \
    (cxl_chk_copy_out((scratch), (p), (n), __FILE__, __LINE__), (const void *)(scratch))
#define cxl_flush(p) cxl_chk_flush((p), CXL_SITE(CXL_SITE_FLUSH))
#define cxl_flush_range(p, n)                                                             \
    do {                                                                                  \
        cxl_site_t *s_r_ = CXL_SITE(CXL_SITE_FLUSH_RANGE);                                \
        uintptr_t a_ = (uintptr_t)(p) & ~(uintptr_t)(CXL_LINE - 1);                       \
        uintptr_t e_ = (uintptr_t)(p) + (n);                                              \
        for (; a_ < e_; a_ += CXL_LINE) cxl_chk_flush((const void *)a_, s_r_);            \
    } while (0)
#define cxl_sfence() cxl_chk_fence(1, CXL_SITE(CXL_SITE_SFENCE))
#define cxl_mfence() cxl_chk_fence(2, CXL_SITE(CXL_SITE_MFENCE))
#define cxl_lfence() cxl_chk_fence(3, CXL_SITE(CXL_SITE_LFENCE))
#define cxl_invalidate(p, n) cxl_chk_invalidate((p), (n), CXL_SITE(CXL_SITE_INVALIDATE))
#define cxl_take_lines(p, n) cxl_chk_take_lines((p), (n), CXL_SITE(CXL_SITE_TAKE_LINES))
#define CXL_AGENT_SET(id) cxl_chk_set_agent(id)
#endif

#endif /* CXL_SEAM_H */
