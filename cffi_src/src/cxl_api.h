/* cxl_api.h -- the C API that Python drives through cffi. This file is also the cffi cdef:
 * keep it to plain typedefs and prototypes (lines starting with '#' are stripped). */
#ifndef CXL_API_H
#define CXL_API_H
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- CPU and primitives */
uint64_t cxl_now_ns(void);
int cxl_cpu_flush_support(void);
int cxl_select_flush(int requested);
int cxl_flush_kind(void);
double cxl_calibrate_tsc(unsigned ms);
double cxl_tsc_per_ns(void);


/* ---------------------------------------------------------------- device model */
/* Target costs of an emulated device (see cxl_seam.h). 0 = that cost is not modelled. */
typedef struct cxl_devmodel_cfg {
    double load_ns;          /* first line read after an invalidate */
    double flush_fence_ns;   /* flush + fence of one line */
    double write_gbps;       /* write channel bandwidth (copies into the region) */
    double read_gbps;        /* read channel bandwidth (lines read after an invalidate) */
    double window_us;        /* utilisation window of the load curve */
    uint32_t curve_n;        /* points in the curve, 0..8 */
    double curve_util[8];    /* utilisation (0..4), ascending */
    double curve_mult[8];    /* latency multiplier (>= 1) at that utilisation */
    int host_flush;          /* also issue the host's flush instruction */
    int invalidate_flushes;  /* non-coherent hardware: invalidate flushes the line */
} cxl_devmodel_cfg_t;

/* What the model did, per operation kind: 0 load after invalidate (lines read), 1 fence
 * closing flushes, 2 copy into the region. */
typedef struct cxl_devmodel_stats {
    uint64_t ops[3];
    uint64_t ops_short[3];   /* the host alone took longer than the target */
    uint64_t ops_queued[3];  /* waited for the channel, busy with another agent's transfer */
    double short_ns[3];      /* total by which it did */
    double target_ns[3];     /* total target cost paid */
    double utilisation;      /* of the last closed window */
    double multiplier;       /* latency multiplier now in force */
} cxl_devmodel_stats_t;

/* ---------------------------------------------------------------- regions */
typedef struct cxl_region {
    void *base;
    uint64_t size;
    uint64_t align;
    int fd;
    int backend;      /* 1 emulated, 2 file, 3 devdax, 4 numa */
    int numa_node;
    int hugepages;    /* 1 if backed by huge pages (or THP advised) */
    int locked;       /* 1 if an advisory lock is held on fd */
    int created;      /* 1 if this call created the file */
    void *model;      /* the device model attached to the region, or NULL */
} cxl_region_t;

int cxl_region_map_anon(cxl_region_t *r, uint64_t size, int hugepages);
int cxl_region_map_file(cxl_region_t *r, const char *path, uint64_t size, int create, int lock);
int cxl_region_map_devdax(cxl_region_t *r, const char *path, uint64_t size, uint64_t align,
                          int lock);
int cxl_region_map_numa(cxl_region_t *r, uint64_t size, int node);
void cxl_region_unmap(cxl_region_t *r);
/* Attach a device model to a mapped region (once; -EINVAL bad figures, -EBUSY already has
 * one, -ENOSPC too many modelled regions, -ENOMEM). The model is freed with the region. */
int cxl_region_set_model(cxl_region_t *r, const cxl_devmodel_cfg_t *cfg);
/* Put the model's channel state (write and read channels' free-at times, the utilisation
 * window, the latency multiplier) in a shared mapping of the regular file fd, so that every
 * process that attaches it to its model of the same device shares one bandwidth cap and one
 * utilisation. create = 1: the file must be empty; it is sized (one page) and initialised
 * (the coordinator, before it starts the others); 0: attach an initialised one (its size,
 * magic and version are checked: -EPROTO otherwise). Before any agent runs on the region.
 * -EINVAL, -ENOENT (no model), -EBUSY (shared already), -EEXIST, -errno (fstat, mmap). */
