"""What to run: the log's configuration and the C core's numbers it is made of.

Importing this module loads nothing heavy (no numpy; the C core's constants only): the
command line's parsers and the pytest plugin's option checks use it at start-up.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from harness.errors import ConfigError
from harness.limits import MAX_BROKERS as MAX_BROKERS
from harness.limits import MAX_SUBSCRIBERS as MAX_SUBSCRIBERS
from harness.native import LIMITS, Flag, LossReason, Rec, Role, RoleKind
from harness.order5 import GAP_POLICIES, MAX_HOLD

if TYPE_CHECKING:
    from harness.profiles import Profile

VARIANTS = {"per-scanner": 0, "shared-mutex": 1}
SCHEDULING = ("workers", "threads")
RECORD_LIMIT = 2_000_000  # batches: above this, records are off unless asked for
# the core's numbers (harness.native), as plain ints by the names the rest of the harness uses:
# they travel through JSON and execnet channels
ROLE_PUBLISHERS, ROLE_SCANNERS, ROLE_SUBSCRIBERS, ROLE_ALL = (
    int(Role.PUBLISHERS), int(Role.SCANNERS), int(Role.SUBSCRIBERS), int(Role.ALL))
ROLE_KIND_NAMES = {int(k): k.name.lower() for k in RoleKind}  # cxl_placement_t.kind
F_NT_COPY, F_FENCE_PER_LINE, F_RESERVE_PER_BATCH, F_EXTRA_FENCE = (
    int(Flag.NT_COPY), int(Flag.FENCE_PER_LINE), int(Flag.RESERVE_PER_BATCH), int(Flag.EXTRA_FENCE))
F_DETERMINISTIC, F_NO_VERIFY, F_RESUME, F_TAKE_OVER = (
    int(Flag.DETERMINISTIC), int(Flag.NO_VERIFY), int(Flag.RESUME), int(Flag.TAKE_OVER))
REC_PUBLISH, REC_ORDER, REC_COMMIT, REC_ACK, REC_LOSS, REC_DELIVER = (
    int(Rec.PUBLISH), int(Rec.ORDER), int(Rec.COMMIT), int(Rec.ACK), int(Rec.LOSS), int(Rec.DELIVER))
LOSS_TIMEOUT, LOSS_CORRUPT = int(LossReason.TIMEOUT), int(LossReason.CORRUPT)
MAX_ROLES = LIMITS.max_roles  # placement entries the core keeps
MAX_PBR_SLOTS = LIMITS.max_pbr_slots
MAX_GOI_SLOTS = LIMITS.max_goi_slots
MAX_BATCHES = LIMITS.max_batches  # per broker
MAX_PUBLISHERS_PER_BROKER = LIMITS.max_publishers_per_broker
NO_CLIENT = LIMITS.no_client


@dataclass(frozen=True)
class LogConfig:
    """What to run. Sizes in bytes; ``total_bytes`` is payload across all brokers."""

    order: int = 2
    variant: str = "per-scanner"
    brokers: int = 4
    publishers_per_broker: int = 1
    subscribers: int = 0
    msg_size: int = 1024
    batch_bytes: int = 65536
    total_bytes: int = 64 << 20
    ack: int = 1
    epoch_us: int = 50
    pbr_slots: int = 256
    goi_slots: int = 1 << 14
    nt_copy: bool = True
    fence_per_line: bool = False
    reserve_per_batch: bool = False
    extra_fence: bool = False
    verify: bool = True
    seed: int = 1
    record: bool | None = None  # None: record when the run is small enough
    slot_timeout_ms: float = 0.0  # resolve a claimed, never committed slot as lost after this
    # with slot timeouts: a publisher's lease beats after this much payload (0: 256 KiB), so a
    # long copy is not taken for a dead one; small values let a small model run reach the beat
    beat_bytes: int = 0
    watchdog_s: float = 30.0
    processes: bool = False
    resume_subscribers: bool = False  # a restarted subscriber continues from its published position
    # "workers": when roles outnumber the allowed CPUs, a bounded set of pinned threads (one
    # per allowed CPU) steps several roles each; "threads": one thread per role (upstream).
    scheduling: str = "workers"
    # crash injection: publisher `crash_publisher` dies in the middle of its batch number
    # `crash_after` (its thread stops; with crash_kill its whole process is SIGKILLed)
    crash_publisher: int = -1
    crash_after: int = 0
    crash_kill: bool = False
    # the scanner of broker `crash_scanner` stops mid-epoch after scanning `crash_after` slots
    # (Order 2; its thread, never its process: the sequencer shares it). The sequencer finds it
    # dead (slot_timeout_ms) and declares that broker's later batches lost, by identity.
    crash_scanner: int = -1
    # subscriber `crash_subscriber` dies mid-chunk after delivering `crash_after` batches (its
    # thread stops; with crash_kill its process is SIGKILLed). The sequencer finds it dead
    # (slot_timeout_ms) and the rings no longer wait for it.
    crash_subscriber: int = -1
    # publishers whose batches may be declared lost: crashed on purpose (crash_publisher is
    # always included). A loss of any other publisher's batch fails the run.
    expect_lost_from: tuple[int, ...] = ()
    take_over: bool = False  # take over a sequencer/scanner lease another host holds
    # Order 5 (per-client FIFO): how a gap older than gap_timeout_ms is resolved ("markers":
    # the missing batches are declared lost in the log; "fence": the client's session is
    # fenced at its committed high-water mark and it continues in a new session), the
    # sequencer's hold buffer bound (0: one ring of every broker, which a run never fills),
    # and over how many brokers one client's batches are spread (its publishers there). The
    # timeout must exceed the longest stall of a live broker: a shorter one declares batches of
    # a live client lost (upstream's 5 ms suits a dedicated host, not a shared two-core one).
    gap_policy: str = "markers"
    gap_timeout_ms: float = 1000.0
    hold_cap: int = 0
    client_spread: int = 1
    # planted gap (Order 5): client `gap_client` never sends its batch `gap_seq`
    gap_client: int = -1
    gap_seq: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "expect_lost_from", tuple(self.expect_lost_from))
        _require(self.order in (0, 2, 5), "order", self.order,
                 "0 (per-broker), 2 (total order) or 5 (total order with per-client FIFO)")
        _require(self.gap_policy in GAP_POLICIES, "gap_policy", self.gap_policy, " or ".join(GAP_POLICIES))
        _require(0.0 < self.gap_timeout_ms <= 3_600_000, "gap_timeout_ms", self.gap_timeout_ms,
                 "a positive time in ms, at most an hour")
        _require(self.beat_bytes == 0 or 64 <= self.beat_bytes <= 1 << 30, "beat_bytes", self.beat_bytes,
                 "0 (default, 256 KiB) or 64 bytes .. 1 GiB")
        _require(0 <= self.hold_cap <= MAX_HOLD, "hold_cap", self.hold_cap, f"0 (default) .. {MAX_HOLD}")
        _require(1 <= self.client_spread <= self.brokers and self.brokers % self.client_spread == 0,
                 "client_spread", self.client_spread,
                 f"a divisor of brokers={self.brokers} (1 = each client on its own broker)")
        _require(self.client_spread == 1 or self.order == 5, "client_spread", self.client_spread,
                 "1 unless order=5 (only Order 5 orders one client's batches across brokers)")
        _require(self.gap_client == -1 or (self.order == 5 and self.gap_client in self.clients),
                 "gap_client", self.gap_client, f"-1 (none) or, at order 5, a client of {self.clients}")
        _require(self.variant in VARIANTS, "variant", self.variant, "per-scanner or shared-mutex")
        _require(1 <= self.brokers <= MAX_BROKERS, "brokers", self.brokers, f"1..{MAX_BROKERS}")
        _require(1 <= self.publishers_per_broker <= 64, "publishers_per_broker",
                 self.publishers_per_broker, "1..64")
        _require(0 <= self.subscribers <= MAX_SUBSCRIBERS, "subscribers", self.subscribers,
                 f"0..{MAX_SUBSCRIBERS}")
        _require(1 <= self.msg_size <= 64 << 20, "msg_size", self.msg_size, "1 byte .. 64 MiB")
        _require(self.batch_bytes >= 1, "batch_bytes", self.batch_bytes, "at least one byte")
        _require(self.total_bytes >= 1, "total_bytes", self.total_bytes, "at least one byte")
        _require(self.ack in (0, 1, 2), "ack", self.ack, "0, 1 or 2")
        _require(1 <= self.epoch_us <= 1_000_000, "epoch_us", self.epoch_us, "1..1000000")
        _require(_pow2(self.pbr_slots) and 2 <= self.pbr_slots <= MAX_PBR_SLOTS, "pbr_slots",
                 self.pbr_slots, f"a power of two from 2 to 2^30 ({MAX_PBR_SLOTS})")
        _require(_pow2(self.goi_slots) and 2 <= self.goi_slots <= MAX_GOI_SLOTS, "goi_slots",
                 self.goi_slots, f"a power of two from 2 to 2^40 ({MAX_GOI_SLOTS})")
        _require(self.msgs_per_batch <= 65536, "batch_bytes", self.batch_bytes,
                 "at most 65536 messages per batch")
        _require(self.scheduling in SCHEDULING, "scheduling", self.scheduling,
                 " or ".join(SCHEDULING))
        _require(self.msgs_per_batch * ((16 + self.msg_size + 63) // 64 * 64) <= 1 << 30,
                 "batch_bytes", self.batch_bytes, "at most 1 GiB of log per batch")
        per_broker = self.batches_per_publisher * self.publishers_per_broker
        _require(per_broker <= MAX_BATCHES, "total_bytes", self.total_bytes,
                 f"at most 2^48 batches per broker (this is {per_broker})")
        _require(0.0 <= self.slot_timeout_ms <= 3_600_000, "slot_timeout_ms", self.slot_timeout_ms,
                 "0 (never declare a slot lost) .. 3600000")
        _require(0.0 < self.watchdog_s <= 86_400, "watchdog_s", self.watchdog_s, "a positive time, at most a day")
        _require(0 <= self.seed < 1 << 64, "seed", self.seed, "0 .. 2^64-1")
        npubs = self.brokers * self.publishers_per_broker
        _require(-1 <= self.crash_publisher < npubs, "crash_publisher", self.crash_publisher,
                 f"-1 (none) or a publisher index 0..{npubs - 1}")
        _require(-1 <= self.crash_scanner < self.brokers, "crash_scanner", self.crash_scanner,
                 f"-1 (none) or a broker index 0..{self.brokers - 1}")
        _require(-1 <= self.crash_subscriber < self.subscribers, "crash_subscriber", self.crash_subscriber,
                 f"-1 (none) or a subscriber index 0..{self.subscribers - 1}" if self.subscribers
                 else "-1 (the run has no subscriber)")
        crashes = sum(x >= 0 for x in (self.crash_publisher, self.crash_scanner, self.crash_subscriber))
        _require(crashes <= 1, "crash_publisher/crash_scanner/crash_subscriber",
                 (self.crash_publisher, self.crash_scanner, self.crash_subscriber), "one crash per run")
        limit = self.crash_after_limit
        _require(0 <= self.crash_after < limit, "crash_after", self.crash_after,
                 f"0..{limit - 1} ({self.crash_after_unit} the {self.crash_role or 'publisher'} "
                 "completes first)")
        if self.crash_scanner >= 0 or self.crash_subscriber >= 0:
            _require(self.order == 2, "order", self.order,
                     f"order 2: a dead {self.crash_role} is found and worked around by the sequencer")
            _require(self.slot_timeout_ms > 0, "slot_timeout_ms", self.slot_timeout_ms,
                     f"a positive timeout: a dead {self.crash_role} is declared dead after it")
        _require(not (self.crash_kill and self.crash_scanner >= 0), "crash_kill", self.crash_kill,
                 "False for a scanner crash (the scanners share their process with the sequencer)")
        _require(all(0 <= p < npubs for p in self.expect_lost_from), "expect_lost_from",
                 self.expect_lost_from, f"publisher indices 0..{npubs - 1}")

    @property
    def crash_role(self) -> str:
        """The role crashed on purpose ("" none)."""
        for role, index in (("publisher", self.crash_publisher), ("scanner", self.crash_scanner),
                            ("subscriber", self.crash_subscriber)):
            if index >= 0:
                return role
        return ""

    @property
    def crash_index(self) -> int:
        return max(self.crash_publisher, self.crash_scanner, self.crash_subscriber)

    @property
    def crash_after_limit(self) -> int:
        """One more than the largest ``crash_after`` the crashed role can reach."""
        if self.crash_scanner >= 0:
            return self.batches_per_publisher * self.publishers_per_broker
        if self.crash_subscriber >= 0:
            return self.total_batches
        return self.batches_per_publisher

    @property
    def crash_after_unit(self) -> str:
        return {"scanner": "ring slots", "subscriber": "batches delivered"}.get(self.crash_role, "batches")

    @property
    def orphaned_broker(self) -> int:
        """The broker whose scanner is crashed on purpose (its batches declared lost), or -1."""
        return self.crash_scanner

    @property
    def expected_lost_publishers(self) -> frozenset[int]:
        """Publishers whose batches may be declared lost (crashed on purpose)."""
        extra = {self.crash_publisher} if self.crash_publisher >= 0 else set()
        return frozenset(self.expect_lost_from) | extra

    @property
    def clients(self) -> list[int]:
        """Client ids: a client is named by the index of its first publisher (Order 5 spreads
        one client over ``client_spread`` brokers; otherwise each publisher is one)."""
        ppb, s = self.publishers_per_broker, self.client_spread
        return [b * ppb + j for b in range(0, self.brokers, s) for j in range(ppb)]

    def client_of(self, publisher: int) -> int:
        """The client a publisher index sends for."""
        ppb, s = self.publishers_per_broker, self.client_spread
        b = publisher // ppb
        return (b - b % s) * ppb + publisher % ppb

    @property
    def msgs_per_batch(self) -> int:
        return max(1, self.batch_bytes // self.msg_size)

    @property
    def batches_per_publisher(self) -> int:
        per_batch = self.msgs_per_batch * self.msg_size
        pubs = self.brokers * self.publishers_per_broker
        return max(1, math.ceil(self.total_bytes / (per_batch * pubs)))

    @property
    def total_batches(self) -> int:
        return self.batches_per_publisher * self.brokers * self.publishers_per_broker

    @property
    def recording(self) -> bool:
        return self.record if self.record is not None else self.total_batches <= RECORD_LIMIT

    def flags(self) -> int:
        f = F_NT_COPY if self.nt_copy else 0
        f |= F_FENCE_PER_LINE if self.fence_per_line else 0
        f |= F_RESERVE_PER_BATCH if self.reserve_per_batch else 0
        f |= F_EXTRA_FENCE if self.extra_fence else 0
        f |= 0 if self.verify else F_NO_VERIFY
        f |= F_RESUME if self.resume_subscribers else 0
        f |= F_TAKE_OVER if self.take_over else 0
        return f


def _pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def _require(ok: bool, name: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range", f"use {allowed}")


def config_json(cfg: LogConfig) -> str:
    """The configuration as JSON, the way role processes receive it."""
    return json.dumps(asdict(cfg))


def workload_config(profile: Profile, *, order: int = 2, variant: str = "per-scanner", quick: bool = False,
                    subscribers: int = 2, seed: int = 1) -> LogConfig:
    """The profile's workload as a LogConfig (the one place a profile becomes a run);
    ``quick`` caps the payload at 64 MiB (a run of about 0.1 s)."""
    w = profile.workload
    total = w.total_mib << 20
    if quick:
        total = min(total, 64 << 20)
    order5 = w.order5_settings() if order == 5 else {"order": order}
    return LogConfig(variant=variant, brokers=w.brokers, subscribers=subscribers,
                     msg_size=w.msg_size, batch_bytes=w.batch_bytes, total_bytes=total, ack=1,
                     epoch_us=w.epoch_us, seed=seed, **order5)
