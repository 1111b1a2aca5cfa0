/*
 * cxl_ctl.h -- the control atomics of the epoch seal (process memory, not the region).
 *
 * The seal is a Dekker-style handshake between each scanner (`active`, `pushed`, `finished`)
 * and the sequencer (`epoch`, `scanners_done`): it needs sequentially consistent stores (see
 * seq_seal). These words live in process memory, outside the seam of cxl_seam.h, so they go
 * through the small wrapper below instead of bare <stdatomic.h> calls:
 *
 *  - normal build: each macro expands to exactly the atomic it replaces (atomic_load,
 *    atomic_store, atomic_store_explicit, atomic_fetch_add, ...), so the object code is the
 *    same (scripts/seam_zero_cost.sh);
 *  - checked build: each call is a preemption point of the deterministic runner, is traced
 *    (CXL_OP_CTL_*), and, in an exploration with x86-TSO on, a store that is not seq_cst waits
 *    in its agent's store buffer until a locked operation, a full fence, a seq_cst store of that
 *    agent or the explorer drains it. Every call is a *control site* (a static record in the
 *    section `cxl_ctl_sites`) whose memory order can be weakened at run time
 *    (cxl_chk_ctl_weaken), to show that a weakened seal is caught.
 */
#ifndef CXL_CTL_H
#define CXL_CTL_H

#include <stdatomic.h>
#include <stdint.h>

#ifndef CXL_CHECKED

#define cxl_ctl_load(p) atomic_load(p)
#define cxl_ctl_load_explicit(p, mo) atomic_load_explicit((p), (mo))
#define cxl_ctl_store(p, v) atomic_store((p), (v))
#define cxl_ctl_store_explicit(p, v, mo) atomic_store_explicit((p), (v), (mo))
#define cxl_ctl_fetch_add(p, v) atomic_fetch_add((p), (v))
/* The sequencer read process memory a scanner wrote under the seal (its epoch buffers):
 * nothing to do in the normal build. */
#define cxl_ctl_observe(p, n) ((void)0)
/* The seal's promise, checked (checked build only): the sequencer completes the seal of an
 * epoch only after every scanner inside it has ended its push. */
#define cxl_ctl_sealed(L, e) ((void)0)
#define cxl_ctl_push_ended(L, e) ((void)0)

#else
#include "cxl_check_api.h"

#define CXL_CTL_SITE(kind, mo)                                                            \
    __extension__({                                                                      \
        static cxl_ctl_site_t s_ = {__FILE__, __func__, __LINE__, (kind), (mo), -1, 0};  \
        static cxl_ctl_site_t *p_ __attribute__((section("cxl_ctl_sites"), used)) = &s_; \
        (void)p_;                                                                        \
        &s_;                                                                             \
    })
#define cxl_ctl_load_explicit(p, mo)                                                      \
    ((__typeof__(*(p) + 0))cxl_chk_ctl_load((const void *)(p), (unsigned)sizeof *(p),     \
                                            CXL_CTL_SITE(CXL_CTL_LOAD, (mo))))
#define cxl_ctl_load(p) cxl_ctl_load_explicit((p), memory_order_seq_cst)
#define cxl_ctl_store_explicit(p, v, mo)                                                  \
    cxl_chk_ctl_store((void *)(p), (uint64_t)(v), (unsigned)sizeof *(p),                  \
                      CXL_CTL_SITE(CXL_CTL_STORE, (mo)))
#define cxl_ctl_store(p, v) cxl_ctl_store_explicit((p), (v), memory_order_seq_cst)
#define cxl_ctl_fetch_add(p, v)                                                           \
    __extension__({                                                                      \
        __typeof__(*(p) + 0) r_ = (__typeof__(*(p) + 0))cxl_chk_ctl_fetch_add(           \
            (void *)(p), (uint64_t)(v), (unsigned)sizeof *(p),                            \
            CXL_CTL_SITE(CXL_CTL_RMW, memory_order_seq_cst));                            \
        r_;                                                                              \
    })
#define cxl_ctl_observe(p, n) cxl_chk_observe((p), (n))
/* Plain relaxed atomics, not choice points: the check only reads what the sequencer recorded.
 * It cannot fire on a correct seal even with real threads: the sequencer's store happens after
 * its read of the scanner's QUIESCENT, which is sequenced after the scanner's check. */
#define cxl_ctl_sealed(L, e) atomic_store_explicit(&(L)->sealed_below, (e) + 1, memory_order_relaxed)
#define cxl_ctl_push_ended(L, e)                                                          \
    do {                                                                                  \
        if (atomic_load_explicit(&(L)->sealed_below, memory_order_relaxed) > (e))         \
            cxl_chk_seal_breached(__FILE__, __LINE__);                                   \
    } while (0)
#endif

#endif /* CXL_CTL_H */
