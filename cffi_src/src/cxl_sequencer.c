/*
 * cxl_sequencer.c -- the epoch sequencer (Order 2): seal, merge, reserve, write the GOI, commit.
 */
#include "cxl_log_int.h"

/* ------------------------------------------------------------------ epoch sequencer */

/*
 * Sealing epoch E (per-scanner variant). The sequencer stores epoch = E+1 and then waits until
 * no scanner announces E. A scanner pushes into buffer E only after it stored active = E and
 * then re-read epoch == E (scanner_enter). All four accesses are sequentially consistent, so
 * in their single total order either the scanner's re-read comes before our store of E+1 --
 * then its store of active = E comes before our reads of active, and we wait until it stores
 * QUIESCENT after its pushes -- or the re-read sees E+1 and the scanner retries with E+1 and
 * never touches buffer E. Buffer E is reused only at epoch E+3, after we drained it.
 * Returns 1 when the epoch is sealed and its buffers are stable.
 */
CXL_INTERNAL int seq_seal(cxl_log_t *L) {
    if (!L->sealing) {
        L->seal_epoch = cxl_ctl_load(&L->epoch);
        if (L->cfg.variant == 1) {
            pthread_mutex_lock(&L->mu); /* no scanner is inside its push while we hold it */
            cxl_ctl_store(&L->epoch, L->seal_epoch + 1);
            pthread_mutex_unlock(&L->mu);
            return 1;
        }
        cxl_ctl_store(&L->epoch, L->seal_epoch + 1);
        L->sealing = 1;
    }
    if (!FAULT(L, seq_unsealed_read)) {
        for (uint32_t b = 0; b < L->cfg.brokers; b++)
            if (!(L->scan_dead >> b & 1) && cxl_ctl_load(&L->scan[b].active) == L->seal_epoch)
                return 0;
    }
    L->sealing = 0;
    cxl_ctl_sealed(L, L->seal_epoch);
    return 1;
}

/* Merge once per epoch: the sealed buffers are stable until epoch E + 3, so the sequencer
 * reads them where the scanners wrote them instead of copying them together. */
static void seq_count_live(cxl_log_t *L) {
    L->epoch_live = 0;
    for (uint32_t i = 0; i < L->nseg; i++)
        for (uint64_t k = 0; k < L->seg_n[i]; k++) L->epoch_live += !L->seg[i][k].flags;
}

CXL_INTERNAL void seq_merge(cxl_log_t *L) {
    uint64_t E = L->seal_epoch % 3;
    L->nseg = L->seg_i = 0;
    L->seg_at = 0;
    if (L->cfg.variant == 1) {
        ebuf_t *sb = &L->shared[E];
        if (sb->count) { L->seg[0] = sb->e; L->seg_n[0] = sb->count; L->nseg = 1; }
        sb->count = 0;
    } else {
        for (uint32_t b = 0; b < L->cfg.brokers; b++) {
            ebuf_t *eb = &L->bufs[E][b];
            /* what the scanners left in the sealed buffers (exploration: part of the state) */
            cxl_ctl_observe(&eb->count, sizeof eb->count);
            if (eb->count) cxl_ctl_observe(eb->e, eb->count * sizeof *eb->e);
            if (eb->count) { L->seg[L->nseg] = eb->e; L->seg_n[L->nseg++] = eb->count; }
            eb->count = 0;
        }
    }
    seq_count_live(L);
}

static int seq_pending(const cxl_log_t *L) { return L->seg_i < L->nseg; }

/* GOI space: positions below the slowest subscriber's may be overwritten. */
CXL_INTERNAL uint64_t goi_room(cxl_log_t *L, uint64_t next_pos) {
    if (!L->cfg.subscribers) return L->cfg.goi_slots;
    uint64_t lo = UINT64_MAX;
    for (uint32_t k = 0; k < L->cfg.subscribers; k++) {
        if (L->sub_dead >> k & 1) continue; /* a dead subscriber holds the GOI back no more */
        cxl_invalidate(&L->subl[k], CXL_LINE);
        uint64_t p = cxl_consume64(&L->subl[k].goi_pos);
        if (p > next_pos) { /* a subscriber ahead of what exists: corrupt, not trusted */
            corrupt(L, CORRUPT_CTRL, &L->subl[k].goi_pos, p);
            continue;
        }
        if (p < lo) lo = p;
    }
    if (lo == UINT64_MAX) lo = next_pos;
    if (next_pos - lo > L->cfg.goi_slots) return 0; /* cannot happen: we never overran them */
    return L->cfg.goi_slots - (next_pos - lo);
}

