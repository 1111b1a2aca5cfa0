/*
 * cxl_subscriber.c -- subscribers: read the committed GOI prefix (Order 2) or the rings (Order 0), verify, release.
 */
#include "cxl_log_int.h"

/* ------------------------------------------------------------------ subscribers */

/* Verify a batch's payload against its checksum, message by message, never reading past
 * `size`. Returns the recomputed checksum, or a value != expected on any malformed message. */
static uint64_t verify_payload(cxl_log_t *L, subscriber_t *U, const unsigned char *p,
                               uint64_t size, uint32_t msg_count, int *ok) {
    if (!FAULT(L, sub_no_invalidate_payload)) cxl_invalidate(p, size);
    const unsigned char *v = (const unsigned char *)cxl_read_view(p, size, U->scratch);
    uint64_t cs = 0, off = 0;
    *ok = 1;
    for (uint32_t m = 0; m < msg_count; m++) {
        cxl_msg_hdr_t h;
        if (size - off < sizeof h) { *ok = 0; break; }
        memcpy(&h, v + off, sizeof h);
        if (h.size > size - off - sizeof h) { *ok = 0; break; }
        uint64_t ph = cxl_checksum_bytes(v + off + sizeof h, h.size, 0);
        cs = fold_checksum(cs, msg_checksum(ph, h.size, h.client, h.msg_seq));
        off += align64(sizeof h + h.size);
        if (off > size) off = size;
    }
    return cs;
}

static void sub_deliver(cxl_log_t *L, subscriber_t *U, uint64_t pos, uint32_t b,
                        uint64_t pbr_index, uint64_t log_offset, uint64_t size,
                        uint32_t msg_count, uint32_t client, uint64_t cbs, uint64_t checksum) {
    const uint32_t k = U->idx;
    uint64_t got = checksum;
    if (!(L->cfg.flags & CXL_F_NO_VERIFY)) {
        int ok;
        got = verify_payload(L, U, log_of(L, b) + log_offset, size, msg_count, &ok);
        if (!ok || got != checksum) stat_add(&L->st.sub_checksum_errors[k], 1);
    }
    /* Order 5: per client, (session, seq) words strictly increase in delivery order */
    if (U->last_cbs && client < L->npubs) {
        if (cbs + 1 <= U->last_cbs[client]) stat_add(&L->st.sub_client_order_errors[k], 1);
        U->last_cbs[client] = cbs + 1;
    }
    /* per-broker arrival order: ring indices strictly increase within a broker (at Order 5
     * within each client's batches: the per-client check above) */
    if (!U->last_cbs && pbr_index + 1 <= U->last_pbr[b]) stat_add(&L->st.sub_order_errors[k], 1);
    U->last_pbr[b] = pbr_index + 1;
    /* Order 2: one sequence, hashed in delivery order. Order 0: only each broker's sequence is
     * defined, so hash per broker and combine independently of the interleaving. */
    if (L->cfg.order >= 2)
        U->hash = mix64(U->hash ^ pos) ^ mix64(((uint64_t)b << 56) ^ pbr_index) ^ checksum;
    else
        U->bhash[b] = mix64(U->bhash[b] ^ pbr_index) ^ checksum;
    L->st.sub_batches[k]++;
    L->st.sub_messages[k] += msg_count;
    cxl_rec_deliver_t *r = (cxl_rec_deliver_t *)rec_slot(L, CXL_REC_DELIVER + (int)k);
    if (r) {
        r->pos = pos;
        r->pbr_index = pbr_index;
        r->checksum = got;
        r->ns = cxl_now_ns();
        r->client_batch_seq = cbs;
        r->broker = b;
        r->client = client;
        r->size = (uint32_t)size;
        r->msg_count = msg_count;
        r->committed = U->last_committed;
    }
}

static void sub_publish_position(cxl_log_t *L, subscriber_t *U) {
    cxl_sub_line_t *s = &L->subl[U->idx];
    const uint64_t *rel = L->cfg.order == 5 ? U->rel5 : U->last_pbr;
    for (uint32_t b = 0; b < L->cfg.brokers; b++) cxl_commit64(&s->released[b], rel[b]);
    cxl_commit64(&s->delivered_batches, L->st.sub_batches[U->idx]);
    cxl_commit64(&s->heartbeat_ns, cxl_now_ns());
    cxl_commit64(&s->goi_pos, U->pos);
    cxl_flush(&s->released[0]);
    cxl_flush(s);
    cxl_sfence();
}

