/* cxl_bench.c -- micro-benchmarks of the seam (device characterisation, injection checks).
 * Each returns elapsed nanoseconds; the caller divides. Everything goes through the seam, so
 * injected latency is included exactly as the log sees it. */
#define _GNU_SOURCE
#include "cxl_api.h"
#include "cxl_seam.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static volatile uint64_t bench_sink_g;

/* A stop request (Ctrl-C) ends a benchmark loop within 4096 iterations; the figure it returns
 * is then meaningless, and the caller discards it. */
static _Atomic int bench_stop_g;
void cxl_bench_request_stop(void) { atomic_store_explicit(&bench_stop_g, 1, memory_order_relaxed); }
void cxl_bench_clear_stop(void) { atomic_store_explicit(&bench_stop_g, 0, memory_order_relaxed); }
static inline int bench_stopped(uint64_t i) {
    return (i & 4095u) == 0 && atomic_load_explicit(&bench_stop_g, memory_order_relaxed);
}

void cxl_seam_write(void *dst, const void *src, uint64_t n, int nt) {
    if (nt) cxl_copy_in_nt(dst, src, n);
    else cxl_copy_in(dst, src, n);
}

void cxl_seam_persist(const void *p, uint64_t n) {
    cxl_flush_range(p, n);
    cxl_sfence();
}

void cxl_seam_read(void *dst, const void *src, uint64_t n) {
    cxl_invalidate(src, n);
    cxl_copy_out(dst, src, n);
}

uint64_t cxl_bench_flush_calls(void *buf, uint64_t lines, uint64_t iters) {
    unsigned char *b = (unsigned char *)buf;
    uint64_t t0 = cxl_now_ns();
    for (uint64_t i = 0; i < iters && !bench_stopped(i); i++) cxl_flush(b + (i % lines) * CXL_LINE);
    cxl_sfence();
    return cxl_now_ns() - t0;
}

uint64_t cxl_bench_fence_calls(uint64_t iters) {
    uint64_t t0 = cxl_now_ns();
    for (uint64_t i = 0; i < iters && !bench_stopped(i); i++) cxl_sfence();
    return cxl_now_ns() - t0;
}

uint64_t cxl_bench_inval_calls(const void *buf, uint64_t lines, uint64_t iters) {
    const unsigned char *b = (const unsigned char *)buf;
    uint64_t t0 = cxl_now_ns();
    for (uint64_t i = 0; i < iters && !bench_stopped(i); i++)
        cxl_invalidate(b + (i % lines) * CXL_LINE, CXL_LINE);
    return cxl_now_ns() - t0;
}

/* Store a word into each line, flush it, and fence every `per_fence` lines. */
uint64_t cxl_bench_store_flush_fence(void *buf, uint64_t lines, uint64_t per_fence,
                                     uint64_t iters) {
    unsigned char *b = (unsigned char *)buf;
    if (per_fence == 0) per_fence = 1;
    if (lines == 0) lines = 1;
    /* no division in the loop: at a 300 ns target the ~5 ns of two 64-bit divisions per line
     * showed as +2 % in the emulation's accuracy */
    uint64_t slot = 0, k = 0;
    uint64_t t0 = cxl_now_ns();
    for (uint64_t i = 0; i < iters && !bench_stopped(i); i++) {
        unsigned char *line = b + slot * CXL_LINE;
        if (++slot == lines) slot = 0;
        cxl_st64(line, i);
        cxl_flush(line);
        if (++k == per_fence) { k = 0; cxl_sfence(); }
    }
    cxl_sfence();
    return cxl_now_ns() - t0;
}

uint64_t cxl_bench_copy(void *dst, const void *src, uint64_t bytes, uint64_t chunk, int nt,
                        uint64_t iters) {
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    if (chunk == 0 || chunk > bytes) chunk = bytes;
    uint64_t t0 = cxl_now_ns();
    for (uint64_t it = 0, k = 1; it < iters; it++) {
        for (uint64_t off = 0; off + chunk <= bytes && !bench_stopped(k++); off += chunk) {
            if (nt) cxl_copy_in_nt(d + off, s + off, chunk);
            else cxl_copy_in(d + off, s + off, chunk);
        }
        if (nt) cxl_sfence();
    }
    return cxl_now_ns() - t0;
}

