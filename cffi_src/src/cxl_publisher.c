/*
 * cxl_publisher.c -- the publisher role: claim a ring slot, write payload, header and token, follow the ACK.
 */
#include "cxl_log_int.h"

/* ------------------------------------------------------------------ publisher */

/* Subscribers the sequencer found dead (bit each): they no longer hold the ring back. Only
 * real threads can die alone, so never in the deterministic runner. */
static uint64_t dead_subscribers(cxl_log_t *L) {
    cxl_invalidate(&L->ctrl->seq, CXL_LINE);
    uint64_t dead = cxl_consume64(&L->ctrl->seq.sub_dead);
    uint64_t all = (1ull << L->cfg.subscribers) - 1;
    if (dead & ~all) {
        corrupt(L, CORRUPT_CTRL, &L->ctrl->seq.sub_dead, dead);
        return 0;
    }
    return dead;
}

/* Lowest ring index still in use on broker b: ordering must have consumed it and every
 * subscriber must have read its payload. `limit` is the highest value possible (slots claimed
 * so far): a frontier beyond it is corrupt and ignored, never followed. */
static uint64_t reuse_floor(cxl_log_t *L, publisher_t *P, uint64_t limit) {
    const uint32_t b = P->broker;
    if (!FAULT(L, pub_no_invalidate_frontier)) cxl_invalidate(&L->seql[b], CXL_LINE);
    uint64_t f = cxl_consume64(&L->seql[b].consumed_through);
    uint64_t rel[CXL_MAX_SUBS];
    uint64_t dead = L->cfg.slot_timeout_ns && L->cfg.order == 2 &&
                    !(L->cfg.flags & CXL_F_DETERMINISTIC) ? dead_subscribers(L) : 0;
    for (uint32_t k = 0; k < L->cfg.subscribers; k++) {
        cxl_invalidate(&L->subl[k].released[b], 8);
        rel[k] = cxl_consume64(&L->subl[k].released[b]);
    }
    if (limit == UINT64_MAX) { /* several publishers: the claims made so far, read after */
        cxl_invalidate(&L->claim[b], CXL_LINE);
        limit = cxl_consume64(&L->claim[b].claimed);
    }
    if (f > limit) {
        corrupt(L, CORRUPT_CTRL, &L->seql[b].consumed_through, f);
        f = P->floor;
    }
    for (uint32_t k = 0; k < L->cfg.subscribers; k++) {
        uint64_t r = rel[k];
        if (dead >> k & 1) continue;
        if (r > limit) {
            corrupt(L, CORRUPT_CTRL, &L->subl[k].released[b], r);
            r = P->floor;
        }
        if (r < f) f = r;
    }
    return f;
}

/* The publisher's lease: what it holds and a beat, in its own line. Only kept when slots can
 * be declared lost (slot_timeout_ns > 0); the next fence closes the flush. */
static void pub_lease(cxl_log_t *L, publisher_t *P, uint64_t holding) {
    cxl_pub_line_t *l = &L->publ[P->client];
    if (!P->lease_ready) {
        int det = (L->cfg.flags & CXL_F_DETERMINISTIC) != 0;
        cxl_st64_shared(&l->host, L->host);
        cxl_st64_shared(&l->ident, det ? 0u : (uint64_t)(uint32_t)getpid() | (uint64_t)os_tid() << 32);
        P->lease_ready = 1;
    }
    cxl_st64_shared(&l->holding, holding);
    cxl_st64_shared(&l->beat, ++P->beat);
    cxl_flush(l);
    P->since_beat = 0;
}

static inline void pub_progress(cxl_log_t *L, publisher_t *P, uint64_t bytes) {
    if (!L->cfg.slot_timeout_ns) return;
    P->since_beat += bytes;
    if (P->since_beat >= L->cfg.beat_bytes) {
        cxl_pub_line_t *l = &L->publ[P->client];
        cxl_st64_shared(&l->beat, ++P->beat);
        cxl_flush(l);
        P->since_beat = 0;
    }
}

static void copy_beating(cxl_log_t *L, publisher_t *P, unsigned char *dst, const unsigned char *src,
                         uint64_t n, int nt) {
    while (n) {
        uint64_t k = n < L->cfg.beat_bytes ? n : L->cfg.beat_bytes;
        if (nt) cxl_copy_in_nt(dst, src, k);
        else cxl_copy_in(dst, src, k);
        pub_progress(L, P, k);
        dst += k; src += k; n -= k;
    }
}

/* Stream one message as whole 64-byte lines: a partial line written with non-temporal stores
 * goes out as several partial write-combining bursts, many times slower than a full line.
 * The header shares the first line with the payload's start; the last line is padded. */