CXL_INTERNAL void goi_write_body(cxl_goi_entry_t *g, const entry_t *e, uint64_t order) {
    cxl_goi_entry_t v;
    v.first_msg_order = order;
    v.log_offset = e->log_offset;
    v.pbr_index = e->pbr_index;
    v.client_batch_seq = e->client_batch_seq;
    v.broker = e->broker;
    v.client = e->client;
    v.size = (uint32_t)e->size;
    v.msg_count = e->msg_count;
    v.checksum = e->checksum;
    v.token = 0;
    cxl_copy_in(g, &v, offsetof(cxl_goi_entry_t, token));
}

/* Take the next chunk of the epoch (within one buffer): up to `room` live entries plus the
 * lost/corrupt ones among them (those take no position). Returns the number of live ones. */
static uint64_t seq_take_chunk(cxl_log_t *L, uint64_t room, uint64_t *taken) {
    entry_t *e = L->seg[L->seg_i] + L->seg_at;
    uint64_t avail = L->seg_n[L->seg_i] - L->seg_at, n = 0, live = 0;
    while (n < avail && n < CHUNK_MAX) {
        if (!e[n].flags && live == room) break;
        live += !e[n].flags;
        n++;
    }
    L->cur = e;
    *taken = n;
    return live;
}

static void seq_advance(cxl_log_t *L, uint64_t n) {
    L->seg_at += n;
    if (L->seg_at >= L->seg_n[L->seg_i]) {
        L->seg_i++;
        L->seg_at = 0;
    }
}

CXL_INTERNAL void seq_account(cxl_log_t *L, const entry_t *e) {
    uint32_t b = e->broker;
    if (e->pbr_index != L->seq_next_pbr[b]) stat_add(&L->st.order_gaps, 1);
    L->seq_next_pbr[b] = e->pbr_index + 1;
    L->seq_consumed[b] = e->pbr_index + 1;
    if (e->flags) {
        L->seq_lost[b]++;
        stat_add(&L->st.batches_lost, 1);
    } else {
        L->seq_ordered_msgs[b] += e->msg_count;
    }
}

static void seq_publish_frontiers(cxl_log_t *L) {
    for (uint32_t b = 0; b < L->cfg.brokers; b++)
        publish_frontier(L, b, L->seq_consumed[b], L->seq_consumed[b], L->seq_ordered_msgs[b],
                         L->seq_lost[b]);
}


/* Assign positions to the live entries of the chunk: one reservation per chunk (= per epoch
 * in steady state), or one per batch in the ablation. */
/* Reserve global positions for the rest of the epoch with one fetch-add (as many as the GOI
 * has room for). Returns how many positions are in hand. */
/* One atomic step on next_global. This sequencer is its only user (the lease), so the value
 * found must be what it reserved so far: another is corrupt, counted and not followed. */
CXL_INTERNAL uint64_t seq_reserve(cxl_log_t *L, uint64_t n) {
    uint64_t got = cxl_fetch_add64(&L->ctrl->reserve.next_global, n);
    uint64_t skew = got - L->next_pos; /* one corruption shifts every later value: count once */
    if (skew != L->resv_skew) {
        if (skew) corrupt(L, CORRUPT_CTRL, &L->ctrl->reserve.next_global, got);
        L->resv_skew = skew;
    }
    uint64_t base = L->next_pos;
    L->next_pos += n;
    return base;
}

