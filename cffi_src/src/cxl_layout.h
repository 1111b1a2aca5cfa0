/*
 * cxl_layout.h -- the versioned layout of a shared-log region. Offsets only, never pointers,
 * so processes (and hosts) may map the region at different addresses.
 *
 *   [control block: 8 lines][per-broker claim lines][per-broker sequencer lines]
 *   [per-subscriber lines][per-broker scanner lines][per-publisher lease lines]
 *   [Order 5: per-client session lines][per-broker PBR rings][per-broker logs][GOI ring]
 *
 * Single writer per cache line: each line below names its one writer.
 */
#ifndef CXL_LAYOUT_H
#define CXL_LAYOUT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define CXL_MAGIC 0x31474f4c4c5843ull /* "CXLLOG1" little-endian */
#define CXL_LAYOUT_VERSION 6u
#define CXL_MAX_BROKERS 8u
#define CXL_MAX_SUBS 8u
#define CXL_MSG_HDR 16u

/* Line 0 of the control block: geometry, written once by the creator before anyone attaches. */
typedef struct cxl_geom {
    uint64_t magic;
    uint32_t version;
    uint32_t order;
    uint64_t region_size;
    uint32_t brokers;
    uint32_t subscribers;
    uint32_t pbr_slots;      /* power of two */
    uint32_t batch_stride;   /* log bytes owned by one ring slot (64-byte multiple) */
    uint64_t goi_slots;      /* power of two */
    uint32_t max_msgs;       /* per batch */
    uint32_t msg_size;
    uint64_t geom_check;     /* hash of the fields above */
} cxl_geom_t;

/* Line 1: offsets of each area from the region base (creator, once). */
typedef struct cxl_offsets {
    uint64_t claim;
    uint64_t seqline;
    uint64_t subline;
    uint64_t pbr;
    uint64_t log;
    uint64_t log_bytes;      /* per broker = pbr_slots * batch_stride */
    uint64_t goi;
    uint64_t end;
} cxl_offsets_t;

/* Line 2: sequencer-owned. */
typedef struct cxl_seq_ctrl {
    uint64_t epoch;
    uint64_t committed_seq;  /* count: every GOI position < committed_seq is written and flushed */
    uint64_t lost_batches;   /* slots resolved as lost (crashed publisher, corrupt header) */
    uint64_t ordered_msgs;   /* total messages ordered */
    uint64_t heartbeat_ns;
    uint64_t done;
    uint64_t sub_dead;       /* subscribers the sequencer found dead (bit per subscriber): their
                              * released[] and goi_pos no longer hold the rings back */
    uint64_t pad;
} cxl_seq_ctrl_t;

/* Line 3: run control, written by the coordinator (the process that created the region). */
typedef struct cxl_run_ctrl {
    uint64_t start;
    uint64_t stop;
    uint64_t seed;
    uint64_t pad[5];
} cxl_run_ctrl_t;

/* Line 4: the global-sequence reservation counter, alone on its line (atomic RMW only). */
typedef struct cxl_reserve_line {
    uint64_t next_global;    /* one fetch-add per epoch */
    uint64_t pad[7];
} cxl_reserve_line_t;

/* Line 5: the protocol parameters every agent must share (creator, once), and the offsets of
 * the areas added in layout 4. */
typedef struct cxl_proto {
    uint32_t ack_level;
    uint32_t publishers_per_broker;
    uint64_t batches_per_publisher;
    uint32_t variant;
    uint32_t pad0;
    uint64_t scanline;       /* offset of the per-broker scanner lines */
    uint64_t publine;        /* offset of the per-publisher lease lines */
    uint64_t pad1[2];
    uint64_t proto_check;    /* hash of the fields above */
} cxl_proto_t;

/* An ownership lease (line 6 for the sequencer; in each scanner line for that scanner). The
 * owner word is taken with one compare-and-swap; the owner alone writes the rest, also with
 * atomic operations (the line is shared by design). A lease
 * whose owner process is gone (same host) is taken over; another host's lease only with
 * CXL_F_TAKE_OVER. The owner clears it when its run ends. */
typedef struct cxl_owner {
    uint64_t owner;          /* 0 = free; else the owner's nonce */
    uint64_t host;           /* the owner's host identity (boot id and pid namespace hash) */
    uint64_t pid;
    uint64_t since_ns;       /* when it took the lease (its own clock) */
} cxl_owner_t;

typedef struct cxl_seq_owner_line {
    cxl_owner_t o;
    uint64_t pad[4];
} cxl_seq_owner_line_t;

/* Line 7 (layout 5): the Order 5 parameters and the offset of the client session lines
 * (creator, once; all zero at other order levels). */
