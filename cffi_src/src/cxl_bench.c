/* cxl_bench.c -- micro-benchmarks of the seam (device characterisation, injection checks).
 * Each returns elapsed nanoseconds; the caller divides. Everything goes through the seam, so
 * injected latency is included exactly as the log sees it. */
#define _GNU_SOURCE
#include "cxl_api.h"
#include "cxl_seam.h"

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
    uint64_t t0 = cxl_now_ns();
    for (uint64_t i = 0; i < iters && !bench_stopped(i); i++) {
        unsigned char *line = b + (i % lines) * CXL_LINE;
        cxl_st64(line, i);
        cxl_flush(line);
        if ((i + 1) % per_fence == 0) cxl_sfence();
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