static uint64_t seq_reserve_epoch(cxl_log_t *L) {
    if (L->resv_left) return L->resv_left;
    uint64_t room = goi_room(L, L->next_pos);
    uint64_t want = L->epoch_live < room ? L->epoch_live : room;
    if (want) {
        L->resv_base = seq_reserve(L, want);
        L->resv_left = want;
        stat_add(&L->st.reservations, 1);
    }
    return room;
}

/* Assign positions to the live entries of the chunk: from the epoch's reservation, or with one
 * fetch-add per batch in the ablation. Returns one past the highest position. */
static uint64_t seq_assign(cxl_log_t *L, uint64_t n, uint64_t live, uint64_t of_epoch) {
    const int per_batch = (L->cfg.flags & CXL_F_RESERVE_PER_BATCH) != 0;
    if (!per_batch && live > L->resv_left) { /* only the planted duplicate needs more */
        uint64_t extra = live - L->resv_left;
        uint64_t b = seq_reserve(L, extra);
        if (L->resv_left == 0) L->resv_base = b;
        L->resv_left += extra;
    }
    uint64_t hi = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (L->cur[i].flags) continue;
        uint64_t s;
        if (per_batch) {
            s = seq_reserve(L, 1);
            stat_add(&L->st.reservations, 1);
        } else {
            s = L->resv_base++;
            L->resv_left--;
        }
        L->chunk_pos[i] = s;
        if (s + 1 > hi) hi = s + 1;
    }
    L->epoch_live = L->epoch_live > of_epoch ? L->epoch_live - of_epoch : 0;
    return hi;
}

/* Rule 4: bodies flushed and fenced, then tokens flushed and fenced, then committed_seq. */
static void seq_write_goi(cxl_log_t *L, uint64_t n) {
    uint64_t order = L->total_msgs_ordered;
    const int flush = !FAULT(L, seq_no_goi_flush);
    for (uint64_t i = 0; i < n; i++) {
        if (L->cur[i].flags) continue;
        cxl_goi_entry_t *g = &L->goi[L->chunk_pos[i] & L->goi_mask];
        if (FAULT(L, seq_goi_token_first)) {
            cxl_publish_token(g, &g->token, L->chunk_pos[i] + 1);
            cxl_flush(g);
            seq_fence(L);
        }
        goi_write_body(g, &L->cur[i], order);
        if (flush) cxl_flush(g);
        order += L->cur[i].msg_count;
    }
    if (!FAULT(L, seq_no_goi_fence)) seq_fence(L);
    if (FAULT(L, seq_goi_token_first)) return;
    for (uint64_t i = 0; i < n; i++) {
        if (L->cur[i].flags) continue;
        cxl_goi_entry_t *g = &L->goi[L->chunk_pos[i] & L->goi_mask];
        cxl_publish_token(g, &g->token, L->chunk_pos[i] + 1);
        if (flush && !FAULT(L, seq_commit_unflushed)) cxl_flush(g);
    }
    if (!FAULT(L, seq_commit_unflushed)) seq_fence(L);
}

static void seq_flush_late_tokens(cxl_log_t *L, uint64_t n) {
    /* planted seq_commit_unflushed: the token lines are flushed only after the commit */
    for (uint64_t i = 0; i < n; i++)
        if (!L->cur[i].flags) cxl_flush(&L->goi[L->chunk_pos[i] & L->goi_mask]);
    seq_fence(L);
}

CXL_INTERNAL void seq_commit(cxl_log_t *L, uint64_t hi, uint64_t now) {
    cxl_seq_ctrl_t *sc = &L->ctrl->seq;
    uint64_t prev = L->committed; /* what we wrote: the line's copy is never trusted back */
    cxl_commit64(&sc->epoch, L->seal_epoch);
    cxl_commit64(&sc->heartbeat_ns, now);
    cxl_commit64(&sc->ordered_msgs, L->total_msgs_ordered);
    if (hi > prev) {
        cxl_commit64(&sc->committed_seq, hi);
        L->committed = hi;
    }
    if (!FAULT(L, seq_no_frontier_flush)) cxl_flush(sc);
    cxl_rec_frontier_t *cr = (cxl_rec_frontier_t *)rec_slot(L, CXL_REC_COMMIT);
    if (cr) {
        /* the record time is `now`, taken before the store that made the commit visible: a
         * reader that sees the new committed_seq never seems to have read it before it */
        cr->ns = now;
        cr->value = hi > prev ? hi : prev;
        cr->who = 0;
        cr->kind = 0;
    }
}