typedef struct cxl_order5 {
    uint64_t clientline;     /* offset of the per-client session lines */
    uint64_t clients;        /* lines there (one per publisher index; a client is named by the
                                index of its first publisher) */
    uint64_t gap_timeout_ns;
    uint32_t gap_policy;     /* 0 declared-lost markers, 1 session fencing */
    uint32_t hold_cap;
    uint32_t client_spread;
    uint32_t pad0;
    uint64_t pad1[2];
    uint64_t check;          /* hash of the fields above */
} cxl_order5_t;

typedef struct cxl_ctrl {
    cxl_geom_t geom;
    cxl_offsets_t off;
    cxl_seq_ctrl_t seq;
    cxl_run_ctrl_t run;
    cxl_reserve_line_t reserve;
    cxl_proto_t proto;
    cxl_seq_owner_line_t seq_owner;
    cxl_order5_t order5;
} cxl_ctrl_t;

/* Order 5: a client batch's client_batch_seq word carries its session epoch above bit 40
 * (in the PBR header, the GOI entry and the records alike). */
#define CXL_SESSION_SHIFT 40u
#define CXL_SEQ_MASK ((1ull << CXL_SESSION_SHIFT) - 1u)
#define CXL_MAX_SESSION 0xffffu
#define CXL_MAX_HOLD (1u << 20) /* the largest hold buffer bound */
/* A GOI entry whose broker is CXL_GOI_MARKER is a declared-lost marker: no batch, no
 * payload; client and client_batch_seq name the client batch declared lost. */
#define CXL_GOI_MARKER 0xffffffffu

/* Order 5, per client: written only by the sequencer (flushed and fenced before the
 * committed_seq that covers what it says); read by the client's publishers (the fence) and by
 * a sequencer that takes over. */
typedef struct cxl_client_line {
    uint64_t session;          /* the client's current session epoch */
    uint64_t next_expected;    /* next client_batch_seq of that session to be ordered */
    uint64_t fenced_through;   /* at the last fence: the old session's batches below it are
                                  committed, none at or above it ever will be */
    uint64_t markers;          /* client batches declared lost */
    uint64_t fences;
    uint64_t late;             /* late or duplicate batches dropped */
    uint64_t pad[2];
} cxl_client_line_t;

/* Per broker, shared by that broker's publishers: the slot claim counter (atomic RMW only). */
typedef struct cxl_claim_line {
    uint64_t claimed;
    uint64_t pad[7];
} cxl_claim_line_t;

/* Per broker, sequencer-owned (in Order 0 the broker's acker owns it). */
typedef struct cxl_seq_line {
    uint64_t consumed_through; /* ring slots below this may be reused (as far as ordering goes) */
    uint64_t ordered_batches;  /* ACK-1 frontier, in ring slots resolved (ordered or lost) */
    uint64_t ordered_msgs;     /* ACK-1 frontier, cumulative messages */
    uint64_t durable_batches;  /* ACK-2 frontier */
    uint64_t durable_msgs;
    uint64_t lost_batches;
    uint64_t pad[2];
} cxl_seq_line_t;

/* Per broker, written only by its scanner (the acker in Order 0): its ownership lease and the
 * slots it declared lost most recently, so a slow publisher can tell its batch was given up. */
#define CXL_LOST_RING 7u
typedef struct cxl_scan_line {
    cxl_owner_t o;             /* line 0: the lease */
    uint64_t beat;             /* advanced while the scanner runs (slot_timeout_ns > 0) */
    uint64_t ident;            /* pid | tid << 32 of the scanner's thread; 0 = unknown */
    uint64_t pad[2];
    uint64_t lost_count;       /* line 1: slots declared lost so far */
    uint64_t lost_ring[CXL_LOST_RING]; /* slot + 1 of the last ones, at lost_count % 7 */
} cxl_scan_line_t;

/* Per publisher, written only by that publisher: what it holds and a beat that moves while it
 * works, so a scanner tells a crashed publisher from a slow one. */
typedef struct cxl_pub_line {
    uint64_t holding;          /* ring slot + 1 claimed and not yet committed; 0 = none */
    uint64_t beat;             /* advanced while the publisher writes a batch */
    uint64_t host;             /* host identity (boot id hash); 0 = unknown */
    uint64_t ident;            /* pid | tid << 32; tid 0 = no OS identity (deterministic runner) */
    uint64_t pad[4];
} cxl_pub_line_t;