int cxl_region_model_share(cxl_region_t *r, int fd, int create);
int cxl_region_model_stats(const cxl_region_t *r, cxl_devmodel_stats_t *out); /* -ENOENT: none */
void cxl_region_model_reset(cxl_region_t *r);  /* statistics and channel state to zero */
/* Characterisation only: with unpadded = 1 the region's model does every operation as it
 * does (the invalidate's fetch, the host's flush or not) but pads none of them, so what an
 * operation then costs is the host's own floor under the model; 0 restores the targets.
 * No agent may run on the region meanwhile. -ENOENT: no model. */
int cxl_region_model_unpadded(cxl_region_t *r, int unpadded);
/* The seam's own cost on a region without a model (op 0 fence, 1 invalidate + load, 2 64-byte
 * copy in, 3 flush + fence), through the seam (seam = 1) or the raw primitive; ns for iters. */
uint64_t cxl_dm_bench_guard(void *buf, uint64_t lines, uint64_t iters, int op, int seam);

/* Seam-level helpers used by tests and characterisation (they go through the seam). */
void cxl_seam_write(void *dst, const void *src, uint64_t n, int nt);
void cxl_seam_persist(const void *p, uint64_t n);
void cxl_seam_read(void *dst, const void *src, uint64_t n);

/* ---------------------------------------------------------------- micro-benchmarks */
uint64_t cxl_bench_flush_calls(void *buf, uint64_t lines, uint64_t iters);
uint64_t cxl_bench_fence_calls(uint64_t iters);
uint64_t cxl_bench_inval_calls(const void *buf, uint64_t lines, uint64_t iters);
uint64_t cxl_bench_store_flush_fence(void *buf, uint64_t lines, uint64_t lines_per_fence,
                                     uint64_t iters);
/* Write `bytes` into dst in `chunk`-byte copies whose source cycles through a small (cache
 * resident) buffer, as the log's publishers copy from their payload pool; ns for `iters`. */
uint64_t cxl_bench_write(void *dst, uint64_t bytes, const void *src, uint64_t src_bytes,
                         uint64_t chunk, int nt, uint64_t iters);
/* `writers` threads (the caller and writers-1 started here, 16 at most) each write `per`
 * bytes into consecutive parts of dst, released together by a spin barrier (writer i starts
 * i * stagger_ns later: tests plant a start skew with it; 0 otherwise). out[0]: ns from the
 * first start to the last finish; out[1]: ns between the first and the last start; out[2]:
 * ns all of them were writing at once; out[3]: the bytes they wrote together in that time.
 * 0, or -EINVAL/-EOVERFLOW/-E2BIG (over 4M chunks each)/-ENOMEM/-EAGAIN/-ETIMEDOUT. */
int cxl_bench_write_together(void *dst, uint64_t per, const void *src, uint64_t src_bytes,
                             uint64_t chunk, int nt, uint32_t writers, uint64_t stagger_ns,
                             uint64_t *out);
uint64_t cxl_bench_copy(void *dst, const void *src, uint64_t bytes, uint64_t chunk, int nt,
                        uint64_t iters);
uint64_t cxl_bench_pointer_chase(void *buf, uint64_t bytes, uint64_t steps, uint64_t seed);
uint64_t cxl_bench_inval_reload(void *buf, uint64_t lines, uint64_t iters);
/* Ctrl-C: every benchmark loop above ends within 4096 iterations once asked (its figure is
 * then meaningless); cleared before the next measurement. */
void cxl_bench_request_stop(void);
void cxl_bench_clear_stop(void);

