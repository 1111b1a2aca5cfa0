/*
 * cxl_order5.c -- the Order 5 sequencer: per-client FIFO, hold buffer, gaps resolved by
 * declared-lost markers or session fences. Shares the epoch machinery of cxl_sequencer.c.
 */
#include "cxl_log_int.h"

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
    /* the epoch's batches and markers (never flagged: o5_take accounts those), as at Order 2 */
    record_order(L, L->o5out, L->o5pos, L->o5kind, L->o5n, now);
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
    uint32_t done = cxl_ctl_load(&L->scanners_done);
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
