/*
 * cxl_log_common.c -- checksums, corrupt-value accounting and host/thread identity shared by every role.
 */
#include "cxl_log_int.h"

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


/* A value read from the region that cannot be right: counted once per distinct (location,
 * value), the first few kept with their offsets for the report. Lock-free (a CAS table). */
CXL_INTERNAL void corrupt(cxl_log_t *L, int kind, const void *loc, uint64_t value) {
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
CXL_INTERNAL uint64_t host_identity(void) {
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


CXL_INTERNAL uint32_t os_tid(void) { return (uint32_t)syscall(SYS_gettid); }


/* On this host: does thread tid of process pid still exist? (EPERM: exists, not ours.) */
CXL_INTERNAL int os_thread_alive(uint32_t pid, uint32_t tid) {
    if (!pid) return 0;
    long rc = tid ? syscall(SYS_tgkill, (pid_t)pid, (pid_t)tid, 0) : kill((pid_t)pid, 0);
    return rc == 0 || errno == EPERM;
}

/* A role's thread identity as its line holds it: pid | tid << 32 (0 in the deterministic
 * runner, where no role has a thread of its own). */
CXL_INTERNAL uint64_t thread_ident(const cxl_log_t *L) {
    if (L->cfg.flags & CXL_F_DETERMINISTIC) return 0;
    return (uint64_t)(uint32_t)getpid() | (uint64_t)os_tid() << 32;
}

/* Is the role whose line says (host, ident) surely gone? Only on this host, and only with an
 * OS identity: a role on another host, or with none, is never declared dead from here. */
CXL_INTERNAL int peer_gone(const cxl_log_t *L, uint64_t host, uint64_t ident) {
    if (host != L->host || !(uint32_t)ident) return 0;
    return !os_thread_alive((uint32_t)ident, (uint32_t)(ident >> 32));
}

/* The first detection of a dead role (crash injection measures its time to detect). */
CXL_INTERNAL void note_detect(cxl_log_t *L) {
    uint64_t zero = 0;
    __atomic_compare_exchange_n(&L->st.crash_detect_ns, &zero, cxl_now_ns(), 0, __ATOMIC_RELAXED,
                                __ATOMIC_RELAXED);
}
