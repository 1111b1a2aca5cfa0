/* cxl_cpu.c -- CPUID dispatch of the flush instruction, TSC calibration, busy-waits. */
#define _GNU_SOURCE
#include "cxl_api.h"
#include "cxl_seam.h"

#include <time.h>
#ifdef CXL_X86
#include <cpuid.h>
#endif

int cxl_flush_kind_g = CXL_FLUSH_NONE;
static double tsc_per_ns_g = 0.0;

#ifdef CXL_CHECKED
/* An exploration freezes the clock while it runs (cxl_check.c): a time stored in the region
 * (a heartbeat) would make every state distinct. */
uint64_t cxl_chk_clock_ns = 0;
/* told every time read of the frozen clock: what an agent read of it is part of its state */
void (*cxl_chk_clock_read)(uint64_t) = 0;
#endif

uint64_t cxl_now_ns(void) {
#ifdef CXL_CHECKED
    if (cxl_chk_clock_ns) {
        if (cxl_chk_clock_read) cxl_chk_clock_read(cxl_chk_clock_ns);
        return cxl_chk_clock_ns;
    }
#endif
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t cxl_rdtsc(void) {
#ifdef CXL_X86
    return __rdtsc();
#else
    return cxl_now_ns();
#endif
}

/* Busy-wait on the TSC: sleeping or yielding could not meet a few-hundred-ns delay. */
void cxl_delay_cycles(uint64_t cycles) {
    uint64_t start = cxl_rdtsc();
    while (cxl_rdtsc() - start < cycles) {
    }
#ifdef CXL_X86
    _mm_lfence(); /* later loads wait for the delay instead of running under it */
#endif
}

int cxl_cpu_flush_support(void) {
    int mask = 0;
#ifdef CXL_X86
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d) && (d & (1u << 19))) mask |= 1 << CXL_FLUSH_CLFLUSH;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        if (b & (1u << 23)) mask |= 1 << CXL_FLUSH_CLFLUSHOPT;
        if (b & (1u << 24)) mask |= 1 << CXL_FLUSH_CLWB;
    }
#endif
    return mask;
}

int cxl_select_flush(int requested) {
    int support = cxl_cpu_flush_support();
    if (requested > 0) {
        if (requested > CXL_FLUSH_CLWB || !(support & (1 << requested))) return -1;
        cxl_flush_kind_g = requested;
        return requested;
    }
    /* Automatic: clwb keeps the line cached, clflushopt is weakly ordered, clflush is serial. */
    for (int k = CXL_FLUSH_CLWB; k >= CXL_FLUSH_CLFLUSH; k--)
        if (support & (1 << k)) { cxl_flush_kind_g = k; return k; }
    cxl_flush_kind_g = CXL_FLUSH_NONE;
    return CXL_FLUSH_NONE;
}

int cxl_flush_kind(void) { return cxl_flush_kind_g; }

/* Measure TSC ticks per ns against CLOCK_MONOTONIC over about `ms` milliseconds. */
double cxl_calibrate_tsc(unsigned ms) {
    uint64_t t0 = cxl_now_ns(), c0 = cxl_rdtsc();
    uint64_t want = (uint64_t)ms * 1000000ull;
    uint64_t t1, c1;
    do {
        t1 = cxl_now_ns();
        c1 = cxl_rdtsc();
    } while (t1 - t0 < want);
    tsc_per_ns_g = (double)(c1 - c0) / (double)(t1 - t0);
    return tsc_per_ns_g;
}

double cxl_tsc_per_ns(void) {
    if (tsc_per_ns_g <= 0.0) cxl_calibrate_tsc(20);
    return tsc_per_ns_g;
}
