/*
 * cxl_log_layout.c -- layout validation, offsets, format and attach, and creation of the log object.
 */
#include "cxl_log_int.h"

/* ------------------------------------------------------------------ layout */

static int is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

static uint64_t geom_check(const cxl_geom_t *g) {
    return cxl_checksum_bytes(g, offsetof(cxl_geom_t, geom_check), 0x5eed);
}

static uint64_t proto_check(const cxl_proto_t *p) {
    return cxl_checksum_bytes(p, offsetof(cxl_proto_t, proto_check), 0x9e37);
}


static uint64_t order5_check(const cxl_order5_t *p) {
    return cxl_checksum_bytes(p, offsetof(cxl_order5_t, check), 0x0de5);
}

#define MAX_HOLD CXL_MAX_HOLD
#define MAX_GAP_TIMEOUT_NS (3600ull * 1000000000ull)

/* Order 5's own parameters (the defaults are resolved before this is called). */
static int order5_valid(const cxl_log_cfg_t *c) {
    if (c->order != 5) return 1;
    return c->gap_policy <= 1 && c->client_spread >= 1 && c->client_spread <= c->brokers &&
           c->brokers % c->client_spread == 0 && c->hold_cap <= MAX_HOLD &&
           c->gap_timeout_ns <= MAX_GAP_TIMEOUT_NS &&
           c->gap_client <= c->brokers * c->publishers_per_broker &&
           c->gap_seq <= CXL_SEQ_MASK;
}

/* The effective configuration: Order 5's defaults filled in (a zero spread is 1, a zero
 * timeout 5 ms as upstream's skip timeout, a zero hold bound one ring of every broker). */
static cxl_log_cfg_t cfg_resolved(const cxl_log_cfg_t *in) {
    cxl_log_cfg_t c = *in;
    if (!c.beat_bytes) c.beat_bytes = BEAT_BYTES;
    if (c.order != 5) {
        c.gap_policy = 0; c.client_spread = 1; c.gap_timeout_ns = 0; c.hold_cap = 0;
        c.gap_client = 0; c.gap_seq = 0;
        return c;
    }
    if (!c.client_spread) c.client_spread = 1;
    if (!c.gap_timeout_ns) c.gap_timeout_ns = 5000000ull;
    if (!c.hold_cap) {
        uint64_t h = (uint64_t)c.brokers * c.pbr_slots;
        c.hold_cap = h < MAX_HOLD ? (uint32_t)h : MAX_HOLD;
    }
    return c;
}