/* The order records of one round (Order 2 and Order 5 alike): entry i of `ents`, at global
 * position pos[i], of kind kinds[i] (NULL: every one a batch). A batch also counts its commit
 * latency and advances the running message order; a marker (Order 5) takes a position but no
 * messages. Entries a scanner flagged (lost or corrupt) have no position and no record. */
CXL_INTERNAL void record_order(cxl_log_t *L, const entry_t *ents, const uint64_t *pos,
                               const uint8_t *kinds, uint64_t n, uint64_t now) {
    uint64_t order = L->total_msgs_ordered;
    for (uint64_t i = 0; i < n; i++) {
        const entry_t *e = &ents[i];
        if (e->flags) continue;
        const uint8_t kind = kinds ? kinds[i] : (uint8_t)CXL_ORDER_BATCH;
        cxl_rec_order_t *r = (cxl_rec_order_t *)rec_slot(L, CXL_REC_ORDER);
        if (r) {
            r->seq = pos[i];
            r->pbr_index = e->pbr_index;
            r->commit_ns = now;
            r->first_msg_order = order;
            r->client_batch_seq = e->client_batch_seq;
            r->broker = e->broker;
            r->msg_count = e->msg_count;
            r->client = e->client;
            r->kind = kind;
        }
        if (kind == CXL_ORDER_MARKER) continue;
        if (e->publish_ns && now > e->publish_ns) L->st.lat_hist[lat_bucket(now - e->publish_ns)]++;
        order += e->msg_count;
    }
}