uint64_t cxl_bench_write(void *dst, uint64_t bytes, const void *src, uint64_t src_bytes,
                         uint64_t chunk, int nt, uint64_t iters) {
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    if (chunk == 0 || chunk > bytes) chunk = bytes;
    if (chunk > src_bytes) chunk = src_bytes;
    if (chunk == 0) return 0;
    uint64_t t0 = cxl_now_ns();
    for (uint64_t it = 0, k = 1; it < iters; it++) {
        uint64_t from = 0;
        for (uint64_t off = 0; off + chunk <= bytes && !bench_stopped(k++); off += chunk) {
            if (from + chunk > src_bytes) from = 0;
            if (nt) cxl_copy_in_nt(d + off, s + from, chunk);
            else cxl_copy_in(d + off, s + from, chunk);
            from += chunk;
        }
        if (nt) cxl_sfence();
    }
    return cxl_now_ns() - t0;
}

/* Several writers started together. Python threads released by a barrier start up to a
 * scheduler slice apart on a busy machine (each needs the GIL and a free core): measured on
 * the 2-core CI VM, two such writers of 4 MiB each ran one after the other, ~500 us apart,
 * so "two writers" read as one writer plus a gap. Here the writers are C threads that spin
 * on one counter until all of them are running, then each times itself. */
#define WT_MAX 16
typedef struct wt_arg {
    unsigned char *dst;
    const unsigned char *src;
    uint64_t per, src_bytes, chunk, delay_ns;
    int nt;
    _Atomic uint32_t *arrived;
    _Atomic int *abandon;      /* a writer could not be started: the others stand down */
    uint32_t writers;
    uint64_t t0, t1;
    uint64_t *stamp;           /* stamp[k]: when its k-th chunk was written (stamp[0] = t0) */
    int timed_out;
} wt_arg_t;

static void *wt_run(void *p) {
    wt_arg_t *a = (wt_arg_t *)p;
    atomic_fetch_add_explicit(a->arrived, 1, memory_order_acq_rel);
    uint64_t give_up = cxl_now_ns() + 2000000000ull; /* a writer that never started: 2 s */
    for (uint64_t i = 0; atomic_load_explicit(a->arrived, memory_order_acquire) < a->writers; i++) {
        if (atomic_load_explicit(a->abandon, memory_order_acquire)) return NULL;
        if ((i & 1023u) == 0 && cxl_now_ns() > give_up) { a->timed_out = 1; return NULL; }
    }
    if (a->delay_ns) { /* planted start skew (tests) */
        uint64_t until = cxl_now_ns() + a->delay_ns;
        while (cxl_now_ns() < until) {
        }
    }
    a->t0 = a->stamp[0] = cxl_now_ns();
    uint64_t from = 0, k = 1;
    for (uint64_t off = 0; off + a->chunk <= a->per && !bench_stopped(k); off += a->chunk, k++) {
        if (from + a->chunk > a->src_bytes) from = 0;
        if (a->nt) cxl_copy_in_nt(a->dst + off, a->src + from, a->chunk);
        else cxl_copy_in(a->dst + off, a->src + from, a->chunk);
        from += a->chunk;
        a->stamp[k] = cxl_now_ns();
    }
    if (a->nt) cxl_sfence();
    a->t1 = cxl_now_ns();
    return NULL;
}

/* Bytes the writers wrote within [w0, w1]: each chunk counted by the share of its time
 * (from the previous chunk's stamp to its own) that falls inside. */
static double wt_bytes_within(const wt_arg_t *a, uint32_t writers, uint64_t w0, uint64_t w1) {
    double bytes = 0.0;
    for (uint32_t i = 0; i < writers; i++) {
        uint64_t n = a[i].per / a[i].chunk;
        for (uint64_t k = 1; k <= n; k++) {
            uint64_t s = a[i].stamp[k - 1], e = a[i].stamp[k];
            uint64_t lo = s > w0 ? s : w0, hi = e < w1 ? e : w1;
            if (hi <= lo) continue;
            bytes += e > s ? (double)a[i].chunk * (double)(hi - lo) / (double)(e - s) : 0.0;
        }
    }
    return bytes;
}