/* An Order 5 declared-lost marker: no batch, no payload, a client batch of the run. */
static int marker_valid(const cxl_log_t *L, const cxl_goi_entry_t *g) {
    return L->cfg.order == 5 && g->broker == CXL_GOI_MARKER && g->msg_count == 0 && g->size == 0 &&
           g->client < L->npubs && (g->client_batch_seq >> CXL_SESSION_SHIFT) <= CXL_MAX_SESSION &&
           (g->client_batch_seq & CXL_SEQ_MASK) <= L->max_pos;
}

/* Passing over a marker: part of the agreed sequence (hashed), and the client's FIFO moves
 * past the batch it declares lost. */
static void sub_marker(cxl_log_t *L, subscriber_t *U, uint64_t pos, const cxl_goi_entry_t *g) {
    U->hash = mix64(U->hash ^ pos) ^ mix64(((uint64_t)g->client << 32) ^ g->client_batch_seq);
    L->st.sub_markers[U->idx]++;
    if (U->last_cbs) {
        if (g->client_batch_seq + 1 <= U->last_cbs[g->client])
            stat_add(&L->st.sub_client_order_errors[U->idx], 1);
        U->last_cbs[g->client] = g->client_batch_seq + 1;
    }
}

static int goi_valid(const cxl_log_t *L, const cxl_goi_entry_t *g) {
    if (g->broker >= L->cfg.brokers) return 0;
    if (g->msg_count == 0 || g->msg_count > L->cfg.msgs_per_batch) return 0;
    if (g->size < (uint64_t)g->msg_count * CXL_MSG_HDR || g->size > L->stride) return 0;
    if (g->log_offset % CXL_LINE || g->log_offset > L->log_bytes - g->size) return 0;
    if (!identity_valid(L, g->broker, g->client, g->client_batch_seq, g->pbr_index)) return 0;
    return 1;
}

/* A restarted subscriber continues after the last position it published: everything
 * before it was delivered, nothing after it was acknowledged by this subscriber. */
static void sub_resume(cxl_log_t *L, subscriber_t *U) {
    U->resumed = 1;
    if (!(L->cfg.flags & CXL_F_RESUME)) return;
    cxl_sub_line_t *s = &L->subl[U->idx];
    cxl_invalidate(s, sizeof *s);
    uint64_t pos = cxl_consume64(&s->goi_pos);
    cxl_invalidate(&L->ctrl->seq, CXL_LINE);
    uint64_t committed = cxl_consume64(&L->ctrl->seq.committed_seq);
    if (committed > L->max_pos) {
        corrupt(L, CORRUPT_CTRL, &L->ctrl->seq.committed_seq, committed);
        committed = 0;
    }
    if (pos > committed) { corrupt(L, CORRUPT_CTRL, &s->goi_pos, pos); pos = committed; }
    U->pos = pos;
    U->last_committed = pos;
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        uint64_t r = cxl_consume64(&s->released[b]);
        if (r > L->per_broker) { corrupt(L, CORRUPT_CTRL, &s->released[b], r); r = 0; }
        U->last_pbr[b] = r;
        U->next_pbr[b] = r;
        U->rel5[b] = r;
    }
    /* where it resumes, for the history: a re-delivery after it is no anomaly */
    const uint32_t n = L->cfg.order == 0 ? L->cfg.brokers : 1;
    for (uint32_t b = 0; b < n; b++) {
        cxl_rec_frontier_t *rr = (cxl_rec_frontier_t *)rec_slot(L, CXL_REC_COMMIT);
        if (!rr) break;
        rr->ns = cxl_now_ns();
        rr->value = L->cfg.order == 0 ? U->next_pbr[b] : U->pos;
        rr->value2 = b;
        rr->who = U->idx;
        rr->kind = CXL_RESUME_KIND + U->idx;
    }
}

/* Order 5: release what is known read. The sequencer writes committed_seq, then the
 * frontiers; so every live slot below a consumed_through read before committed_seq = c has a
 * position below c, and once this subscriber has delivered up to c it has read them all.
 * A snapshot is taken (sub5_snapshot) and completed by the committed_seq read that follows;
 * it is released as soon as the deliveries reach its c -- in the same step when they already
 * do, so a publisher waiting on a full ring waits one subscriber step less.
 * Returns 1 when the released prefix moved. */
static int sub5_release(cxl_log_t *L, subscriber_t *U) {
    int moved = 0;
    if (U->snap_state == 2 && U->pos >= U->snap_c) {
        for (uint32_t b = 0; b < L->cfg.brokers; b++)
            if (U->snap_cons[b] > U->rel5[b]) {
                U->rel5[b] = U->snap_cons[b];
                moved = 1;
            }
        U->snap_state = 0;
    }
    return moved;
}