static int cfg_valid(const cxl_log_cfg_t *c) {
    uint64_t per_broker;
    return c->brokers >= 1 && c->brokers <= CXL_MAX_BROKERS && c->subscribers <= CXL_MAX_SUBS &&
           c->publishers_per_broker >= 1 && c->publishers_per_broker <= MAX_PUBS_PER_BROKER &&
           (c->order == 0 || c->order == 2 || c->order == 5) && order5_valid(c) && c->variant <= 1 && c->ack_level <= 2 &&
           is_pow2(c->pbr_slots) && c->pbr_slots >= 2 && c->pbr_slots <= MAX_PBR_SLOTS &&
           is_pow2(c->goi_slots) && c->goi_slots >= 2 && c->goi_slots <= MAX_GOI_SLOTS &&
           c->msg_size >= 1 && c->msg_size <= MAX_MSG_SIZE && c->msgs_per_batch >= 1 &&
           c->msgs_per_batch <= MAX_MSGS_PER_BATCH &&
           (uint64_t)c->msgs_per_batch * align64(CXL_MSG_HDR + c->msg_size) <= MAX_BATCH_LOG_BYTES &&
           c->batches_per_publisher <= MAX_BATCHES &&
           !__builtin_mul_overflow(c->batches_per_publisher, (uint64_t)c->publishers_per_broker,
                                   &per_broker) &&
           per_broker <= MAX_BATCHES &&
           c->crash_client <= c->brokers * c->publishers_per_broker &&
           c->beat_bytes >= CXL_LINE && c->beat_bytes <= MAX_BEAT_BYTES;
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
                           cxl_order5_t *o5, uint64_t *stride) {
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
    cxl_order5_t o5_local;
    if (!o5) o5 = &o5_local;
    {
        memset(o5, 0, sizeof *o5);
        if (c->order == 5) {
            o5->clientline = at;
            o5->clients = (uint64_t)c->brokers * c->publishers_per_broker;
            at += o5->clients * sizeof(cxl_client_line_t);
            o5->gap_timeout_ns = c->gap_timeout_ns;
            o5->gap_policy = c->gap_policy;
            o5->hold_cap = c->hold_cap;
            o5->client_spread = c->client_spread;
        }
        o5->check = order5_check(o5);
    }
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

uint64_t cxl_layout_size(const cxl_log_cfg_t *in) {
    cxl_log_cfg_t rc = cfg_resolved(in), *cfg = &rc;
    if (!cfg_valid(cfg)) return 0;
    cxl_offsets_t o;
    cxl_proto_t pr;
    uint64_t s;
    if (!compute_offsets(cfg, &o, &pr, NULL, &s)) return 0;
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

int cxl_layout_init(void *base, uint64_t size, const cxl_log_cfg_t *in) {
    cxl_log_cfg_t rc = cfg_resolved(in), *cfg = &rc;
    uint64_t need = cxl_layout_size(cfg);
    if (!need) return -1;
    if (size < need) return -2;
    unsigned char *b = (unsigned char *)base;
    /* Zero everything the log uses (a zero token never matches), then publish geometry: nothing
     * a previous run (or random bytes) left in the region survives formatting. */
    cxl_offsets_t o;
    cxl_proto_t pr;
    cxl_order5_t o5;
    uint64_t stride;
    compute_offsets(cfg, &o, &pr, &o5, &stride);
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
    c.order5 = o5;
    c.run.seed = cfg->seed;
    cxl_ctrl_t *ctrl = (cxl_ctrl_t *)base;
    cxl_copy_in(&ctrl->off, &c.off, sizeof c.off);
    cxl_copy_in(&ctrl->run, &c.run, sizeof c.run);
    cxl_copy_in(&ctrl->proto, &c.proto, sizeof c.proto);
    /* the geometry line without its magic: the magic is the region's commit token */
    cxl_geom_t body = c.geom;
    body.magic = 0;
    cxl_copy_in(base, &body, sizeof body);
    cxl_flush_range(&ctrl->off, sizeof c.off);
    cxl_flush_range(&ctrl->run, sizeof c.run);
    cxl_copy_in(&ctrl->order5, &c.order5, sizeof c.order5);
    cxl_flush_range(&ctrl->proto, sizeof c.proto);
    cxl_flush_range(&ctrl->order5, sizeof c.order5);
    cxl_flush(base);
    cxl_sfence();
    /* the magic is published last, after every other line is durable (rule 2): a half-made
     * region is never accepted */
    cxl_publish_token(base, &ctrl->geom.magic, c.geom.magic);
    cxl_flush(base);
    cxl_sfence();
    return 0;
}

int cxl_layout_attach(const void *base, uint64_t size, const cxl_log_cfg_t *in, char *err,
                      size_t errlen) {
    cxl_log_cfg_t rc = cfg_resolved(in), *cfg = &rc;
    cxl_geom_t g, want;
    if (size < sizeof(cxl_ctrl_t)) {
        snprintf(err, errlen, "region of %llu bytes is smaller than a control block",
                 (unsigned long long)size);
        return -1;
    }
    cxl_invalidate(base, sizeof g);
    const uint64_t magic = cxl_consume64(&((const cxl_geom_t *)base)->magic); /* token first */
    cxl_copy_out(&g, base, sizeof g);
    g.magic = magic;
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
    cxl_order5_t o5, have5;
    uint64_t stride;
    if (!compute_offsets(cfg, &o, &pr, &o5, &stride)) {
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
    cxl_invalidate(&ctrl->order5, sizeof have5);
    cxl_copy_out(&have5, &ctrl->order5, sizeof have5);
    if (have5.check != order5_check(&have5)) {
        snprintf(err, errlen, "Order 5 line checksum mismatch: control block is corrupt");
        return -1;
    }
    if (have5.gap_policy != o5.gap_policy) what = "gap_policy";
    else if (have5.client_spread != o5.client_spread) what = "client_spread";
    else if (have5.hold_cap != o5.hold_cap) what = "hold_cap";
    else if (have5.gap_timeout_ns != o5.gap_timeout_ns) what = "gap_timeout";
    else if (have5.clientline != o5.clientline || have5.clients != o5.clients)
        what = "client session lines";
    if (what) {
        snprintf(err, errlen, "Order 5 mismatch on %s: region was made for another configuration",
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

cxl_log_t *cxl_log_new(void *base, uint64_t size, const cxl_log_cfg_t *in, char *err,
                       size_t errlen) {
    cxl_log_cfg_t rc0 = cfg_resolved(in), *cfg = &rc0;
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
    cxl_order5_t o5;
    compute_offsets(cfg, &o, &pr, &o5, &L->stride);
    L->clientl = o5.clientline ? (cxl_client_line_t *)(void *)(L->base + o5.clientline) : NULL;
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
        /* Order 5 also records its markers and fences there */
        bad |= recs_init(&L->rec[CXL_REC_ORDER], cfg->order == 5 ? 2 * rc + 4096 : rc,
                         sizeof(cxl_rec_order_t));
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
        /* Order 5 client spread: the publishers in slot j of brokers g*S .. g*S+S-1 are one
         * client, named by the first one's index; member m takes seqs m, m+S, m+2S, ... */
        uint32_t S = cfg->order == 5 ? cfg->client_spread : 1;
        uint32_t ppb = cfg->publishers_per_broker;
        P->member = P->broker % S;
        P->cid = (P->broker - P->member) * ppb + i % ppb;
    }
    L->max_pos = L->per_broker * cfg->brokers + (cfg->order == 5 ? L->npubs : 0);
    if (cfg->order == 5) {
        L->o5 = (o5_client_t *)calloc(L->npubs, sizeof(o5_client_t));
        L->hold = (held_t *)calloc(cfg->hold_cap ? cfg->hold_cap : 1, sizeof(held_t));
        for (uint32_t k = 0; k < cfg->subscribers; k++) {
            L->sub[k].last_cbs = (uint64_t *)calloc(L->npubs, sizeof(uint64_t));
            if (!L->sub[k].last_cbs) bad = 1;
        }
        for (uint32_t b = 0; b < cfg->brokers; b++) {
            L->wait[b] = (entry_t *)calloc(cfg->pbr_slots, sizeof(entry_t));
            if (!L->wait[b]) bad = 1;
        }
        if (!L->o5 || !L->hold) bad = 1;
        if (bad) {
            snprintf(err, errlen, "out of memory for the Order 5 session table");
            cxl_log_free(L);
            return NULL;
        }
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
    for (uint32_t k = 0; k < CXL_MAX_SUBS; k++) free(L->sub[k].last_cbs);
    free(L->o5);
    free(L->hold);
    for (uint32_t b = 0; b < CXL_MAX_BROKERS; b++) free(L->wait[b]);
    free(L->pool);
    free(L->pubs);
    pthread_mutex_destroy(&L->mu);
    pthread_mutex_destroy(&L->done_mu);
    pthread_cond_destroy(&L->done_cv);
    free(L);
}