/* Per subscriber: two lines, both written only by that subscriber. */
typedef struct cxl_sub_line {
    uint64_t goi_pos;          /* next GOI position to deliver (Order 2) */
    uint64_t delivered_batches;
    uint64_t heartbeat_ns;
    uint64_t beat;             /* advanced while the subscriber runs (slot_timeout_ns > 0) */
    uint64_t host;             /* host identity; 0 = unknown */
    uint64_t ident;            /* pid | tid << 32 of the subscriber's thread; 0 = unknown */
    uint64_t pad[2];
    uint64_t released[CXL_MAX_BROKERS]; /* per broker: ring slots whose payload is read */
} cxl_sub_line_t;

/* A pending-batch-ring slot: 128 bytes. Line 0 = identity, line 1 = location + token. */
typedef struct cxl_batch_hdr {
    /* line 0 */
    uint64_t slot_abs;         /* absolute ring index (identity) */
    uint32_t broker;
    uint32_t client;
    uint64_t client_batch_seq;
    uint32_t msg_count;
    uint32_t flags;
    uint64_t publish_ns;
    uint64_t first_msg_seq;    /* the publisher's message sequence of the first message */
    uint64_t reserved0[2];
    /* line 1 */
    uint64_t log_offset;       /* from the broker's log base */
    uint64_t size;             /* bytes, headers included */
    uint64_t checksum;
    uint64_t reserved1[4];
    uint64_t token;            /* == slot_abs + 1 when this lap's record is complete */
} cxl_batch_hdr_t;

/* A global-order-index entry: one line, token (global seq + 1) written last. */
typedef struct cxl_goi_entry {
    uint64_t first_msg_order;  /* total order of the batch's first message */
    uint64_t log_offset;
    uint64_t pbr_index;
    uint64_t client_batch_seq;
    uint32_t broker;
    uint32_t client;
    uint32_t size;
    uint32_t msg_count;
    uint64_t checksum;
    uint64_t token;
} cxl_goi_entry_t;

/* A message in the log: this header, then the payload; stride rounded up to 64 bytes. */
typedef struct cxl_msg_hdr {
    uint32_t size;
    uint32_t client;
    uint64_t msg_seq;
} cxl_msg_hdr_t;

static_assert(sizeof(cxl_geom_t) == 64, "geometry is one line");
static_assert(sizeof(cxl_offsets_t) == 64, "offsets are one line");
static_assert(sizeof(cxl_seq_ctrl_t) == 64, "sequencer control is one line");
static_assert(sizeof(cxl_run_ctrl_t) == 64, "run control is one line");
static_assert(sizeof(cxl_proto_t) == 64, "protocol line");
static_assert(sizeof(cxl_seq_owner_line_t) == 64, "sequencer owner line");
static_assert(sizeof(cxl_order5_t) == 64, "Order 5 line");
static_assert(sizeof(cxl_ctrl_t) == 512, "control block is eight lines");
static_assert(offsetof(cxl_ctrl_t, order5) == 448, "Order 5 line at 448");
static_assert(sizeof(cxl_client_line_t) == 64, "client session line");
static_assert(sizeof(cxl_scan_line_t) == 128, "scanner line pair");
static_assert(offsetof(cxl_scan_line_t, lost_count) == 64, "lost ring on its own line");
static_assert(sizeof(cxl_pub_line_t) == 64, "publisher lease line");
static_assert(offsetof(cxl_scan_line_t, beat) == 32, "scanner beat after the lease");
static_assert(offsetof(cxl_sub_line_t, beat) == 24, "subscriber beat in line 0");
static_assert(offsetof(cxl_seq_ctrl_t, sub_dead) == 48, "dead-subscriber mask in the sequencer line");
static_assert(offsetof(cxl_ctrl_t, reserve) == 256, "reservation line at 256");
static_assert(offsetof(cxl_ctrl_t, seq) == 128, "sequencer line at 128");
static_assert(sizeof(cxl_claim_line_t) == 64, "claim line");
static_assert(sizeof(cxl_seq_line_t) == 64, "sequencer line");
static_assert(sizeof(cxl_sub_line_t) == 128, "subscriber lines");
static_assert(offsetof(cxl_sub_line_t, released) == 64, "released[] on its own line");
static_assert(sizeof(cxl_batch_hdr_t) == 128, "batch header is two lines");
static_assert(offsetof(cxl_batch_hdr_t, log_offset) == 64, "location starts line 1");
static_assert(offsetof(cxl_batch_hdr_t, token) == 120, "token is the last word of line 1");
static_assert(sizeof(cxl_goi_entry_t) == 64, "GOI entry is one line");
static_assert(offsetof(cxl_goi_entry_t, token) == 56, "GOI token is the last word");
static_assert(sizeof(cxl_msg_hdr_t) == CXL_MSG_HDR, "message header");

#endif
