/*
 * cxl_scanner.c -- the scanner role (one per broker, lock-free into its epoch buffer) and the Order 0 acker.
 */
#include "cxl_log_int.h"

/* ------------------------------------------------------------------ scanner */

/* Identity fields a run can contain: the client publishes on its own broker, its batch
 * sequence stays below its quota, the ring index below the broker's total. */
CXL_INTERNAL int identity_valid(const cxl_log_t *L, uint32_t b, uint32_t client, uint64_t cbs,
                          uint64_t pbr_index) {
    if (L->cfg.order == 5) {
        /* a client spans brokers g*S .. g*S+S-1 and is named by its first publisher; its seqs
         * stay below S batches per member (one more where a gap is planted), its session
         * epoch at most CXL_MAX_SESSION */
        const uint32_t ppb = L->cfg.publishers_per_broker, S = L->cfg.client_spread;
        const uint32_t cb = client / ppb;
        const uint64_t seqs = (L->cfg.batches_per_publisher + (L->cfg.gap_client ? 1u : 0u)) * S;
        return client < L->npubs && cb % S == 0 && b >= cb && b < cb + S &&
               (cbs & CXL_SEQ_MASK) < seqs && (cbs >> CXL_SESSION_SHIFT) <= CXL_MAX_SESSION &&
               pbr_index < L->per_broker;
    }
    return client < L->npubs && client / L->cfg.publishers_per_broker == b &&
           cbs < L->cfg.batches_per_publisher && pbr_index < L->per_broker;
}

/* Validate a header copied out of the ring. Returns 1 when every field is in range. */
CXL_INTERNAL int header_valid(const cxl_log_t *L, const cxl_batch_hdr_t *v, uint32_t b, uint64_t abs) {
    if (v->slot_abs != abs || v->broker != b) return 0;
    if (v->msg_count == 0 || v->msg_count > L->cfg.msgs_per_batch) return 0;
    if (v->size < (uint64_t)v->msg_count * CXL_MSG_HDR || v->size > L->stride) return 0;
    if (v->log_offset % CXL_LINE || v->log_offset > L->log_bytes - v->size) return 0;
    if (!identity_valid(L, b, v->client, v->client_batch_seq, abs)) return 0;
    return 1;
}

/* Who holds slot abs of broker b: a fingerprint of the holders' beats (it moves while any of
 * them works), and the holder's client. On this host, a holder whose thread still exists is
 * alive (slow, not crashed) however long its beat stands still. */
static uint64_t holder_beats(cxl_log_t *L, uint32_t b, uint64_t abs, uint32_t *client,
                             int check_os, int *alive) {
    uint64_t fp = 0x686f6c64ull;
    *client = NO_CLIENT;
    *alive = 0;
    const uint32_t ppb = L->cfg.publishers_per_broker;
    for (uint32_t i = 0; i < ppb; i++) {
        cxl_pub_line_t *l = &L->publ[b * ppb + i];
        cxl_invalidate(l, CXL_LINE);
        if (cxl_consume64(&l->holding) != abs + 1) continue;
        fp = mix64(fp ^ cxl_consume64(&l->beat) ^ ((uint64_t)i << 48));
        *client = b * ppb + i;
        uint64_t ident = check_os ? cxl_consume64(&l->ident) : 0;
        if (check_os && cxl_consume64(&l->host) == L->host &&
            os_thread_alive((uint32_t)ident, (uint32_t)(ident >> 32)))
            *alive = 1;
    }
    return fp;
}

/* Declare slot S->next lost: tell it on the scanner's line, then look at the token once more
 * (a publisher that committed meanwhile reads our line after its token: see
 * pub_check_given_up). The scanner line is the scanner's own. */
static int scan_declare_lost(cxl_log_t *L, scanner_t *S, cxl_batch_hdr_t *h, uint64_t want) {
    cxl_scan_line_t *sl = &L->scanl[S->broker];
    cxl_st64_shared(&sl->lost_ring[S->lost_count % CXL_LOST_RING], S->next + 1);
    cxl_st64_shared(&sl->lost_count, ++S->lost_count);
    cxl_flush(&sl->lost_count);
    cxl_mfence();
    cxl_invalidate(&h->log_offset, CXL_LINE);
    return cxl_consume64(&h->token) == want;
}