static void sub5_snapshot(cxl_log_t *L, subscriber_t *U) {
    if (U->snap_state != 0) return;
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        cxl_invalidate(&L->seql[b], CXL_LINE);
        uint64_t v = cxl_consume64(&L->seql[b].consumed_through);
        if (v > L->per_broker) {
            corrupt(L, CORRUPT_CTRL, &L->seql[b].consumed_through, v);
            v = U->rel5[b];
        }
        U->snap_cons[b] = v;
    }
    U->snap_state = 1; /* the committed_seq read that follows completes it */
}

static uint64_t sub_read_committed(cxl_log_t *L, subscriber_t *U) {
    if (!FAULT(L, sub_no_invalidate_commit)) cxl_invalidate(&L->ctrl->seq, CXL_LINE);
    uint64_t c = cxl_consume64(&L->ctrl->seq.committed_seq);
    if (c > L->max_pos) { /* more than the run can ever order */
        corrupt(L, CORRUPT_CTRL, &L->ctrl->seq.committed_seq, c);
        return U->last_committed;
    }
    if (c < U->last_committed) {
        stat_add(&L->st.committed_regressions, 1);
        c = U->last_committed;
    }
    if (c != U->last_committed) {
        cxl_rec_frontier_t *r = (cxl_rec_frontier_t *)rec_slot(L, CXL_REC_COMMIT);
        if (r) { r->ns = cxl_now_ns(); r->value = c; r->who = U->idx; r->kind = 1 + U->idx; }
    }
    U->last_committed = c;
    return c;
}

/* A caught-up subscriber releases the ring slots the sequencer resolved without a position
 * (declared lost): they never come through the GOI, and must not block the ring. Each broker's
 * consumed_through is read before committed_seq, and the sequencer writes them the other way
 * round, so every live slot below it has a position below committed_seq -- delivered, since
 * this subscriber is caught up. Returns 1 when it released something. */
static int sub_release_lost(cxl_log_t *L, subscriber_t *U) {
    uint64_t cons[CXL_MAX_BROKERS];
    int any = 0;
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        cxl_invalidate(&L->seql[b], CXL_LINE);
        cons[b] = cxl_consume64(&L->seql[b].consumed_through);
        if (cons[b] > L->per_broker) {
            corrupt(L, CORRUPT_CTRL, &L->seql[b].consumed_through, cons[b]);
            cons[b] = 0;
        }
        any |= cons[b] > U->last_pbr[b];
    }
    if (!any) return 0;
    cxl_invalidate(&L->ctrl->seq, CXL_LINE);
    if (cxl_consume64(&L->ctrl->seq.committed_seq) != U->pos) return 0;
    for (uint32_t b = 0; b < L->cfg.brokers; b++)
        if (cons[b] > U->last_pbr[b]) U->last_pbr[b] = cons[b];
    sub_publish_position(L, U);
    return 1;
}

/* The subscriber's beat in its own line (only when roles can be declared dead): on each
 * step that delivered something, and every 16th idle one. */
static void sub_beat(cxl_log_t *L, subscriber_t *U, int progress) {
    /* the deterministic runner has no thread that could die alone: nothing to beat for */
    if (!L->cfg.slot_timeout_ns || (L->cfg.flags & CXL_F_DETERMINISTIC)) return;
    if (!progress && (U->idle_steps++ & 15)) return;
    cxl_sub_line_t *s = &L->subl[U->idx];
    cxl_st64_shared(&s->host, L->host);
    cxl_st64_shared(&s->ident, thread_ident(L)); /* a later run may run it on a new thread */
    cxl_st64_shared(&s->beat, ++U->beat);
    cxl_flush(s);
    cxl_sfence(); /* the line's next release (goi_pos) covers no unfenced store */
}

/* Crash injection: the subscriber dies in the middle of a chunk (delivered, position not yet
 * published); with crash_kill its whole process is SIGKILLed. */
static int sub_crash_here(cxl_log_t *L, subscriber_t *U) {
    if (L->cfg.crash_subscriber != U->idx + 1 || L->st.sub_batches[U->idx] != L->cfg.crash_after)
        return 0;
    stat_max(&L->st.crash_ns, cxl_now_ns());
    if (L->cfg.crash_kill) kill(getpid(), SIGKILL);
    U->crashed = 1;
    return 1;
}