int cxl_bench_write_together(void *dst, uint64_t per, const void *src, uint64_t src_bytes,
                             uint64_t chunk, int nt, uint32_t writers, uint64_t stagger_ns,
                             uint64_t *out) {
    if (!dst || !src || !out || writers == 0 || writers > WT_MAX || per == 0) return -EINVAL;
    if (per > UINT64_MAX / writers) return -EOVERFLOW;
    if (chunk == 0 || chunk > per) chunk = per;
    if (chunk > src_bytes) chunk = src_bytes;
    if (chunk == 0) return -EINVAL;
    uint64_t chunks = per / chunk;
    if (chunks > (1u << 22)) return -E2BIG; /* a stamp per chunk: 32 MiB of them at most */
    if (stagger_ns > 1000000000ull) return -EINVAL; /* a planted skew of at most 1 s */
    uint64_t *stamps = (uint64_t *)calloc((size_t)(chunks + 1) * writers, sizeof *stamps);
    if (!stamps) return -ENOMEM;
    _Atomic uint32_t arrived = 0;
    _Atomic int abandon = 0;
    wt_arg_t args[WT_MAX];
    pthread_t th[WT_MAX];
    uint32_t started = 1;
    for (uint32_t i = 0; i < writers; i++)
        args[i] = (wt_arg_t){(unsigned char *)dst + (uint64_t)i * per, (const unsigned char *)src,
                             per, src_bytes, chunk, (uint64_t)i * stagger_ns, nt, &arrived,
                             &abandon, writers, 0, 0, stamps + (size_t)i * (chunks + 1), 0};
    int rc = 0;
    for (; started < writers; started++) {
        if (pthread_create(&th[started], NULL, wt_run, &args[started]) != 0) {
            rc = -EAGAIN;
            atomic_store_explicit(&abandon, 1, memory_order_release);
            break;
        }
    }
    if (rc == 0) wt_run(&args[0]);
    for (uint32_t i = 1; i < started; i++) pthread_join(th[i], NULL);
    if (rc) { free(stamps); return rc; }
    uint64_t first = UINT64_MAX, last = 0, last_start = 0, first_end = UINT64_MAX;
    for (uint32_t i = 0; i < writers; i++) {
        if (args[i].timed_out) { free(stamps); return -ETIMEDOUT; }
        if (args[i].t0 < first) first = args[i].t0;
        if (args[i].t0 > last_start) last_start = args[i].t0;
        if (args[i].t1 > last) last = args[i].t1;
        if (args[i].t1 < first_end) first_end = args[i].t1;
    }
    out[0] = last - first;                               /* first start to last finish */
    out[1] = last_start - first;                         /* start skew */
    out[2] = first_end > last_start ? first_end - last_start : 0; /* all of them writing */
    out[3] = out[2] ? (uint64_t)(wt_bytes_within(args, writers, last_start, first_end) + 0.5) : 0;
    free(stamps);
    return 0;
}

/* Idle load latency: a random cyclic permutation of lines, each load depends on the last. */
uint64_t cxl_bench_pointer_chase(void *buf, uint64_t bytes, uint64_t steps, uint64_t seed) {
    uint64_t n = bytes / CXL_LINE;
    if (n < 2) return 0;
    uint64_t *order = (uint64_t *)malloc(n * sizeof *order);
    if (!order) return 0;
    for (uint64_t i = 0; i < n; i++) order[i] = i;
    uint64_t x = seed | 1;
    for (uint64_t i = n - 1; i > 0 && !bench_stopped(i); i--) { /* Fisher-Yates with xorshift */
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint64_t j = x % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    unsigned char *b = (unsigned char *)buf;
    for (uint64_t i = 0; i < n; i++)
        cxl_st64(b + order[i] * CXL_LINE, order[(i + 1) % n] * CXL_LINE);
    free(order);
    uint64_t off = 0;
    uint64_t t0 = cxl_now_ns();
    for (uint64_t i = 0; i < steps && !bench_stopped(i); i++) {
        cxl_invalidate(b + off, 8);
        off = cxl_ld64(b + off);
    }
    uint64_t dt = cxl_now_ns() - t0;
    bench_sink_g = off; /* keeps the chain live */
    return dt;
}

/* Invalidate a line another agent may have written, then reload it. */
uint64_t cxl_bench_inval_reload(void *buf, uint64_t lines, uint64_t iters) {
    unsigned char *b = (unsigned char *)buf;
    uint64_t sink = 0;
    uint64_t t0 = cxl_now_ns();
    for (uint64_t i = 0; i < iters && !bench_stopped(i); i++) {
        unsigned char *line = b + (i % lines) * CXL_LINE;
        cxl_invalidate(line, CXL_LINE);
        sink += cxl_ld64(line);
    }
    uint64_t dt = cxl_now_ns() - t0;
    bench_sink_g = sink;
    return dt;
}