/* ---------------------------------------------------------------- the shared log */
typedef struct cxl_log_cfg {
    uint32_t brokers;
    uint32_t publishers_per_broker;
    uint32_t subscribers;
    uint32_t order;          /* 0, 2 or 5 (Order 2 plus per-client FIFO) */
    uint32_t variant;        /* 0 per-scanner buffers, 1 shared mutex (the seed's "before") */
    uint32_t ack_level;      /* 0, 1, 2 */
    uint32_t pbr_slots;      /* power of two */
    uint32_t msg_size;       /* payload bytes per message */
    uint32_t msgs_per_batch;
    uint32_t epoch_us;
    uint64_t goi_slots;      /* power of two */
    uint64_t batches_per_publisher;
    uint64_t seed;
    uint32_t flags;          /* CXL_F_* below */
    uint32_t fault;          /* planted defect (checked build), 0 = none */
    uint64_t slot_timeout_ns;  /* resolve a claimed-never-committed slot as lost after this */
    uint64_t watchdog_ns;      /* report a stall when nothing progresses for this long */
    uint64_t record_capacity;  /* per record array; 0 = no per-batch records */
    uint32_t crash_client;     /* crash injection: publisher index + 1 that dies mid-batch; 0 none */
    uint32_t crash_kill;       /* 1: it SIGKILLs its own process; 0: its thread stops */
    uint64_t crash_after;      /* batches that publisher completes before it dies (scanner: ring
                                * slots it scans; subscriber: batches it delivers) */
    uint32_t crash_scanner;    /* crash injection: broker + 1 whose scanner stops mid-epoch (Order
                                * 2; its thread stops, never its process: the sequencer shares it) */
    uint32_t crash_subscriber; /* crash injection: subscriber index + 1 that dies mid-chunk */
    /* Order 5 (per-client FIFO); ignored at other levels */
    uint32_t gap_policy;       /* a gap older than gap_timeout_ns: 0 declared-lost markers, 1 fence */
    uint32_t client_spread;    /* brokers one client's batches are spread over (1 = its own) */
    uint64_t gap_timeout_ns;   /* 0 = 5 ms */
    uint32_t hold_cap;         /* batches the sequencer may hold out of order; 0 = default */
    uint32_t gap_client;       /* planted gap: client + 1 whose batch gap_seq is never sent */
    uint64_t gap_seq;
    uint64_t beat_bytes;       /* with leases: a publisher beats after this much payload; 0 = 256 KiB */
} cxl_log_cfg_t;

/* flags */
enum {
    CXL_F_NT_COPY = 1,          /* non-temporal payload copy */
    CXL_F_FENCE_PER_LINE = 2,   /* ablation: one fence per header line instead of one per two */
    CXL_F_RESERVE_PER_BATCH = 4,/* ablation: one reservation per batch instead of per epoch */
    CXL_F_EXTRA_FENCE = 8,      /* planted slowdown: an extra fence per message */
    CXL_F_DETERMINISTIC = 16,   /* single thread, seeded scheduler (checked build) */
    CXL_F_NO_VERIFY = 32,       /* subscribers skip payload verification */
    CXL_F_RESUME = 64,          /* subscribers resume from the position in their line */
    CXL_F_TAKE_OVER = 128       /* take over a sequencer/scanner lease held by another host */
};

/* roles for cxl_log_run */
enum {
    CXL_ROLE_PUBLISHERS = 1,
    CXL_ROLE_SCANNERS = 2,      /* scanners + epoch sequencer (Order 2) or ackers (Order 0) */
    CXL_ROLE_SUBSCRIBERS = 4,
    CXL_ROLE_ALL = 7
};