static void write_message_nt(cxl_log_t *L, publisher_t *P, unsigned char *dst,
                             const cxl_msg_hdr_t *h, const unsigned char *src, uint32_t msz) {
    uint64_t hw[2];
    memcpy(hw, h, sizeof hw);
    uint32_t first = msz < CXL_LINE - CXL_MSG_HDR ? msz : CXL_LINE - CXL_MSG_HDR;
    cxl_line_nt(dst, 1, hw[0], hw[1], src, first);
    uint32_t rest = msz - first, whole = rest / CXL_LINE * CXL_LINE, tail = rest - whole;
    if (whole) copy_beating(L, P, dst + CXL_LINE, src + first, whole, 1);
    if (tail) cxl_line_nt(dst + CXL_LINE + whole, 0, 0, 0, src + first + whole, tail);
}

/* Crash injection: the publisher dies here, with its slot claimed and half its payload
 * written. Its thread stops (or its process is killed); nothing else is touched. */
static int pub_crash_here(cxl_log_t *L, publisher_t *P, uint32_t m) {
    if (!L->cfg.crash_client || L->cfg.crash_client != P->client + 1 ||
        P->done != L->cfg.crash_after || m != L->cfg.msgs_per_batch / 2)
        return 0;
    stat_max(&L->st.crash_ns, cxl_now_ns());
    if (L->cfg.crash_kill) kill(getpid(), SIGKILL);
    P->crashed = 1;
    return 1;
}

static int write_payload(cxl_log_t *L, publisher_t *P, unsigned char *ext, uint64_t *size,
                         uint64_t *cs_out) {
    const int nt = (L->cfg.flags & CXL_F_NT_COPY) != 0;
    const uint32_t msz = L->cfg.msg_size;
    uint64_t cs = 0, off = 0;
    for (uint32_t m = 0; m < L->cfg.msgs_per_batch; m++) {
        if (pub_crash_here(L, P, m)) return -1;
        uint64_t seq = P->msg_seq++;
        uint32_t ps = pool_slot(P->client, seq, L->cfg.seed);
        cxl_msg_hdr_t h = {msz, P->client, seq};
        const unsigned char *src = L->pool + (uint64_t)ps * 64u;
        if (nt) {
            write_message_nt(L, P, ext + off, &h, src, msz);
        } else {
            cxl_copy_in(ext + off, &h, sizeof h);
            copy_beating(L, P, ext + off + sizeof h, src, msz, 0);
        }
        cs = fold_checksum(cs, msg_checksum(L->pool_hash[ps], msz, P->client, seq));
        off += L->msg_stride;
        pub_progress(L, P, 64);
        if (L->cfg.flags & CXL_F_EXTRA_FENCE) cxl_sfence();
    }
    /* Rule 1: payload flushed (non-temporal stores need no flush); the header's fence closes
     * these flushes too (rule 6: one fence may close several flushes). */
    if (!nt && !FAULT(L, pub_no_payload_flush)) cxl_flush_range(ext, off);
    *size = off;
    *cs_out = cs;
    return 0;
}

/* The client batch sequence of the next batch. Order 5: member m of a client spread over S
 * brokers sends seqs m, m+S, m+2S, ... of its session, the session epoch above bit 40; a
 * planted gap is a seq its member never sends. Other levels: the publisher's own count. */
static uint64_t pub_client_seq(cxl_log_t *L, publisher_t *P) {
    if (L->cfg.order != 5) return P->done;
    const uint64_t S = L->cfg.client_spread;
    uint64_t q = P->k * S + P->member;
    if (L->cfg.gap_client == P->cid + 1 && P->session == 0 && q == L->cfg.gap_seq) {
        P->k++;
        q = P->k * S + P->member;
    }
    return P->session << CXL_SESSION_SHIFT | q;
}

/* Order 5 with session fencing: the client learns a fence from its session line (the new
 * epoch) and continues in that session from seq 0; what it sent in the old session after the
 * fence is never ordered. A value out of range is corrupt and not followed. */
static void pub_follow_session(cxl_log_t *L, publisher_t *P) {
    cxl_client_line_t *c = &L->clientl[P->cid];
    cxl_invalidate(c, CXL_LINE);
    uint64_t s = cxl_consume64(&c->session);
    if (s > CXL_MAX_SESSION || s < P->session) {
        if (s != P->session) corrupt(L, CORRUPT_CTRL, &c->session, s);
        return;
    }
    if (s > P->session) {
        P->session = s;
        P->k = 0;
    }
}