/* Try to take the next slot. Returns 1 with *out filled, 0 if it is not there yet. */
CXL_INTERNAL int scan_take(cxl_log_t *L, scanner_t *S, entry_t *out) {
    const uint32_t b = S->broker;
    cxl_batch_hdr_t *h = slot_at(L, b, S->next);
    if (!FAULT(L, scan_no_invalidate_token)) cxl_invalidate(&h->log_offset, CXL_LINE);
    uint64_t tok = cxl_consume64(&h->token);
    uint64_t want = FAULT(L, pub_ready_flag) ? 1 : S->next + 1;
    memset(out, 0, sizeof *out);
    out->broker = b;
    out->pbr_index = S->next;
    if (tok != want) {
        /* An earlier lap of this slot is expected; a later lap or another slot's token is not. */
        int foreign = tok > want || (tok && ((tok - 1) & L->slots_mask) != (S->next & L->slots_mask));
        if (foreign && S->foreign_at != S->next && !FAULT(L, pub_ready_flag)) {
            S->foreign_at = S->next;
            corrupt(L, CORRUPT_FOREIGN, &h->token, tok);
        }
        if (FAULT(L, scan_skip_empty)) { out->flags = ENTRY_LOST; return 2; }
        if (!L->cfg.slot_timeout_ns) return 0;
        /* Each pending slot has its own clock, and it runs only while the slot is claimed and
         * its holder shows no life: a slot not yet claimed waits for a publisher held back by
         * the ring, a beating holder is slow, not crashed. */
        uint64_t now = cxl_now_ns();
        uint32_t client;
        int alive;
        if (S->wait_slot != S->next + 1) {
            S->wait_slot = S->next + 1;
            S->wait_since_ns = now;
            S->wait_beat = holder_beats(L, b, S->next, &client, 0, &alive);
            return 0;
        }
        cxl_invalidate(&L->claim[b], CXL_LINE);
        uint64_t claimed = cxl_consume64(&L->claim[b].claimed);
        if (claimed > L->per_broker) {
            corrupt(L, CORRUPT_CTRL, &L->claim[b].claimed, claimed);
            S->wait_since_ns = now;
            return 0;
        }
        /* A lease names the slot as well as the claim does, and it is fenced before the claim:
         * the only publisher's claim is a plain store closed by its header's fence, so one
         * that dies in between leaves a lease but maybe no claim in memory. With no claim in
         * sight the leases are read once per timeout, not on every poll. */
        if (claimed <= S->next && now - S->wait_since_ns <= L->cfg.slot_timeout_ns) return 0;
        uint64_t fp = holder_beats(L, b, S->next, &client, 0, &alive);
        if (claimed <= S->next && client == NO_CLIENT) { S->wait_since_ns = now; return 0; }
        if (fp != S->wait_beat) {
            S->wait_beat = fp;
            S->wait_since_ns = now;
            return 0;
        }
        if (now - S->wait_since_ns <= L->cfg.slot_timeout_ns) return 0;
        holder_beats(L, b, S->next, &client, 1, &alive);
        if (alive) { S->wait_since_ns = now; return 0; }
        /* claimed, never committed, its holder gone: resolve it explicitly */
        out->flags = ENTRY_LOST;
        out->client = client;
        if (scan_declare_lost(L, S, h, want)) {
            out->flags |= ENTRY_LATE;
            stat_add(&L->st.lost_late_commits, 1);
        } else {
            note_detect(L);
        }
        S->wait_slot = 0; /* the next slot starts its own clock */
        return 1;
    }
    S->wait_slot = 0;
    cxl_batch_hdr_t v;
    if (!FAULT(L, scan_no_invalidate_body)) cxl_invalidate(h, CXL_LINE);
    cxl_copy_out(&v, h, sizeof v);
    if (!header_valid(L, &v, b, S->next)) {
        corrupt(L, CORRUPT_HEADER, h, S->next);
        out->flags = ENTRY_CORRUPT;
        out->client = NO_CLIENT;
        return 1;
    }
    out->log_offset = v.log_offset;
    out->size = v.size;
    out->checksum = v.checksum;
    out->client_batch_seq = v.client_batch_seq;
    out->publish_ns = v.publish_ns;
    out->client = v.client;
    out->msg_count = v.msg_count;
    return 1;
}