CXL_INTERNAL int sub2_step(cxl_log_t *L, subscriber_t *U) {
    if (U->crashed) return STEP_DONE;
    if (!U->resumed) sub_resume(L, U);
    sub_beat(L, U, 0);
    int moved = 0;
    if (L->cfg.order == 5) {
        moved = sub5_release(L, U);
        sub5_snapshot(L, U);
    }
    uint64_t c = sub_read_committed(L, U);
    if (U->snap_state == 1) {
        U->snap_c = c;
        U->snap_state = 2;
    }
    if (c > U->pos + L->cfg.goi_slots) {
        /* committed_seq claims more than the ring can hold unread: corrupt control block */
        corrupt(L, CORRUPT_CTRL, &L->ctrl->seq.committed_seq, c);
        c = U->pos + L->cfg.goi_slots;
    }
    uint64_t n = 0;
    while (U->pos < c && n < SUB_CHUNK) {
        if (L->cfg.crash_subscriber && sub_crash_here(L, U)) return STEP_DONE;
        cxl_goi_entry_t *g = &L->goi[U->pos & L->goi_mask];
        if (!FAULT(L, sub_no_invalidate_goi)) cxl_invalidate(g, CXL_LINE);
        if (cxl_consume64(&g->token) != U->pos + 1) {
            /* committed but not readable: the prefix was not flushed before committed_seq */
            if (U->bad_at != U->pos + 1) corrupt(L, CORRUPT_GOI, &g->token, U->pos);
            U->bad_at = U->pos + 1;
            break;
        }
        cxl_goi_entry_t v;
        cxl_copy_out(&v, g, sizeof v);
        if (marker_valid(L, &v)) {
            sub_marker(L, U, U->pos, &v);
        } else if (goi_valid(L, &v)) {
            sub_deliver(L, U, U->pos, v.broker, v.pbr_index, v.log_offset, v.size, v.msg_count,
                        v.client, v.client_batch_seq, v.checksum);
        } else {
            corrupt(L, CORRUPT_GOI, g, U->pos);
        }
        U->pos++;
        n++;
    }
    if (L->cfg.order == 5) moved |= sub5_release(L, U);
    if (n) {
        sub_publish_position(L, U);
        sub_beat(L, U, 1);
        stat_max(&L->st.sub_last_ns[U->idx], cxl_now_ns());
        return STEP_PROGRESS;
    }
    if (moved) {
        sub_publish_position(L, U);
        return STEP_PROGRESS;
    }
    if (U->pos == c) {
        if (L->cfg.order != 5 && sub_release_lost(L, U)) return STEP_PROGRESS;
        cxl_invalidate(&L->ctrl->seq, CXL_LINE);
        uint64_t done = cxl_consume64(&L->ctrl->seq.done);
        uint64_t committed = cxl_consume64(&L->ctrl->seq.committed_seq);
        if (committed > L->max_pos) return STEP_IDLE; /* counted above */
        if (done && done == committed + 1 && committed == U->pos) return STEP_DONE;
        if (done && done != committed + 1 && U->bad_done != done) {
            U->bad_done = done;
            corrupt(L, CORRUPT_CTRL, &L->ctrl->seq.done, done);
        }
    }
    return STEP_IDLE;
}

/* Order 0: no global order; deliver each broker's acknowledged slots in ring order. */
CXL_INTERNAL int sub0_step(cxl_log_t *L, subscriber_t *U) {
    if (!U->resumed) sub_resume(L, U);
    uint64_t n = 0;
    int all_done = 1;
    for (uint32_t b = 0; b < L->cfg.brokers; b++) {
        if (U->next_pbr[b] >= L->per_broker) continue;
        all_done = 0;
        cxl_invalidate(&L->seql[b], CXL_LINE);
        uint64_t acked = cxl_consume64(&L->seql[b].ordered_batches);
        if (acked > L->per_broker) {
            corrupt(L, CORRUPT_CTRL, &L->seql[b].ordered_batches, acked);
            acked = U->next_pbr[b]; /* not followed */
        }
        while (U->next_pbr[b] < acked && n < SUB_CHUNK) {
            uint64_t i = U->next_pbr[b];
            cxl_batch_hdr_t *h = slot_at(L, b, i);
            cxl_invalidate(h, sizeof *h);
            cxl_batch_hdr_t v;
            if (cxl_consume64(&h->token) == i + 1) {
                cxl_copy_out(&v, h, sizeof v);
                if (header_valid(L, &v, b, i))
                    sub_deliver(L, U, i, b, i, v.log_offset, v.size, v.msg_count, v.client,
                                v.client_batch_seq, v.checksum);
            } /* else: resolved as lost by the broker; nothing to deliver */
            U->next_pbr[b] = i + 1;
            U->last_pbr[b] = i + 1;
            n++;
        }
    }
    if (n) {
        sub_publish_position(L, U);
        stat_max(&L->st.sub_last_ns[U->idx], cxl_now_ns());
        return STEP_PROGRESS;
    }
    return all_done ? STEP_DONE : STEP_IDLE;
}
