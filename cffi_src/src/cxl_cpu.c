/* cxl_cpu.c -- CPUID dispatch of the flush instruction, TSC calibration, injected delays. */
#define _GNU_SOURCE
#include "cxl_api.h"
#include "cxl_seam.h"

#include <time.h>
#ifdef CXL_X86
#include <cpuid.h>
#endif

int cxl_flush_kind_g = CXL_FLUSH_NONE;
cxl_inject_t cxl_inject_g;
__thread uint64_t cxl_flush_debt_g; /* injected flush time owed at this thread's next fence */
static double tsc_per_ns_g = 0.0;

uint64_t cxl_now_ns(void) {
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

/* The busy-wait's real cost, fitted as ns = slope * cycles + intercept against the clock the
 * harness measures with: the loop overshoots and, in a VM, the TSC read itself costs time. */
static double delay_slope_g = 0.0, delay_icpt_g = 0.0;

static double time_delay(uint64_t cycles, unsigned reps) {
    uint64_t t0 = cxl_now_ns();
    for (unsigned i = 0; i < reps; i++) cxl_delay_cycles(cycles);
    return (double)(cxl_now_ns() - t0) / reps;
}

static double median3(double a, double b, double c) {
    return a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
}

void cxl_calibrate_delay(void) {
    double k = cxl_tsc_per_ns();
    uint64_t c1 = (uint64_t)(250.0 * k), c2 = (uint64_t)(4000.0 * k);
    double t1 = median3(time_delay(c1, 400), time_delay(c1, 400), time_delay(c1, 400));
    double t2 = median3(time_delay(c2, 50), time_delay(c2, 50), time_delay(c2, 50));
    delay_slope_g = (t2 - t1) / (double)(c2 - c1);
    delay_icpt_g = t1 - delay_slope_g * (double)c1;
    if (!(delay_slope_g > 0.0)) { delay_slope_g = 1.0 / k; delay_icpt_g = 0.0; }
}

static uint64_t ns_to_cycles(double ns) {
    if (ns <= 0.0) return 0;
    if (delay_slope_g <= 0.0) cxl_calibrate_delay();
    double c = (ns - delay_icpt_g) / delay_slope_g;
    return c < 1.0 ? 1 : (uint64_t)(c + 0.5);
}

/* Cycles of spinning worth `ns`, before the per-call overhead (for costs that add up). */
static uint64_t ns_to_raw_cycles(double ns) {
    if (ns <= 0.0) return 0;
    if (delay_slope_g <= 0.0) cxl_calibrate_delay();
    return (uint64_t)(ns / delay_slope_g + 0.5);
}

static cxl_inject_info_t inject_req_g; /* what was asked for, as reported */

void cxl_set_inject(double flush_ns, double fence_ns, double inval_ns, double write_gbps,
                    int invalidate_flushes) {
    cxl_inject_t v;
    memset(&v, 0, sizeof v);
    v.flush_cycles = ns_to_raw_cycles(flush_ns);
    v.fence_cycles = ns_to_raw_cycles(fence_ns);
    v.delay_overhead = delay_icpt_g > 0.0 ? (uint64_t)(delay_icpt_g / delay_slope_g + 0.5) : 0;
    v.inval_cycles = ns_to_cycles(inval_ns);
    /* GB/s = bytes per ns, so 1 KiB takes 1024 / gbps ns (the copy itself runs at memory speed:
     * the cap is a floor on its time, met by waiting for the difference). */
    v.copy_cycles_per_kib = write_gbps > 0.0 ? (uint64_t)(1024.0 / write_gbps * cxl_tsc_per_ns()) : 0;
    v.enabled = v.flush_cycles || v.fence_cycles || v.inval_cycles || v.copy_cycles_per_kib;
    v.invalidate_flushes = invalidate_flushes;
    cxl_inject_g = v;
    inject_req_g = (cxl_inject_info_t){flush_ns > 0 ? flush_ns : 0, fence_ns > 0 ? fence_ns : 0,
                                       inval_ns > 0 ? inval_ns : 0, write_gbps > 0 ? write_gbps : 0,
                                       invalidate_flushes};
}

void cxl_get_inject(cxl_inject_info_t *out) { *out = inject_req_g; }