typedef struct cxl_log_stats {
    uint64_t batches_published;
    uint64_t messages_published;
    uint64_t bytes_published;     /* payload bytes */
    uint64_t batches_ordered;
    uint64_t messages_ordered;
    uint64_t batches_acked;
    uint64_t messages_acked;
    uint64_t batches_lost;
    uint64_t first_publish_ns;
    uint64_t last_publish_ns;
    uint64_t last_ack_ns;
    uint64_t end_ns;
    uint64_t epochs;
    uint64_t reservations;
    uint64_t backpressure_waits;
    uint64_t committed_seq;
    uint64_t sub_batches[8];
    uint64_t sub_messages[8];
    uint64_t sub_hash[8];
    uint64_t sub_checksum_errors[8];
    uint64_t sub_order_errors[8];
    uint64_t sub_last_ns[8];
    uint64_t corrupt_headers;     /* PBR headers that failed validation */
    uint64_t corrupt_goi;         /* GOI entries that failed validation */
    uint64_t corrupt_ctrl;        /* control-block values out of range */
    uint64_t foreign_tokens;      /* tokens that match neither this lap nor the last */
    uint64_t committed_regressions;
    uint64_t ack_ahead;           /* ACK frontier seen ahead of what was ordered */
    uint64_t order_gaps;          /* per-broker order or density broken at the sequencer */
    uint64_t stalled;             /* watchdog fired: nothing progressed for watchdog_ns */
    uint64_t stall_role;          /* roles still running when it fired */
    uint64_t lat_hist[768];       /* publish-to-commit latency, log-linear ns buckets */
    uint64_t lost_by_broker[8];   /* slots declared lost, per broker */
    uint64_t published_by_broker[8];
    uint64_t ordered_by_broker[8];  /* batches ordered (Order 2: by this sequencer; 0: acked)*/
    uint64_t lost_late_commits;   /* declared-lost slots whose live publisher committed them */
    uint64_t corrupt_listed;      /* distinct corrupt (location, value) pairs listed below */
    uint64_t corrupt_off[8];      /* the first few: region offset, value read, kind */
    uint64_t corrupt_val[8];
    uint64_t corrupt_kind[8];     /* 0 header, 1 GOI entry, 2 control value, 3 foreign token */
    /* crash injection and the detection of dead roles (slot_timeout_ns > 0) */
    uint64_t crash_ns;            /* when the injected crash happened (0: not in this process) */
    uint64_t crash_detect_ns;     /* when a dead role was first detected */
    uint64_t scanners_dead;       /* brokers whose scanner the sequencer found dead (bit each) */
    uint64_t subscribers_dead;    /* subscribers the sequencer found dead (bit each) */
    uint64_t batches_orphaned;    /* committed batches of a dead scanner's broker, declared lost */
    uint64_t dead_sub_pos[8];     /* a dead subscriber's last published GOI position */
    /* Order 5 */
    uint64_t o5_held;             /* batches held for an earlier one of their client */
    uint64_t o5_hold_max;         /* hold buffer occupancy: highest */
    uint64_t o5_hold_sum;         /* sum of the occupancy after each sequencer step that held */
    uint64_t o5_hold_samples;     /* those steps */
    uint64_t o5_hold_full;        /* steps that stopped because the hold buffer was full */
    uint64_t o5_late;             /* duplicate or late batches (seq below next_expected): dropped */
    uint64_t o5_markers;          /* client batches declared lost (GOI markers written) */
    uint64_t o5_fences;           /* client sessions fenced */
    uint64_t o5_fenced_rejects;   /* batches of a fenced session: never ordered */
    uint64_t sub_markers[8];      /* markers each subscriber passed over */
    uint64_t sub_client_order_errors[8]; /* per-client FIFO broken at delivery (Order 5) */
    uint64_t o5_line_mismatch;    /* client session lines that disagree with the sequencer's
                                     table (read back after the run, where the sequencer ran) */
} cxl_log_stats_t;

/* Per-batch records (only when record_capacity > 0). */
typedef struct cxl_rec_publish {
    uint64_t publish_ns;
    uint64_t pbr_index;
    uint64_t client_batch_seq;
    uint64_t checksum;
    uint32_t broker;
    uint32_t client;
    uint32_t msg_count;
    uint32_t size;
} cxl_rec_publish_t;