CXL_INTERNAL void record_loss(cxl_log_t *L, const entry_t *e) {
    stat_add(&L->st.lost_by_broker[e->broker], 1);
    cxl_rec_loss_t *r = (cxl_rec_loss_t *)rec_slot(L, CXL_REC_LOSS);
    if (!r) return;
    r->ns = cxl_now_ns();
    r->pbr_index = e->pbr_index;
    r->broker = e->broker;
    r->reason = (e->flags & ENTRY_CORRUPT) ? CXL_LOSS_CORRUPT
                : (e->flags & ENTRY_ORPHAN)  ? CXL_LOSS_ORPHAN
                                             : CXL_LOSS_TIMEOUT;
    r->client = e->client;
    r->alive = (e->flags & ENTRY_LATE) ? 1 : 0;
}

/* Announce the epoch this scanner pushes into. The re-check closes the window in which the
 * sequencer bumps the epoch between our load and our store (see seq_seal). */
static uint64_t scanner_enter(cxl_log_t *L, scanner_t *S) {
    for (;;) {
        uint64_t e = cxl_ctl_load(&L->epoch);
        cxl_ctl_store(&S->active, e);
        if (cxl_ctl_load(&L->epoch) == e) return e;
    }
}

/* Collect up to SCAN_CHUNK committed slots. Per-scanner variant: into this scanner's own
 * buffer, no lock. Shared-mutex variant (the seed's "before"): each push takes the one mutex
 * and appends to the shared buffer of the current epoch, as the seed did per batch. */
/* Crash injection: the scanner stops here, announced in its epoch and in the middle of a
 * chunk; its thread ends (never its process, which the sequencer shares). */
static int scan_crash_here(cxl_log_t *L, scanner_t *S) {
    if (L->cfg.crash_scanner != S->broker + 1 || S->next != L->cfg.crash_after || L->cfg.order != 2)
        return 0;
    S->crashed = 1;
    stat_max(&L->st.crash_ns, cxl_now_ns());
    return 1;
}

/* The scanner's beat in its own line (only when roles can be declared dead). */
static void scan_beat(cxl_log_t *L, scanner_t *S) {
    cxl_scan_line_t *sl = &L->scanl[S->broker];
    cxl_st64_shared(&sl->ident, thread_ident(L)); /* a later run may run it on a new thread */
    cxl_st64_shared(&sl->beat, ++S->beat);
    cxl_flush(sl);
}

static uint64_t scan_collect(cxl_log_t *L, scanner_t *S, ebuf_t *own) {
    uint64_t n = 0;
    const int shared = L->cfg.variant == 1;
    while (S->next < S->quota && n < SCAN_CHUNK) {
        if (L->cfg.crash_scanner && scan_crash_here(L, S)) break;
        /* the ring is read in order: fetch a few headers ahead of the token poll */
        const cxl_batch_hdr_t *ahead = slot_at(L, S->broker, S->next + 8);
        __builtin_prefetch(ahead);
        __builtin_prefetch(&ahead->log_offset);
        entry_t e;
        if (!shared && own->count >= own->cap) break;
        if (!scan_take(L, S, &e)) break;
        if (shared) {
            pthread_mutex_lock(&L->mu);
            ebuf_t *buf = &L->shared[cxl_ctl_load(&L->epoch) % 3];
            int full = buf->count >= buf->cap;
            if (!full) buf->e[buf->count++] = e;
            pthread_mutex_unlock(&L->mu);
            if (full) break; /* buffers are sized for every slot of every ring: not reached */
        } else {
            cxl_ctl_observe(&own->count, sizeof own->count); /* where the push lands */
            own->e[own->count++] = e;
        }
        if (e.flags) record_loss(L, &e);
        S->next++;
        /* what is pushed: where the sequencer takes over should this scanner die */
        cxl_ctl_store_explicit(&S->pushed, S->next, memory_order_release);
        n++;
    }
    return n;
}