static void write_header(cxl_log_t *L, publisher_t *P, cxl_batch_hdr_t *h, uint64_t size,
                         uint64_t cs, uint64_t first_seq, uint64_t log_off, uint64_t now,
                         uint64_t cbs) {
    cxl_batch_hdr_t v;
    memset(&v, 0, sizeof v);
    v.slot_abs = P->abs;
    v.broker = P->broker;
    v.client = P->cid;
    v.client_batch_seq = cbs;
    v.msg_count = L->cfg.msgs_per_batch;
    v.publish_ns = now;
    v.first_msg_seq = first_seq;
    v.log_offset = log_off;
    v.size = size;
    v.checksum = cs;
    uint64_t token = FAULT(L, pub_ready_flag) ? 1 : P->abs + 1;
    if (FAULT(L, pub_token_before_body)) cxl_publish_token(h, &h->token, token);
    /* Rule 2: both header lines flushed, one fence (the seed's amortisation), then the token. */
    cxl_copy_in(h, &v, offsetof(cxl_batch_hdr_t, token));
    if (FAULT(L, pub_fence_before_flush)) cxl_sfence();
    if (!FAULT(L, pub_no_hdr_flush_line0)) cxl_flush(h);
    if (L->cfg.flags & CXL_F_FENCE_PER_LINE) cxl_sfence();
    if (!FAULT(L, pub_no_hdr_flush_line1)) cxl_flush(&h->log_offset);
    if (!FAULT(L, pub_no_hdr_fence) && !FAULT(L, pub_fence_before_flush)) cxl_sfence();
    if (!FAULT(L, pub_token_before_body)) cxl_publish_token(h, &h->token, token);
    if (!FAULT(L, pub_no_token_flush)) cxl_flush(&h->token);
    cxl_sfence();
}

static void record_publish(cxl_log_t *L, publisher_t *P, uint64_t now, uint64_t size,
                           uint64_t cs, uint64_t cbs) {
    recs_t *r = &L->rec[CXL_REC_PUBLISH];
    if (!r->data) return;
    uint64_t i = (uint64_t)P->broker * L->per_broker + P->abs;
    if (P->abs >= L->per_broker) return;
    cxl_rec_publish_t *p = (cxl_rec_publish_t *)r->data + i;
    p->publish_ns = now;
    p->pbr_index = P->abs;
    p->client_batch_seq = cbs;
    p->checksum = cs;
    p->broker = P->broker;
    p->client = P->cid;
    p->msg_count = L->cfg.msgs_per_batch;
    p->size = (uint32_t)size;
    atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
}

/* Read the ACK frontier this publisher waits for; record each new value it sees. The frontier
 * counts ring slots resolved (acknowledged or declared lost): a slot below it is acknowledged
 * unless the broker's loss count says otherwise (see docs/architecture.md, ACK levels). */
static uint64_t poll_ack(cxl_log_t *L, publisher_t *P) {
    cxl_seq_line_t *s = &L->seql[P->broker];
    cxl_invalidate(s, CXL_LINE);
    const int durable = L->cfg.ack_level >= 2;
    uint64_t f = durable ? cxl_consume64(&s->durable_batches) : cxl_consume64(&s->ordered_batches);
    if (f > L->per_broker) {
        corrupt(L, CORRUPT_CTRL, durable ? &s->durable_batches : &s->ordered_batches, f);
        return P->last_ack;
    }
    if (f != P->last_ack) {
        uint64_t msgs = durable ? cxl_consume64(&s->durable_msgs) : cxl_consume64(&s->ordered_msgs);
        cxl_invalidate(&L->claim[P->broker], CXL_LINE);
        uint64_t claimed = cxl_consume64(&L->claim[P->broker].claimed);
        if (f > claimed) stat_add(&L->st.ack_ahead, 1);
        cxl_rec_frontier_t *r = (cxl_rec_frontier_t *)rec_slot(L, CXL_REC_ACK);
        if (r) {
            r->ns = cxl_now_ns();
            r->value = f;
            r->value2 = msgs;
            r->who = P->broker;
            r->kind = L->cfg.ack_level;
        }
        P->last_ack = f;
    }
    return f;
}

/* After committing slot abs (token written, then a full fence): did its scanner declare it
 * lost meanwhile? The scanner writes its loss, fences, and re-reads the token, so of the two
 * at least one sees the other (a false loss is always counted). */
static void pub_check_given_up(cxl_log_t *L, publisher_t *P, uint64_t abs) {
    cxl_scan_line_t *sl = &L->scanl[P->broker];
    cxl_invalidate(&sl->lost_count, CXL_LINE);
    if (!cxl_consume64(&sl->lost_count)) return;
    for (uint32_t i = 0; i < CXL_LOST_RING; i++)
        if (cxl_consume64(&sl->lost_ring[i]) == abs + 1) {
            P->lost_told++;
            stat_add(&L->st.lost_late_commits, 1);
            return;
        }
}