typedef struct cxl_rec_order {
    uint64_t seq;
    uint64_t pbr_index;
    uint64_t commit_ns;
    uint64_t first_msg_order;
    uint64_t client_batch_seq;
    uint32_t broker;
    uint32_t msg_count;
    uint32_t client;
    uint32_t kind;    /* 0 batch ordered, 1 declared-lost marker (seq = its position, no
                         broker), 2 session fence (client_batch_seq = committed_through) */
} cxl_rec_order_t;

typedef struct cxl_rec_frontier {
    uint64_t ns;
    uint64_t value;
    uint64_t value2;  /* acks: the frontier in messages; resumes: the broker (Order 0) */
    uint32_t who;     /* broker (acks) or observer (commits) */
    uint32_t kind;    /* ack level, or 0 = sequencer write / 1+k = subscriber k read /
                         CXL_RESUME_KIND + k = subscriber k resumed at position `value` */
} cxl_rec_frontier_t;
enum { CXL_RESUME_KIND = 64 };  /* in the commit records: a subscriber's resume */

typedef struct cxl_rec_deliver {
    uint64_t pos;
    uint64_t pbr_index;
    uint64_t checksum;   /* recomputed from the bytes read */
    uint64_t ns;
    uint64_t client_batch_seq;
    uint32_t broker;
    uint32_t client;
    uint32_t size;
    uint32_t msg_count;
    uint64_t committed;  /* the committed_seq the subscriber had read before this entry */
} cxl_rec_deliver_t;

typedef struct cxl_rec_loss {
    uint64_t ns;
    uint64_t pbr_index;
    uint32_t broker;
    uint32_t reason;  /* 1 timeout (claimed, publisher stopped), 2 corrupt header; Order 5, the
                         sequencer: 3 batch of a fenced session, 4 late or duplicate batch; 5
                         committed but never ordered (its broker's scanner stopped) */
    uint32_t client;  /* the publisher that held the slot; 0xffffffff unknown */
    uint32_t alive;   /* 1: that publisher committed it after all (a false loss) */
} cxl_rec_loss_t;

enum {
    CXL_REC_PUBLISH = 0,
    CXL_REC_ORDER = 1,
    CXL_REC_COMMIT = 2,
    CXL_REC_ACK = 3,
    CXL_REC_LOSS = 4,
    CXL_REC_DELIVER = 5  /* + subscriber index */
};

typedef struct cxl_log cxl_log_t;

uint64_t cxl_layout_size(const cxl_log_cfg_t *cfg);
int cxl_layout_init(void *base, uint64_t size, const cxl_log_cfg_t *cfg);
int cxl_layout_attach(const void *base, uint64_t size, const cxl_log_cfg_t *cfg, char *err,
                      size_t errlen);
cxl_log_t *cxl_log_new(void *base, uint64_t size, const cxl_log_cfg_t *cfg, char *err,
                       size_t errlen);
int cxl_log_run(cxl_log_t *log, uint32_t roles);
/* Run a subset: publishers of the brokers in pub_brokers (bit per broker), subscribers in
 * sub_mask (bit per subscriber), scanners + sequencer if roles has CXL_ROLE_SCANNERS. */
int cxl_log_run_subset(cxl_log_t *log, uint32_t roles, uint32_t pub_brokers, uint32_t sub_mask);
void cxl_log_request_stop(cxl_log_t *log);

/* Where the roles of the last run ran: kind (0 publisher, 1 scanner/acker, 2 sequencer,
 * 3 subscriber), agent id, worker thread (the role's own thread when workers == 0) and the
 * CPU it was pinned to (-1: not pinned). */
#define CXL_MAX_WORKERS 64
#define CXL_MAX_ROLES 544 /* 8 brokers x 64 publishers + scanners, sequencer, subscribers */
typedef struct {
    int kind;
    int agent;
    int worker;
    int cpu;
} cxl_placement_t;
/* When a later run has more roles than `workers`, run it on `workers` threads that step
 * several roles each, worker w pinned to cpus[w % ncpus] (ncpus 0: no pinning); otherwise,
 * and with workers 0, a thread per role. -1 on an impossible request. */
