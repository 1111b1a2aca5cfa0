/* cxl_region.c -- mapping of the memory back-ends. Errors are returned as -errno; the Python
 * layer turns them into messages (it also validates inputs before calling here). */
#define _GNU_SOURCE
#include "cxl_api.h"

#include <errno.h>
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

enum { BACKEND_EMULATED = 1, BACKEND_FILE = 2, BACKEND_DEVDAX = 3, BACKEND_NUMA = 4 };

static void region_reset(cxl_region_t *r, int backend) {
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->numa_node = -1;
    r->backend = backend;
    r->align = 4096;
}

int cxl_region_map_anon(cxl_region_t *r, uint64_t size, int hugepages) {
    region_reset(r, BACKEND_EMULATED);
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
    region_reset(r, BACKEND_FILE);
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
    region_reset(r, BACKEND_DEVDAX);
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
    region_reset(r, BACKEND_NUMA);
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

void cxl_region_unmap(cxl_region_t *r) {
    if (r->base) munmap(r->base, r->size);
    if (r->fd >= 0) close(r->fd); /* closing drops the flock */
    r->base = NULL;
    r->fd = -1;
    r->locked = 0;
}