/* Claim the next ring slot, only once it is free: a publisher held back by the ring holds
 * nothing, so it never looks like a crashed one. Returns 1 with P->abs set. */
static int pub_claim(cxl_log_t *L, publisher_t *P) {
    const uint32_t b = P->broker;
    const uint64_t slots = L->cfg.pbr_slots;
    const int lease = L->cfg.slot_timeout_ns != 0;
    if (L->cfg.publishers_per_broker == 1) {
        /* the broker's only publisher: a plain store, not a locked RMW that would wait for
         * every earlier flush to drain */
        uint64_t abs = P->done;
        if (abs >= P->floor + slots && !FAULT(L, pub_reuse_early)) {
            P->floor = reuse_floor(L, P, abs);
            if (abs >= P->floor + slots) return 0;
        }
        P->abs = abs;
        if (lease) {
            pub_lease(L, P, abs + 1);
            cxl_sfence(); /* the lease is out before the claim it explains */
        }
        cxl_commit64(&L->claim[b].claimed, abs + 1);
        cxl_flush(&L->claim[b]); /* the header's fence closes it */
        return 1;
    }
    cxl_invalidate(&L->claim[b], CXL_LINE);
    uint64_t c = cxl_consume64(&L->claim[b].claimed);
    int leased = 0;
    for (int tries = 0; tries < 8; tries++) { /* a failed CAS leaves the value found in c */
        if (c >= L->per_broker) { /* every slot of the run is claimed, yet we have quota */
            corrupt(L, CORRUPT_CTRL, &L->claim[b].claimed, c);
            break;
        }
        if (c >= P->floor + slots && !FAULT(L, pub_reuse_early)) {
            P->floor = reuse_floor(L, P, UINT64_MAX);
            if (c >= P->floor + slots) break;
        }
        if (lease) {
            pub_lease(L, P, c + 1);
            cxl_sfence(); /* visible before the claim */
            leased = 1;
        }
        if (cxl_cas64(&L->claim[b].claimed, &c, c + 1)) {
            P->abs = c;
            return 1;
        }
    }
    /* a lease for a slot another publisher won must not make a crashed winner look alive */
    if (leased) pub_lease(L, P, 0);
    return 0;
}

CXL_INTERNAL int pub_step(cxl_log_t *L, publisher_t *P) {
    const uint32_t b = P->broker;
    if (P->crashed) return STEP_DONE;
    if (P->done == P->quota) {
        if (L->cfg.ack_level == 0 || P->quota == 0) return STEP_DONE;
        /* resolved: acknowledged, or declared lost (then counted lost, never acknowledged) */
        if (poll_ack(L, P) > P->last_abs) {
            stat_max(&L->st.last_ack_ns, cxl_now_ns());
            return STEP_DONE;
        }
        return STEP_IDLE;
    }
    if (!P->have_slot) {
        if (L->clientl && L->cfg.gap_policy == 1) pub_follow_session(L, P);
        if (!pub_claim(L, P)) {
            P->waits++;
            return STEP_IDLE;
        }
        P->have_slot = 1;
    }
    uint64_t now = cxl_now_ns();
    if (P->done == 0) P->first_ns = now;
    uint64_t log_off = (P->abs & L->slots_mask) * L->stride;
    if (L->cfg.publishers_per_broker > 1) {
        /* the slot passed the reuse floor: it is ours now, whoever wrote it on the last lap */
        cxl_take_lines(slot_at(L, b, P->abs), sizeof(cxl_batch_hdr_t));
        cxl_take_lines(log_of(L, b) + log_off, L->stride);
    }
    uint64_t first_seq = P->msg_seq, size, cs;
    if (write_payload(L, P, log_of(L, b) + log_off, &size, &cs) != 0) return STEP_DONE;
    cxl_batch_hdr_t *h = slot_at(L, b, P->abs);
    const uint64_t cbs = pub_client_seq(L, P);
    write_header(L, P, h, size, cs, first_seq, log_off, now, cbs);
    if (L->cfg.slot_timeout_ns) {
        pub_lease(L, P, 0);
        cxl_mfence(); /* token and lease out before the scanner's loss line is read */
        pub_check_given_up(L, P, P->abs);
    }
    record_publish(L, P, now, size, cs, cbs);
    P->k++;
    P->last_ns = now;
    P->last_abs = P->abs;
    P->done++;
    P->have_slot = 0;
    if (L->cfg.ack_level && L->rec[CXL_REC_ACK].data && (P->done & 15) == 0) poll_ack(L, P);
    return STEP_PROGRESS;
}