int cxl_log_set_workers(cxl_log_t *log, uint32_t workers, const int *cpus, uint32_t ncpus);
uint32_t cxl_log_placement(const cxl_log_t *log, cxl_placement_t *out, uint32_t max);
uint32_t cxl_log_max_workers(void);
/* The reason of the last refused run (cxl_log_run* returned -2), or "". */
const char *cxl_log_error(const cxl_log_t *log);
void cxl_log_stats(const cxl_log_t *log, cxl_log_stats_t *out);
uint64_t cxl_log_progress(const cxl_log_t *log);
int cxl_log_records(const cxl_log_t *log, int kind, void **ptr, uint64_t *count,
                    uint64_t *elem_size);
void cxl_log_free(cxl_log_t *log);
uint64_t cxl_checksum_bytes(const void *p, uint64_t n, uint64_t seed);

/* The fault catalogue: planted defects, by id (1..count); 0 is "no fault". */
uint32_t cxl_fault_count(void);
const char *cxl_fault_name(uint32_t id);
const char *cxl_fault_doc(uint32_t id);
/* 1 when this module is the checked build (seam recorded and modelled). */
int cxl_is_checked(void);

/* ---------------------------------------------------------------- numbers Python reads */
/* harness/native.py builds its IntEnums and limits from these: Python never re-declares a
 * number the core defines. */
enum { CXL_KIND_PUBLISHER = 0, CXL_KIND_SCANNER = 1, CXL_KIND_SEQUENCER = 2, CXL_KIND_SUBSCRIBER = 3 };
/* cxl_rec_loss_t.reason; FENCED and LATE: Order 5's sequencer resolved the slot unordered;
 * ORPHAN: committed, never ordered, its broker's scanner stopped (crash injection) */
enum { CXL_LOSS_TIMEOUT = 1, CXL_LOSS_CORRUPT = 2, CXL_LOSS_FENCED = 3, CXL_LOSS_LATE = 4,
       CXL_LOSS_ORPHAN = 5 };
enum { CXL_GAP_MARKERS = 0, CXL_GAP_FENCE = 1 };  /* cxl_log_cfg_t.gap_policy (Order 5) */
enum { CXL_ORDER_BATCH = 0, CXL_ORDER_MARKER = 1, CXL_ORDER_FENCE = 2 };  /* cxl_rec_order_t.kind */
enum { CXL_BACKEND_EMULATED = 1, CXL_BACKEND_FILE = 2, CXL_BACKEND_DEVDAX = 3, CXL_BACKEND_NUMA = 4 };
enum { CXL_SEVERITY_WARNING = 1, CXL_SEVERITY_ERROR = 2 };  /* trace rules */
typedef struct cxl_limits {
    uint32_t max_brokers;
    uint32_t max_subscribers;
    uint32_t max_publishers_per_broker;
    uint32_t max_msgs_per_batch;
    uint32_t max_workers;
    uint32_t max_roles;
    uint32_t layout_version;
    uint32_t lat_buckets;
    uint64_t max_pbr_slots;
    uint64_t max_goi_slots;
    uint64_t max_batches;        /* per broker */
    uint64_t max_msg_size;
    uint64_t max_batch_log_bytes; /* log bytes one batch may take */
    uint64_t no_client;           /* "no publisher" in a loss record */
    uint64_t msg_header_bytes;
    uint64_t max_hold;            /* Order 5: the largest hold buffer bound */
    uint64_t session_shift;       /* Order 5: client_batch_seq words carry the session above it */
    uint64_t max_session;
} cxl_limits_t;
void cxl_limits(cxl_limits_t *out);
/* Lower bound (ns) of commit-latency histogram bucket i (i == lat_buckets: the upper end). */
uint64_t cxl_lat_bucket_low(uint32_t i);
/* The role kind (CXL_KIND_*) of a model agent id and its index in that kind; -1 for none. */
int cxl_agent_kind(int agent, uint32_t *index);

#endif