CXL_INTERNAL int seq_drained(cxl_log_t *L) {
    for (int e = 0; e < 3; e++) {
        if (L->shared[e].count) return 0;
        for (uint32_t b = 0; b < L->cfg.brokers; b++)
            if (L->bufs[e][b].count) return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ dead roles */

/* A role is dead when its beat stood still for slot_timeout_ns and its thread is gone (same
 * host only: see peer_gone). `seen`/`since` are this sequencer's memory of the beat. */
static int beat_stopped(cxl_log_t *L, uint64_t beat, uint64_t *seen, uint64_t *since,
                        uint64_t now) {
    if (beat != *seen || !*since) {
        *seen = beat;
        *since = now;
        return 0;
    }
    return now - *since > L->cfg.slot_timeout_ns;
}

/* A dead scanner: the sequencer scans its ring from where it stopped pushing. Its entries
 * already pushed are ordered as usual; every later committed batch of that broker is declared
 * lost by identity (never ordered, never acknowledged), so the broker's publishers are not
 * held back and every other broker is ordered as before. */
static void seq_scanner_dead(cxl_log_t *L, uint32_t b) {
    scanner_t *S = &L->scan[b], *T = &L->takeover[b];
    uint64_t from = cxl_ctl_load_explicit(&S->pushed, memory_order_acquire);
    cxl_scan_line_t *sl = &L->scanl[b];
    cxl_invalidate(&sl->lost_count, CXL_LINE);
    uint64_t lost = cxl_consume64(&sl->lost_count);
    if (lost > L->per_broker) {
        corrupt(L, CORRUPT_CTRL, &sl->lost_count, lost);
        lost = 0;
    }
    memset(T, 0, sizeof *T);
    cxl_ctl_store(&T->active, QUIESCENT);
    T->broker = b;
    T->quota = L->per_broker;
    T->next = from < L->per_broker ? from : L->per_broker;
    T->lost_count = lost;
    T->foreign_at = UINT64_MAX;
    L->scan_dead |= 1u << b;
    L->st.scanners_dead |= 1u << b;
    note_detect(L);
}

static void seq_subscriber_dead(cxl_log_t *L, uint32_t k) {
    cxl_sub_line_t *s = &L->subl[k];
    uint64_t pos = cxl_consume64(&s->goi_pos);
    L->st.dead_sub_pos[k] = pos <= L->next_pos ? pos : L->next_pos;
    L->sub_dead |= 1u << k;
    L->st.subscribers_dead |= 1u << k;
    cxl_commit64(&L->ctrl->seq.sub_dead, L->sub_dead);
    cxl_flush(&L->ctrl->seq);
    cxl_sfence();
    note_detect(L);
}

/* A role thread of this process that ended signalled it under done_mu (role_finished): taking
 * the mutex orders everything it did before anything done after it is found dead (what a
 * join would give; another process's role needs nothing of the kind). */
static void sync_with_ended(cxl_log_t *L) {
    pthread_mutex_lock(&L->done_mu);
    pthread_mutex_unlock(&L->done_mu);
}

static void seq_watch(cxl_log_t *L) {
    if (!L->cfg.slot_timeout_ns || (L->cfg.flags & CXL_F_DETERMINISTIC)) return;
    uint64_t now = cxl_now_ns();
    if (now - L->watch_ns < WATCH_NS) return;
    L->watch_ns = now;
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        if ((L->scan_dead >> b & 1) || cxl_ctl_load(&L->scan[b].finished)) continue;
        cxl_scan_line_t *sl = &L->scanl[b];
        cxl_invalidate(sl, CXL_LINE);
        if (!beat_stopped(L, cxl_consume64(&sl->beat), &L->scan_seen[b], &L->scan_since[b], now))
            continue;
        if (peer_gone(L, cxl_consume64(&sl->o.host), cxl_consume64(&sl->ident))) {
            sync_with_ended(L);
            seq_scanner_dead(L, b);
        }
        else
            L->scan_since[b] = now; /* slow, not dead */
    }
    for (uint32_t k = 0; k < L->cfg.subscribers; k++) {
        if (L->sub_dead >> k & 1) continue;
        cxl_sub_line_t *s = &L->subl[k];
        cxl_invalidate(s, CXL_LINE);
        if (!beat_stopped(L, cxl_consume64(&s->beat), &L->sub_seen[k], &L->sub_since[k], now))
            continue;
        if (peer_gone(L, cxl_consume64(&s->host), cxl_consume64(&s->ident))) {
            sync_with_ended(L);
            seq_subscriber_dead(L, k);
        }
        else
            L->sub_since[k] = now;
    }
}

/* The sequencer scans a dead scanner's ring into that broker's buffer of the current epoch
 * (nobody else writes it now): committed batches become lost entries that keep their identity;
 * slots whose publisher died are resolved by scan_take's own timeout. */
static void seq_takeover(cxl_log_t *L) {
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        if (!(L->scan_dead >> b & 1)) continue;
        scanner_t *T = &L->takeover[b];
        if (T->next >= T->quota) continue;
        const int shared = L->cfg.variant == 1;
        if (shared) pthread_mutex_lock(&L->mu);
        ebuf_t *buf = shared ? &L->shared[cxl_ctl_load(&L->epoch) % 3]
                             : &L->bufs[cxl_ctl_load(&L->epoch) % 3][b];
        for (uint64_t n = 0; n < SCAN_CHUNK && T->next < T->quota && buf->count < buf->cap; n++) {
            entry_t e;
            if (!scan_take(L, T, &e)) break;
            if (!e.flags) {
                e.flags = ENTRY_LOST | ENTRY_ORPHAN;
                stat_add(&L->st.batches_orphaned, 1);
            }
            buf->e[buf->count++] = e;
            record_loss(L, &e);
            T->next++;
        }
        if (shared) pthread_mutex_unlock(&L->mu);
        if (T->next >= T->quota) cxl_ctl_fetch_add(&L->scanners_done, 1);
    }
}

