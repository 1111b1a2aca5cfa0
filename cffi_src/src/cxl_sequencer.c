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
static int seq_seal(cxl_log_t *L) {
    if (!L->sealing) {
        L->seal_epoch = atomic_load(&L->epoch);
        if (L->cfg.variant == 1) {
            pthread_mutex_lock(&L->mu); /* no scanner is inside its push while we hold it */
            atomic_store(&L->epoch, L->seal_epoch + 1);
            pthread_mutex_unlock(&L->mu);
            return 1;
        }
        atomic_store(&L->epoch, L->seal_epoch + 1);
        L->sealing = 1;
    }
    if (!FAULT(L, seq_unsealed_read)) {
        for (uint32_t b = 0; b < L->cfg.brokers; b++)
            if (!(L->scan_dead >> b & 1) && atomic_load(&L->scan[b].active) == L->seal_epoch)
                return 0;
    }
    L->sealing = 0;
    return 1;
}

/* Merge once per epoch: the sealed buffers are stable until epoch E + 3, so the sequencer
 * reads them where the scanners wrote them instead of copying them together. */
static void seq_count_live(cxl_log_t *L) {
    L->epoch_live = 0;
    for (uint32_t i = 0; i < L->nseg; i++)
        for (uint64_t k = 0; k < L->seg_n[i]; k++) L->epoch_live += !L->seg[i][k].flags;
}

static void seq_merge(cxl_log_t *L) {
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
            if (eb->count) { L->seg[L->nseg] = eb->e; L->seg_n[L->nseg++] = eb->count; }
            eb->count = 0;
        }
    }
    seq_count_live(L);
}

static int seq_pending(const cxl_log_t *L) { return L->seg_i < L->nseg; }