CXL_INTERNAL int scan_step(cxl_log_t *L, scanner_t *S) {
    if (S->crashed) return STEP_DONE;
    if (S->next >= S->quota) return STEP_DONE;
    if (L->cfg.slot_timeout_ns && !(L->cfg.flags & CXL_F_DETERMINISTIC) && (S->beat_steps++ & 15) == 0)
        scan_beat(L, S);
    uint64_t n;
    if (L->cfg.variant == 1) {
        n = scan_collect(L, S, NULL);
        if (S->crashed) return STEP_DONE;
    } else {
        if ((L->cfg.flags & CXL_F_DETERMINISTIC) && S->phase == 0) {
            S->pending_epoch = scanner_enter(L, S);
            S->phase = 1;
            return STEP_IDLE; /* the sequencer may run between announce and push */
        }
        uint64_t e = S->phase ? S->pending_epoch : scanner_enter(L, S);
        S->phase = 0;
        n = scan_collect(L, S, &L->bufs[e % 3][S->broker]);
        if (S->crashed) return STEP_DONE; /* dies announced: the seal must not wait for it */
        cxl_ctl_push_ended(L, e);
        cxl_ctl_store(&S->active, QUIESCENT);
    }
    if (S->next >= S->quota) {
        cxl_ctl_store(&S->finished, 1);
        cxl_ctl_fetch_add(&L->scanners_done, 1);
        return STEP_DONE;
    }
    return n ? STEP_PROGRESS : STEP_IDLE;
}

/* ------------------------------------------------------------------ Order 0 acker */

CXL_INTERNAL void publish_frontier(cxl_log_t *L, uint32_t b, uint64_t consumed, uint64_t batches,
                             uint64_t msgs, uint64_t lost) {
    cxl_seq_line_t *s = &L->seql[b];
    cxl_commit64(&s->lost_batches, lost);
    cxl_commit64(&s->ordered_msgs, msgs);
    cxl_commit64(&s->ordered_batches, batches);
    cxl_commit64(&s->consumed_through, consumed);
    if (!FAULT(L, seq_no_frontier_flush)) cxl_flush(s);
}

CXL_INTERNAL void publish_durable(cxl_log_t *L, uint32_t b, uint64_t batches, uint64_t msgs) {
    cxl_seq_line_t *s = &L->seql[b];
    cxl_commit64(&s->durable_msgs, msgs);
    cxl_commit64(&s->durable_batches, batches);
    cxl_flush(s);
}

CXL_INTERNAL int ack0_step(cxl_log_t *L, scanner_t *S) {
    if (S->next >= S->quota) return STEP_DONE;
    uint64_t n = 0, live = 0, msgs0 = S->acked_msgs;
    while (S->next < S->quota && n < SCAN_CHUNK) {
        entry_t e;
        int rc = scan_take(L, S, &e);
        if (!rc) break;
        if (e.flags) {
            record_loss(L, &e);
            S->lost++;
            stat_add(&L->st.batches_lost, 1);
        } else {
            live++;
            S->acked_msgs += e.msg_count;
            /* Order 0: a batch's position is its ring index in its broker's log */
            cxl_rec_order_t *r = (cxl_rec_order_t *)rec_slot(L, CXL_REC_ORDER);
            if (r) {
                r->seq = e.pbr_index;
                r->pbr_index = e.pbr_index;
                r->commit_ns = cxl_now_ns();
                r->first_msg_order = S->acked_msgs - e.msg_count;
                r->client_batch_seq = e.client_batch_seq;
                r->broker = S->broker;
                r->msg_count = e.msg_count;
                r->client = e.client;
            }
        }
        S->next++;
        n++;
    }
    if (!n) return STEP_IDLE;
    /* The broker's own frontier is the ACK in Order 0: flushed and fenced before it counts.
     * Its record time is taken before the store that makes it visible (see seq_commit). */
    const uint64_t t_commit = L->rec[CXL_REC_COMMIT].data ? cxl_now_ns() : 0;
    publish_frontier(L, S->broker, S->next, S->next, S->acked_msgs, S->lost);
    cxl_sfence();
    cxl_rec_frontier_t *cr = (cxl_rec_frontier_t *)rec_slot(L, CXL_REC_COMMIT);
    if (cr) { cr->ns = t_commit; cr->value = S->next; cr->who = S->broker; cr->kind = 0; }
    if (L->cfg.ack_level >= 2) {
        publish_durable(L, S->broker, S->next, S->acked_msgs);
        cxl_sfence();
    }
    atomic_fetch_add(&L->progress_msgs, S->acked_msgs - msgs0);
    stat_add(&L->st.batches_ordered, live);
    stat_add(&L->st.messages_ordered, S->acked_msgs - msgs0);
    if (S->next >= S->quota) {
        cxl_ctl_fetch_add(&L->scanners_done, 1);
        return STEP_DONE;
    }
    return STEP_PROGRESS;
}