/* Seal and merge the next epoch when the current one is fully written. */
static int seq_next_epoch(cxl_log_t *L) {
    const int det = (L->cfg.flags & CXL_F_DETERMINISTIC) != 0;
    seq_watch(L);
    uint32_t done = cxl_ctl_load(&L->scanners_done);
    if (!L->sealing && !det && cxl_now_ns() < L->next_epoch_ns && done < L->cfg.brokers)
        return STEP_IDLE;
    if (!L->sealing && L->scan_dead) {
        seq_takeover(L);
        done = cxl_ctl_load(&L->scanners_done);
    }
    if (!seq_seal(L)) return STEP_IDLE;
    seq_merge(L);
    L->next_epoch_ns = cxl_now_ns() + (uint64_t)L->cfg.epoch_us * 1000u;
    stat_add(&L->st.epochs, 1);
    if (seq_pending(L)) return STEP_PROGRESS;
    if (done >= L->cfg.brokers && seq_drained(L)) {
        /* done names the final committed_seq, so a stray value cannot end subscribers early */
        cxl_commit64(&L->ctrl->seq.done, L->committed + 1);
        cxl_flush(&L->ctrl->seq);
        cxl_sfence();
        return STEP_DONE;
    }
    return STEP_IDLE;
}

CXL_INTERNAL int seq_step(cxl_log_t *L) {
    if (!seq_pending(L)) {
        int rc = seq_next_epoch(L);
        if (rc != STEP_PROGRESS) return rc;
    }
    uint64_t room;
    if (L->cfg.flags & CXL_F_RESERVE_PER_BATCH) {
        room = goi_room(L, L->next_pos);
    } else {
        seq_reserve_epoch(L);
        room = L->resv_left;
    }
    if (room == 0 && L->epoch_live) return STEP_IDLE;
    uint64_t n, live = seq_take_chunk(L, room, &n);
    const uint64_t taken = n, live_taken = live;
    if (n == 0) return STEP_IDLE;
    if (FAULT(L, seq_dup_identity) && live && n < CHUNK_MAX) {
        /* planted: the chunk's first live batch is ordered a second time, at the end */
        memcpy(L->chunk_copy, L->cur, n * sizeof(entry_t));
        L->cur = L->chunk_copy;
        for (uint64_t i = 0; i < n; i++)
            if (!L->cur[i].flags) { L->cur[n++] = L->cur[i]; live++; break; }
    }
    if (FAULT(L, seq_ack_before_order) && !L->acked_early) {
        /* planted: the ACK frontiers move a whole step before the chunk is ordered */
        for (uint64_t i = 0; i < n; i++) seq_account(L, &L->cur[i]);
        seq_publish_frontiers(L);
        seq_fence(L);
        L->acked_early = 1;
        return STEP_PROGRESS;
    }
    L->acked_early = 0;
    uint64_t hi = seq_assign(L, n, live, live_taken);
    seq_write_goi(L, n);
    uint64_t now = cxl_now_ns();
    record_order(L, L->cur, L->chunk_pos, NULL, n, now);
    uint64_t order0 = L->total_msgs_ordered;
    for (uint64_t i = 0; i < n; i++)
        if (!L->cur[i].flags) L->total_msgs_ordered += L->cur[i].msg_count;
    if (!FAULT(L, seq_ack_before_order))
        for (uint64_t i = 0; i < n; i++) seq_account(L, &L->cur[i]);
    seq_commit(L, hi, now);
    if (FAULT(L, seq_commit_unflushed)) seq_flush_late_tokens(L, n);
    /* committed_seq is out before the frontiers: two lines flushed before one fence become
     * visible in either order, and a subscriber that reads consumed_through, then
     * committed_seq (sub_release_lost) must never see the frontier ahead of the commit */
    seq_fence(L);
    seq_publish_frontiers(L);
    seq_fence(L);
    if (L->cfg.ack_level >= 2) {
        for (uint32_t b = 0; b < L->cfg.brokers; b++)
            publish_durable(L, b, L->seq_consumed[b], L->seq_ordered_msgs[b]);
        seq_fence(L);
    }
    seq_advance(L, taken);
    stat_add(&L->st.batches_ordered, live);
    stat_add(&L->st.messages_ordered, L->total_msgs_ordered - order0);
    atomic_fetch_add(&L->progress_msgs, L->total_msgs_ordered - order0);
    return STEP_PROGRESS;
}