/* GOI space: positions below the slowest subscriber's may be overwritten. */
static uint64_t goi_room(cxl_log_t *L, uint64_t next_pos) {
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

static void goi_write_body(cxl_goi_entry_t *g, const entry_t *e, uint64_t order) {
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

static void seq_account(cxl_log_t *L, const entry_t *e) {
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

/* A macro, not a function: each call is its own seam site (one mutation point per fence). */
#define seq_fence(L)                                                                       \
    do {                                                                                   \
        if (!FAULT((L), seq_no_fence_at_all)) cxl_sfence();                                \
    } while (0)

/* Assign positions to the live entries of the chunk: one reservation per chunk (= per epoch
 * in steady state), or one per batch in the ablation. */
/* Reserve global positions for the rest of the epoch with one fetch-add (as many as the GOI
 * has room for). Returns how many positions are in hand. */
/* One atomic step on next_global. This sequencer is its only user (the lease), so the value
 * found must be what it reserved so far: another is corrupt, counted and not followed. */
static uint64_t seq_reserve(cxl_log_t *L, uint64_t n) {
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

static void seq_commit(cxl_log_t *L, uint64_t hi, uint64_t now) {
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

static void seq_record(cxl_log_t *L, uint64_t n, uint64_t now) {
    uint64_t order = L->total_msgs_ordered;
    for (uint64_t i = 0; i < n; i++) {
        const entry_t *e = &L->cur[i];
        if (e->flags) continue;
        cxl_rec_order_t *r = (cxl_rec_order_t *)rec_slot(L, CXL_REC_ORDER);
        if (r) {
            r->seq = L->chunk_pos[i];
            r->pbr_index = e->pbr_index;
            r->commit_ns = now;
            r->first_msg_order = order;
            r->client_batch_seq = e->client_batch_seq;
            r->broker = e->broker;
            r->msg_count = e->msg_count;
            r->client = e->client;
        }
        if (e->publish_ns && now > e->publish_ns) L->st.lat_hist[lat_bucket(now - e->publish_ns)]++;
        order += e->msg_count;
    }
}

static int seq_drained(cxl_log_t *L) {
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
    uint64_t from = atomic_load_explicit(&S->pushed, memory_order_acquire);
    cxl_scan_line_t *sl = &L->scanl[b];
    cxl_invalidate(&sl->lost_count, CXL_LINE);
    uint64_t lost = cxl_consume64(&sl->lost_count);
    if (lost > L->per_broker) {
        corrupt(L, CORRUPT_CTRL, &sl->lost_count, lost);
        lost = 0;
    }
    memset(T, 0, sizeof *T);
    atomic_store(&T->active, QUIESCENT);
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
        if ((L->scan_dead >> b & 1) || atomic_load(&L->scan[b].finished)) continue;
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
        ebuf_t *buf = shared ? &L->shared[atomic_load(&L->epoch) % 3]
                             : &L->bufs[atomic_load(&L->epoch) % 3][b];
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
        if (T->next >= T->quota) atomic_fetch_add(&L->scanners_done, 1);
    }
}

/* Seal and merge the next epoch when the current one is fully written. */
static int seq_next_epoch(cxl_log_t *L) {
    const int det = (L->cfg.flags & CXL_F_DETERMINISTIC) != 0;
    seq_watch(L);
    uint32_t done = atomic_load(&L->scanners_done);
    if (!L->sealing && !det && cxl_now_ns() < L->next_epoch_ns && done < L->cfg.brokers)
        return STEP_IDLE;
    if (!L->sealing && L->scan_dead) {
        seq_takeover(L);
        done = atomic_load(&L->scanners_done);
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
    seq_record(L, n, now);
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

/* ------------------------------------------------------------------ Order 5: per-client FIFO */

/*
 * Order 5 orders a client session's batches in client_batch_seq order. Per client the
 * sequencer keeps next_expected: a batch with that seq is ordered (and then every held batch
 * that follows it, a cascade); a later seq is held, here in sequencer-private memory, up to
 * hold_cap batches (beyond that the walk stops, the batch stays where the scanner left it and
 * the ring slot unconsumed: back-pressure, never a drop); an earlier seq is a late or
 * duplicate batch, never ordered, counted. A gap that stays open gap_timeout_ns is resolved:
 * gap_policy 0 declares the missing seqs lost with GOI markers (positions, in order), 1 fences
 * the session (its held batches are never ordered; the client continues in session + 1).
 * Positions are assigned at release, so the GOI stays dense and the reservation is one
 * fetch-add per step. A broker's ACK frontier stops at its oldest held batch.
 */

static inline uint64_t o5_word(const o5_client_t *C) {
    return C->session << CXL_SESSION_SHIFT | C->next_expected;
}

static void o5_emit(cxl_log_t *L, const entry_t *e, int kind) {
    L->o5out[L->o5n] = *e;
    L->o5kind[L->o5n] = (uint8_t)kind;
    L->o5n++;
}

static void o5_marker(cxl_log_t *L, uint32_t c, uint64_t word) {
    entry_t m;
    memset(&m, 0, sizeof m);
    m.client = c;
    m.broker = CXL_GOI_MARKER;
    m.client_batch_seq = word;
    o5_emit(L, &m, O5_MARKER);
    L->o5[c].markers++;
    L->o5[c].dirty = 1;
    stat_add(&L->st.o5_markers, 1);
}

static void o5_hold_remove(cxl_log_t *L, uint32_t i) {
    L->o5[L->hold[i].e.client].held--;
    L->hold[i] = L->hold[--L->hold_n];
}

static int64_t o5_find(const cxl_log_t *L, uint32_t c, uint64_t word) {
    for (uint32_t i = 0; i < L->hold_n; i++)
        if (L->hold[i].e.client == c && L->hold[i].e.client_batch_seq == word) return i;
    return -1;
}

/* A batch resolved without a position (late, duplicate, or of a fenced session): its slot is
 * consumed and counted lost on its broker, so its publisher is never told it was ordered. */
static void o5_loss_record(cxl_log_t *L, const entry_t *e, uint32_t reason) {
    cxl_rec_loss_t *r = (cxl_rec_loss_t *)rec_slot(L, CXL_REC_LOSS);
    if (!r) return;
    r->ns = cxl_now_ns();
    r->pbr_index = e->pbr_index;
    r->broker = e->broker;
    r->reason = reason;
    r->client = e->broker * L->cfg.publishers_per_broker + e->client % L->cfg.publishers_per_broker;
    r->alive = 0;
}

static void o5_drop(cxl_log_t *L, const entry_t *e, uint32_t reason) {
    uint32_t b = e->broker;
    if (e->pbr_index != L->seq_next_pbr[b]) stat_add(&L->st.order_gaps, 1);
    L->seq_next_pbr[b] = e->pbr_index + 1;
    L->seq_consumed[b] = e->pbr_index + 1;
    L->seq_lost[b]++;
    o5_loss_record(L, e, reason);
}

/* A held batch that will never be ordered (its session was fenced): it was counted as if
 * ordered when it was held, so take its messages back, here and in the frontiers kept for the
 * later held batches of its broker. */
static void o5_unhold(cxl_log_t *L, uint32_t i) {
    const entry_t e = L->hold[i].e;
    uint32_t b = e.broker;
    L->seq_ordered_msgs[b] -= e.msg_count;
    L->seq_lost[b]++;
    for (uint32_t j = 0; j < L->hold_n; j++)
        if (L->hold[j].e.broker == b && L->hold[j].e.pbr_index > e.pbr_index) {
            L->hold[j].pre_msgs -= e.msg_count;
            L->hold[j].pre_lost++;
        }
    o5_loss_record(L, &e, CXL_LOSS_FENCED);
    stat_add(&L->st.o5_fenced_rejects, 1);
    o5_hold_remove(L, i);
}

/* After next_expected moved: release the held batches that now follow in order. */
static void o5_cascade(cxl_log_t *L, uint32_t c, uint32_t cap, uint64_t now) {
    o5_client_t *C = &L->o5[c];
    while (C->held && L->o5n < cap) {
        int64_t i;
        if (FAULT(L, seq5_hold_release_unordered)) {
            /* planted: the client's held batches go out highest seq first */
            i = -1;
            for (uint32_t j = 0; j < L->hold_n; j++)
                if (L->hold[j].e.client == c &&
                    (i < 0 || L->hold[j].e.client_batch_seq > L->hold[i].e.client_batch_seq))
                    i = j;
            if (i < 0) break;
            uint64_t q = L->hold[i].e.client_batch_seq & CXL_SEQ_MASK;
            if (q + 1 > C->next_expected) C->next_expected = q + 1;
        } else {
            i = o5_find(L, c, o5_word(C));
            if (i < 0) break;
            C->next_expected++;
        }
        o5_emit(L, &L->hold[i].e, O5_BATCH);
        o5_hold_remove(L, (uint32_t)i);
    }
    C->dirty = 1;
    C->gap_since_ns = C->held ? now : 0; /* a gap still open is a new one from now */
}

/* Cascades cut short by a full output (or GOI) last step. */
static void o5_release_ready(cxl_log_t *L, uint32_t cap, uint64_t now) {
    for (uint32_t i = 0; i < L->hold_n && L->o5n < cap;) {
        uint32_t c = L->hold[i].e.client;
        if (L->hold[i].e.client_batch_seq == o5_word(&L->o5[c])) {
            o5_cascade(L, c, cap, now);
            i = 0;
        } else {
            i++;
        }
    }
}

/* Resolve the gaps open longer than the timeout (every gap when nothing more can arrive). */
static void o5_resolve_gaps(cxl_log_t *L, uint64_t now, int final, uint32_t cap) {
    for (uint32_t c = 0; c < L->npubs && L->hold_n; c++) {
        o5_client_t *C = &L->o5[c];
        if (!C->held) continue;
        if (!C->gap_since_ns) C->gap_since_ns = now;
        if (!final && now - C->gap_since_ns < L->cfg.gap_timeout_ns) continue;
        if (L->cfg.gap_policy == 1 && C->session < CXL_MAX_SESSION) {
            /* fence: the client is told its committed high-water mark and reopens */
            C->fenced_through = C->next_expected;
            for (uint32_t i = 0; i < L->hold_n;)
                if (L->hold[i].e.client == c) o5_unhold(L, i);
                else i++;
            C->session++;
            C->next_expected = 0;
            C->fences++;
            C->dirty = 1;
            C->gap_since_ns = 0;
            L->fence_c[L->fence_n++] = c;
            stat_add(&L->st.o5_fences, 1);
            continue;
        }
        /* declared lost: a marker for each missing seq below the lowest held one */
        uint64_t lo = UINT64_MAX;
        for (uint32_t i = 0; i < L->hold_n; i++)
            if (L->hold[i].e.client == c && L->hold[i].e.client_batch_seq < lo)
                lo = L->hold[i].e.client_batch_seq;
        lo &= CXL_SEQ_MASK;
        if (FAULT(L, seq5_gap_no_marker)) {
            C->next_expected = lo; /* planted: the gap is skipped, nothing says so */
        } else {
            while (C->next_expected < lo && L->o5n < cap) {
                o5_marker(L, c, o5_word(C));
                C->next_expected++;
            }
        }
        if (C->next_expected == lo) o5_cascade(L, c, cap, now);
    }
}

/* The epoch's next entry, by its client's session state. Returns 0 when the hold buffer is
 * full and this entry would need it: it stays, unconsumed. */
static int o5_take(cxl_log_t *L, const entry_t *e, uint32_t cap, uint64_t now) {
    if (e->flags) { /* declared lost or corrupt by its scanner: no position, as at Order 2 */
        seq_account(L, e);
        return 1;
    }
    const uint32_t c = e->client;
    if (c >= L->npubs) { /* the scanner validated it: cannot happen */
        o5_drop(L, e, CXL_LOSS_LATE);
        return 1;
    }
    o5_client_t *C = &L->o5[c];
    const uint64_t sess = e->client_batch_seq >> CXL_SESSION_SHIFT;
    const uint64_t q = e->client_batch_seq & CXL_SEQ_MASK;
    if (sess != C->session) { /* a fenced session's batch (or a session not yet opened) */
        o5_drop(L, e, CXL_LOSS_FENCED);
        stat_add(&L->st.o5_fenced_rejects, 1);
        return 1;
    }
    if (q == C->next_expected) {
        seq_account(L, e);
        o5_emit(L, e, O5_BATCH);
        C->next_expected++;
        C->dirty = 1;
        if (C->held) o5_cascade(L, c, cap, now);
        return 1;
    }
    if (q < C->next_expected || o5_find(L, c, e->client_batch_seq) >= 0) {
        if (FAULT(L, seq5_late_reordered) && q < C->next_expected) {
            seq_account(L, e); /* planted: the late batch is ordered after all */
            o5_emit(L, e, O5_BATCH);
            return 1;
        }
        o5_drop(L, e, CXL_LOSS_LATE);
        C->late++;
        C->dirty = 1;
        stat_add(&L->st.o5_late, 1);
        return 1;
    }
    if (L->hold_n >= L->cfg.hold_cap) {
        stat_add(&L->st.o5_hold_full, 1);
        return 0;
    }
    held_t *h = &L->hold[L->hold_n++];
    uint32_t b = e->broker;
    h->e = *e;
    h->pre_consumed = e->pbr_index;
    h->pre_msgs = L->seq_ordered_msgs[b];
    h->pre_lost = L->seq_lost[b];
    seq_account(L, e); /* counted as if ordered; the published frontier stops below it */
    C->held++;
    if (!C->gap_since_ns) C->gap_since_ns = now;
    stat_add(&L->st.o5_held, 1);
    return 1;
}

/* Per broker, the frontier up to its oldest held batch. */
static void o5_frontier(const cxl_log_t *L, uint32_t b, uint64_t *cons, uint64_t *msgs,
                        uint64_t *lost) {
    *cons = L->seq_consumed[b];
    *msgs = L->seq_ordered_msgs[b];
    *lost = L->seq_lost[b];
    for (uint32_t i = 0; i < L->hold_n; i++) {
        const held_t *h = &L->hold[i];
        if (h->e.broker == b && h->pre_consumed < *cons) {
            *cons = h->pre_consumed;
            *msgs = h->pre_msgs;
            *lost = h->pre_lost;
        }
    }
}

/* The session lines of the clients this step changed, written with the GOI tokens (after the
 * bodies' fence) and fenced with them before the commit that covers them. */
static void o5_write_clients(cxl_log_t *L) {
    for (uint32_t c = 0; c < L->npubs; c++) {
        o5_client_t *C = &L->o5[c];
        if (!C->dirty) continue;
        cxl_client_line_t *l = &L->clientl[c];
        cxl_commit64(&l->session, C->session);
        cxl_commit64(&l->next_expected, C->next_expected);
        cxl_commit64(&l->fenced_through, C->fenced_through);
        cxl_commit64(&l->markers, C->markers);
        cxl_commit64(&l->fences, C->fences);
        cxl_commit64(&l->late, C->late);
        cxl_flush(l);
        C->dirty = 0;
    }
}

static void o5_write_goi(cxl_log_t *L) {
    uint64_t order = L->total_msgs_ordered;
    const int flush = !FAULT(L, seq_no_goi_flush);
    for (uint32_t i = 0; i < L->o5n; i++) {
        cxl_goi_entry_t *g = &L->goi[L->o5pos[i] & L->goi_mask];
        const entry_t *e = &L->o5out[i];
        if (L->o5kind[i] == O5_MARKER) {
            cxl_goi_entry_t v;
            memset(&v, 0, sizeof v);
            v.first_msg_order = order;
            v.client_batch_seq = e->client_batch_seq;
            v.broker = CXL_GOI_MARKER;
            v.client = e->client;
            cxl_copy_in(g, &v, offsetof(cxl_goi_entry_t, token));
            if (flush && !FAULT(L, seq5_marker_unflushed)) cxl_flush(g);
            continue;
        }
        goi_write_body(g, e, order);
        if (flush) cxl_flush(g);
        order += e->msg_count;
    }
    if (!FAULT(L, seq_no_goi_fence)) seq_fence(L);
    o5_write_clients(L);
    for (uint32_t i = 0; i < L->o5n; i++) {
        cxl_goi_entry_t *g = &L->goi[L->o5pos[i] & L->goi_mask];
        cxl_publish_token(g, &g->token, L->o5pos[i] + 1);
        if (flush && !(L->o5kind[i] == O5_MARKER && FAULT(L, seq5_marker_unflushed))) cxl_flush(g);
    }
}

static void o5_record(cxl_log_t *L, uint64_t now) {
    uint64_t order = L->total_msgs_ordered;
    for (uint32_t i = 0; i < L->o5n; i++) {
        const entry_t *e = &L->o5out[i];
        cxl_rec_order_t *r = (cxl_rec_order_t *)rec_slot(L, CXL_REC_ORDER);
        if (r) {
            r->seq = L->o5pos[i];
            r->pbr_index = e->pbr_index;
            r->commit_ns = now;
            r->first_msg_order = order;
            r->client_batch_seq = e->client_batch_seq;
            r->broker = e->broker;
            r->msg_count = e->msg_count;
            r->client = e->client;
            r->kind = L->o5kind[i];
        }
        if (L->o5kind[i] == O5_MARKER) continue;
        if (e->publish_ns && now > e->publish_ns) L->st.lat_hist[lat_bucket(now - e->publish_ns)]++;
        order += e->msg_count;
    }
    for (uint32_t i = 0; i < L->fence_n; i++) {
        const o5_client_t *C = &L->o5[L->fence_c[i]];
        cxl_rec_order_t *r = (cxl_rec_order_t *)rec_slot(L, CXL_REC_ORDER);
        if (!r) continue;
        memset(r, 0, sizeof *r);
        r->commit_ns = now;
        r->client = L->fence_c[i];
        r->client_batch_seq = (C->session - 1) << CXL_SESSION_SHIFT | C->fenced_through;
        r->broker = CXL_GOI_MARKER;
        r->kind = CXL_ORDER_FENCE;
    }
}

static int o5_pending(const cxl_log_t *L) {
    for (uint32_t i = 0; i < L->nseg; i++)
        if (L->o5_at[i] < L->seg_n[i]) return 1;
    return 0;
}

static uint64_t o5_waiting(const cxl_log_t *L) {
    uint64_t n = 0;
    for (uint32_t b = 0; b < L->cfg.brokers; b++) n += L->wait_n[b];
    return n;
}

static int o5_wait_push(cxl_log_t *L, const entry_t *e) {
    uint32_t b = e->broker;
    if (L->wait_n[b] >= L->cfg.pbr_slots) return 0; /* more than a ring: cannot happen */
    L->wait[b][(L->wait_head[b] + L->wait_n[b]) % L->cfg.pbr_slots] = *e;
    L->wait_n[b]++;
    return 1;
}

/* Take the sealed epoch's entries, each buffer in its order. An entry that finds the hold
 * buffer full waits in its broker's wait list (its slot unconsumed: back-pressure, never a
 * drop), and so does everything after it of that broker, so the epoch can be done with and the
 * batch that closes the gap come in a later one. Waiting entries go first. Returns 1 when
 * anything was taken. */
static int o5_walk(cxl_log_t *L, uint32_t cap, uint64_t now) {
    int changed = 0, progress = 1;
    while (progress && L->o5n < cap) {
        progress = 0;
        for (uint32_t b = 0; b < L->cfg.brokers; b++)
            while (L->wait_n[b] && L->o5n < cap) {
                if (!o5_take(L, &L->wait[b][L->wait_head[b]], cap, now)) break;
                L->wait_head[b] = (L->wait_head[b] + 1) % L->cfg.pbr_slots;
                L->wait_n[b]--;
                progress = changed = 1;
            }
        for (uint32_t i = 0; i < L->nseg && L->o5n < cap; i++)
            while (L->o5_at[i] < L->seg_n[i] && L->o5n < cap) {
                const entry_t *e = &L->seg[i][L->o5_at[i]];
                if (e->broker < L->cfg.brokers && L->wait_n[e->broker]) {
                    if (!o5_wait_push(L, e)) break;
                } else if (o5_take(L, e, cap, now)) {
                    progress = changed = 1;
                } else if (!o5_wait_push(L, e)) {
                    break;
                }
                L->o5_at[i]++;
            }
    }
    return changed;
}

/* Seal and merge the next epoch; the run ends only with the hold buffer empty. *final: no
 * batch can arrive any more, so every open gap is resolved now. */
static int seq5_next_epoch(cxl_log_t *L, int *final) {
    const int det = (L->cfg.flags & CXL_F_DETERMINISTIC) != 0;
    uint32_t done = atomic_load(&L->scanners_done);
    if (!L->sealing && !det && cxl_now_ns() < L->next_epoch_ns && done < L->cfg.brokers)
        return STEP_IDLE;
    if (!seq_seal(L)) return STEP_IDLE;
    seq_merge(L);
    memset(L->o5_at, 0, sizeof L->o5_at);
    L->next_epoch_ns = cxl_now_ns() + (uint64_t)L->cfg.epoch_us * 1000u;
    stat_add(&L->st.epochs, 1);
    if (o5_pending(L)) return STEP_PROGRESS;
    if (done >= L->cfg.brokers && seq_drained(L)) {
        if (L->hold_n || o5_waiting(L)) {
            *final = 1;
            return STEP_IDLE;
        }
        cxl_commit64(&L->ctrl->seq.done, L->committed + 1);
        cxl_flush(&L->ctrl->seq);
        cxl_sfence();
        return STEP_DONE;
    }
    return STEP_IDLE;
}

CXL_INTERNAL int seq5_step(cxl_log_t *L) {
    int final = 0;
    if (!o5_pending(L) && seq5_next_epoch(L, &final) == STEP_DONE) return STEP_DONE;
    const uint64_t now = cxl_now_ns();
    uint64_t room = goi_room(L, L->next_pos);
    const uint32_t cap = room < O5_OUT_MAX ? (uint32_t)room : O5_OUT_MAX;
    const uint32_t held0 = L->hold_n;
    L->o5n = 0;
    L->fence_n = 0;
    if (L->hold_n) o5_release_ready(L, cap, now);
    if (L->hold_n) o5_resolve_gaps(L, now, final, cap);
    const int changed = o5_walk(L, cap, now);
    if (!L->o5n && !L->fence_n && !changed && L->hold_n == held0) return STEP_IDLE;
    uint64_t hi = L->next_pos;
    if (L->o5n) {
        uint64_t base = seq_reserve(L, L->o5n);
        stat_add(&L->st.reservations, 1);
        for (uint32_t i = 0; i < L->o5n; i++) L->o5pos[i] = base + i;
        hi = base + L->o5n;
    }
    o5_write_goi(L);
    seq_fence(L); /* GOI tokens and session lines out before committed_seq covers them */
    o5_record(L, now);
    uint64_t order0 = L->total_msgs_ordered, batches = 0;
    for (uint32_t i = 0; i < L->o5n; i++)
        if (L->o5kind[i] == O5_BATCH) {
            L->total_msgs_ordered += L->o5out[i].msg_count;
            batches++;
        }
    seq_commit(L, hi, now);
    /* committed_seq out before the frontiers (as at Order 2): a subscriber's release rule
     * (sub5_release, sub_release_lost) reads consumed_through, then committed_seq */
    seq_fence(L);
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        uint64_t cons, msgs, lost;
        o5_frontier(L, b, &cons, &msgs, &lost);
        publish_frontier(L, b, cons, cons, msgs, lost);
    }
    seq_fence(L);
    if (L->cfg.ack_level >= 2) {
        for (uint32_t b = 0; b < L->cfg.brokers; b++) {
            uint64_t cons, msgs, lost;
            o5_frontier(L, b, &cons, &msgs, &lost);
            publish_durable(L, b, cons, msgs);
        }
        seq_fence(L);
    }
    stat_max(&L->st.o5_hold_max, L->hold_n);
    stat_add(&L->st.o5_hold_sum, L->hold_n);
    stat_add(&L->st.o5_hold_samples, 1);
    stat_add(&L->st.batches_ordered, batches);
    stat_add(&L->st.messages_ordered, L->total_msgs_ordered - order0);
    atomic_fetch_add(&L->progress_msgs, L->total_msgs_ordered - order0);
    return STEP_PROGRESS;
}
