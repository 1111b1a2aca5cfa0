"""Several hosts on one shared region, each an execnet worker: popen gateways on this machine
sharing a file in /dev/shm, and one host through a real sshd on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.hosts import HostError, HostFigures, HostsFile, load_hosts, parse_hosts, run_hosts
from harness.hosts import coordinator as coordinator_mod
from harness.log import LogConfig

pytest_plugins = ["pytester"]

SMALL = LogConfig(msg_size=256, batch_bytes=4096, total_bytes=2 << 20, record=True, watchdog_s=10.0)


@pytest.fixture
def shm() -> Iterator[Path]:
    """A directory in /dev/shm for the region file; it must be empty after each run."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    d = Path(tempfile.mkdtemp(prefix="cxl-hosts-", dir=base))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def hosts(shm: Path, *entries: dict[str, Any]) -> HostsFile:
    region = str(shm / "region")
    out = []
    for e in entries:
        e = {"gateway": "popen", "device": region, **e}
        out.append(e)
    fmt = next((e for e in out if e.get("format")), None) or next(e for e in out if e["roles"].get("sequencer") or e["roles"].get("scanners"))
    fmt["create"] = True
    return parse_hosts({"hosts": out})


def assert_clean(shm: Path) -> None:
    assert list(shm.iterdir()) == [], f"left in /dev/shm: {list(shm.iterdir())}"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


PLACEMENTS = {
    "publishers-split": [
        {"name": "a", "roles": {"sequencer": True, "publishers": [0, 1]}},
        {"name": "b", "roles": {"publishers": [2, 3], "subscribers": 1}}],
    "subscribers-remote": [
        {"name": "a", "roles": {"sequencer": True, "publishers": [0, 1]}},
        {"name": "b", "roles": {"subscribers": 2}}],
    "sequencer-remote": [
        {"name": "a", "roles": {"publishers": [0, 1], "subscribers": [0]}},
        {"name": "b", "roles": {"scanners": "all"}}],
    "three-hosts": [
        {"name": "a", "roles": {"sequencer": True}},
        {"name": "b", "roles": {"publishers": [0, 1], "subscribers": [1]}},
        {"name": "c", "roles": {"publishers": [2], "subscribers": [0]}}],
}


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_placements_all_checks_pass(shm: Path, placement: str) -> None:
    hf = hosts(shm, *PLACEMENTS[placement])
    said: list[str] = []
    run = run_hosts(hf, SMALL, progress=said.append)
    assert run.ok, [(c.id, c.detail) for c in run.result.failed()] if run.result else run.failures
    r = run.result
    assert r is not None
    assert r.brokers == hf.brokers and r.config["subscribers"] == hf.subscribers
    assert r.batches == hf.apply(SMALL).total_batches == r.batches_ordered
    assert r.messages_delivered == [r.messages_published] * hf.subscribers
    groups = {c.group for c in r.checks}
    assert {"in-run", "history"} <= groups and len([c for c in r.checks if c.group == "history"]) >= 5
    # per-host figures add up to the whole
    by = {h.name: h for h in run.hosts}
    assert sum(h.messages_published for h in run.hosts) == r.messages_published
    cfg = hf.apply(SMALL)
    for spec in hf.hosts:
        f = by[spec.name]
        assert f.rc == 0 and f.failed is None and f.identity["pid"] != os.getpid()
        assert f.identity["package_version"] and f.region["backend"] == "file"
        if spec.publishers:
            assert f.messages_published == len(spec.publishers) * cfg.batches_per_publisher * cfg.msgs_per_batch
            assert f.latency_ns["samples"] == len(spec.publishers) * cfg.batches_per_publisher
            assert f.throughput_mib_s > 0
        else:
            assert f.messages_published == 0
        assert f.messages_delivered == len(spec.subscribers) * r.messages_published
    # start order: sequencer/scanners, then subscribers, then publishers
    started = [line.split()[1].rstrip(":") for line in said if ": started " in line]
    ranks = [hf.host(n).start_rank for n in started]
    assert ranks == sorted(ranks) and len(started) == len(hf.hosts)
    assert_clean(shm)


def test_merged_history_catches_a_defect_in_one_hosts_records(shm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: host b's subscriber reports two deliveries swapped; the merged history fails
    the subscriber-order check and names host b as that subscriber's host."""
    hf = hosts(shm, *PLACEMENTS["publishers-split"])
    real = coordinator_mod.unpack
    swapped: list[bool] = []

    def tamper(data: bytes) -> Any:
        arr = real(data)
        if arr.dtype.names and "pos" in arr.dtype.names and len(arr) > 10 and not swapped:
            arr = arr.copy()
            keep = arr[["ns", "pos"]].copy()
            arr[[3, 4]] = arr[[4, 3]]
            arr["ns"], arr["pos"] = keep["ns"], keep["pos"]  # same times and positions, batches swapped
            swapped.append(True)
        return arr

    monkeypatch.setattr(coordinator_mod, "unpack", tamper)
    run = run_hosts(hf, SMALL)
    assert swapped and run.result is not None and not run.ok
    failed = run.result.failed()
    assert failed, "a reordered delivery must fail a check"
    examples = [ex for c in failed for ex in c.counterexamples]
    assert "unique-positions" in {c.id for c in failed}
    views = [v for ex in examples for v in ex.get("views", [])]
    assert {(v["observer"], v.get("host")) for v in views} == {("sequencer", "a"), ("subscriber 0", "b")}, views
    # brokers 0 and 1 have their publishers on a, 2 and 3 on b; which brokers' batches sit at
    # the swapped positions depends on the run's timing
    assert all(v["batch"]["publisher_host"] == ("a" if v["batch"]["broker"] in (0, 1) else "b")
               for v in views), views
    assert_clean(shm)


SKEW_NS = -5_000_000_000


@pytest.mark.parametrize("aligned", [True, False])
def test_hosts_on_separate_clocks_are_aligned_before_the_checks(shm: Path, monkeypatch: pytest.MonkeyPatch,
                                                                aligned: bool) -> None:
    """Host b's clock runs 5 s behind (simulated: the worker shifts its clock replies and its
    timestamps). As another machine (other boot id) its records are put onto the
    coordinator's clock by the measured offset and every check passes; planted: treated as
    the coordinator's own clock (no alignment), the merged history must fail."""
    monkeypatch.setenv("CXL_HARNESS_SIMULATED_CLOCK_SKEW", f"b={SKEW_NS}")
    if aligned:
        monkeypatch.setattr(coordinator_mod, "_boot_id", lambda: "another machine")
    hf = hosts(shm, *PLACEMENTS["publishers-split"])
    run = run_hosts(hf, SMALL)
    b = next(h for h in run.hosts if h.name == "b")
    assert abs(b.clock_offset_ns - SKEW_NS) <= b.clock_uncertainty_ns + 1_000_000
    assert b.clock_aligned is aligned and run.result is not None
    if aligned:
        assert run.ok, [(c.id, c.detail) for c in run.result.failed()]
        assert 0 < run.result.latency.p99_ns < 1e9 and run.result.elapsed_s < 5
    else:
        assert not run.ok and run.result.failed(), "a 5 s clock skew between hosts must not go unnoticed"
        assert run.result.elapsed_s > 4  # and the run's span would be wrong
    assert_clean(shm)


def test_version_mismatch_is_refused_by_host(shm: Path) -> None:
    hf = hosts(shm, *PLACEMENTS["subscribers-remote"])
    with pytest.raises(HostError) as e:
        run_hosts(hf, SMALL, version="99.0.0")
    assert e.value.host == "a"
    assert "99.0.0" in str(e.value) and "coordinator runs" in str(e.value) and "pip install" in str(e.value)
    assert_clean(shm)


def test_existing_region_file_is_refused_and_kept(shm: Path) -> None:
    hf = hosts(shm, *PLACEMENTS["subscribers-remote"])
    (shm / "region").write_bytes(b"someone's data")
    with pytest.raises(HostError) as e:
        run_hosts(hf, SMALL)
    assert e.value.host == "a" and "already exists" in str(e.value)
    assert (shm / "region").read_bytes() == b"someone's data"


def test_unreachable_python_is_reported_by_host(shm: Path) -> None:
    entries = [dict(e) for e in PLACEMENTS["subscribers-remote"]]
    entries[1]["python"] = "/nonexistent/python3"
    hf = hosts(shm, *entries)
    t0 = time.monotonic()
    with pytest.raises(HostError) as e:
        run_hosts(hf, SMALL)
    assert e.value.host == "b" and time.monotonic() - t0 < 60
    assert_clean(shm)


def _killer(target: str, delay: float, killed: dict[str, float]) -> Any:
    def hook(f: HostFigures) -> None:
        if f.name != target:
            return

        def later() -> None:
            time.sleep(delay)
            killed["t"] = time.monotonic()
            os.kill(int(f.identity["pid"]), signal.SIGKILL)

        threading.Thread(target=later, daemon=True).start()
    return hook


LONG = LogConfig(brokers=2, msg_size=64, batch_bytes=256, total_bytes=2 * 3000 * 256, ack=0, epoch_us=2000,
                 pbr_slots=4, goi_slots=1024, slot_timeout_ms=300.0, watchdog_s=2.0, record=True)


def test_killed_publisher_host_is_named_and_others_keep_ordering(shm: Path) -> None:
    hf = hosts(shm, {"name": "seq", "roles": {"sequencer": True, "publishers": [0], "subscribers": 1}},
               {"name": "pubhost", "roles": {"publishers": [1]}})
    killed: dict[str, float] = {}
    t0 = time.monotonic()
    run = run_hosts(hf, LONG, on_started=_killer("pubhost", 0.5, killed))
    took = time.monotonic() - t0
    assert killed, "the run ended before the kill"
    assert [f.host for f in run.failures] == ["pubhost"]
    detect = run.failures[0].detected_s - killed["t"]
    assert 0 <= detect < hf.silence_s, detect
    assert took < LONG.watchdog_s + 60
    r = run.result
    assert r is not None and not run.ok
    ids = {c.id for c in r.failed()}
    assert "all-published" in ids or "run-completed" in ids, ids
    # broker 0 (the surviving host) published and got everything ordered
    by = {h.name: h for h in run.hosts}
    assert by["seq"].messages_published == LONG.batches_per_publisher * LONG.msgs_per_batch
    assert by["pubhost"].failed and "pubhost" not in {h.name for h in run.hosts if h.rc is not None}
    order = r.records["order"] if r.records else np.zeros(0)
    assert int((order["broker"] == 0).sum()) == LONG.batches_per_publisher
    seqs = np.sort(order["seq"])
    assert (np.diff(seqs) > 0).all()  # dense and unique among what was ordered
    assert_clean(shm)


def test_killed_sequencer_host_stops_the_run_by_name_without_leftovers(shm: Path) -> None:
    hf = hosts(shm, {"name": "seqhost", "roles": {"sequencer": True}},
               {"name": "pubs", "roles": {"publishers": [0, 1], "subscribers": 1}})
    killed: dict[str, float] = {}
    pids: dict[str, int] = {}

    def hook(f: HostFigures) -> None:
        pids[f.name] = int(f.identity["pid"])
        _killer("seqhost", 0.5, killed)(f)

    t0 = time.monotonic()
    with pytest.raises(HostError) as e:
        run_hosts(hf, LONG, on_started=hook)
    assert e.value.host == "seqhost" and "disconnected" in str(e.value)
    assert killed and time.monotonic() - killed["t"] < 15
    assert time.monotonic() - t0 < 60
    assert not alive(pids["pubs"]), "the other host's roles must be ended"
    assert_clean(shm)


def test_ctrl_c_ends_every_worker(shm: Path) -> None:
    hf = hosts(shm, *PLACEMENTS["publishers-split"])
    pids: list[int] = []

    def hook(f: HostFigures) -> None:
        pids.append(int(f.identity["pid"]))
        if len(pids) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_hosts(hf, LONG.__class__(**{**LONG.__dict__, "brokers": 4}), on_started=hook)
    assert len(pids) == 2 and not any(alive(p) for p in pids)
    assert_clean(shm)


# ------------------------------------------------------------------------------------------
# The hosts file


def test_hosts_file_loads_and_derives_brokers_and_subscribers(tmp_path: Path) -> None:
    f = tmp_path / "hosts.yaml"
    f.write_text("hosts:\n"
                 "  - {name: a, gateway: popen, device: /dev/dax0.0, roles: {scanners: all, subscribers: 2}}\n"
                 "  - {name: b, gateway: 'ssh=lab@b', python: /opt/venv/bin/python, device: /dev/dax1.0,\n"
                 "     roles: {publishers: [0, 1, 2], subscribers: 1}}\n"
                 "timeouts: {connect_s: 5, silence_s: 3}\n")
    hf = load_hosts(f)
    a, b = hf.hosts
    assert (hf.brokers, hf.subscribers) == (3, 3)
    assert a.sequencer and a.format and a.subscribers == (0, 1) and b.subscribers == (2,)
    assert b.pub_brokers == 0b111 and b.sub_mask == 0b100
    assert b.execnet_spec() == "ssh=lab@b//python=/opt/venv/bin/python//id=b"
    assert hf.connect_s == 5 and hf.silence_s == 3
    assert hf.apply(LogConfig()).brokers == 3


@pytest.mark.parametrize("hosts_doc, words", [
    ({"hosts": [{"name": "a", "gateway": "popen", "device": "/x", "roles": {"publishers": [0]}}]},
     "exactly one host runs the sequencer"),
    ({"hosts": [{"name": "a", "gateway": "popen", "device": "/x", "roles": {"sequencer": True, "publishers": [0]}},
                {"name": "b", "gateway": "popen", "device": "/x", "roles": {"publishers": [0]}}]},
     "broker 0's publishers are placed on both a and b"),
    ({"hosts": [{"name": "a", "gateway": "popen", "device": "/x", "roles": {"sequencer": True, "publishers": [1]}}]},
     "must be 0..N-1"),
    ({"hosts": [{"name": "a", "gateway": "telnet", "device": "/x", "roles": {"sequencer": True}}]},
     "hosts.0.gateway"),
    ({"hosts": [{"name": "a", "gateway": "popen", "device": "/x", "roles": {"sequencer": True, "publishers": [0]},
                 "colour": "red"}]}, "unknown key"),
    ({"hosts": [{"name": "a", "gateway": "popen", "device": "node:1", "roles": {"sequencer": True, "publishers": [0]}}]},
     "private memory"),
])
def test_bad_hosts_files_name_the_problem(hosts_doc: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_hosts(hosts_doc)
    assert words in str(e.value) and "docs/multi-host.md" in str(e.value)


def test_cli_publish_with_hosts(shm: Path, tmp_path: Path) -> None:
    from harness.cli import main

    f = tmp_path / "hosts.yaml"
    region = shm / "region"
    f.write_text("hosts:\n"
                 f"  - {{name: a, gateway: popen, device: {region}, create: true, roles: {{sequencer: true, publishers: [0]}}}}\n"
                 f"  - {{name: b, gateway: popen, device: {region}, roles: {{publishers: [1], subscribers: 1}}}}\n")
    out = tmp_path / "r.json"
    assert main(["publish", "--hosts", str(f), "--total-bytes", "1M", "--msg-size", "256",
                 "--batch-bytes", "4K", "--json", str(out)]) == 0
    import json
    data = json.loads(out.read_text())
    assert [h["name"] for h in data["hosts"]] == ["a", "b"] and data["ok"]
    assert main(["publish", "--hosts", str(tmp_path / "missing.yaml")]) == 2
    assert_clean(shm)


def _hosts_yaml(path: Path, region: Path) -> Path:
    path.write_text("hosts:\n"
                    f"  - {{name: a, gateway: popen, device: {region}, create: true, roles: {{sequencer: true, publishers: [0]}}}}\n"
                    f"  - {{name: b, gateway: popen, device: {region}, roles: {{publishers: [1], subscribers: 1}}}}\n")
    return path


def test_cli_run_with_hosts_writes_the_hosts_section(shm: Path, tmp_path: Path) -> None:
    from harness.cli import main
    from harness.report.summary import load_summary

    f = _hosts_yaml(tmp_path / "hosts.yaml", shm / "region")
    assert main(["run", "--hosts", str(f), "--quick", "--rounds", "1", "--out", str(tmp_path / "out")]) == 0
    run_dir = (tmp_path / "out" / "latest").resolve()
    summary = load_summary(run_dir / "summary.json")
    assert [h["name"] for h in summary["hosts"]["hosts"]] == ["a", "b"]
    assert summary["verdict"]["ok"] and any(c["id"] == "hosts.dense-sequence" for c in summary["checks"])
    page = (run_dir / "index.html").read_text(encoding="utf-8")
    assert 'id="hosts"' in page and 'id="host-b"' in page and "subscribers 0; publishers of brokers 1" in page
    assert_clean(shm)


def test_plugin_option_and_fixture(pytester: pytest.Pytester, shm: Path) -> None:
    from harness.report.summary import load_summary

    f = _hosts_yaml(pytester.path / "hosts.yaml", shm / "region")
    pytester.makepyfile(test_lab="""
        from harness.log import LogConfig

        def test_on_hosts(cxl_hosts):
            run = cxl_hosts(LogConfig(msg_size=256, batch_bytes=4096, total_bytes=1 << 20, record=True))
            assert run.ok and [h.name for h in run.hosts] == ["a", "b"]
    """)
    result = pytester.runpytest_subprocess("--cxl-hosts", str(f), "--cxl-report", "out", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    summary = load_summary((pytester.path / "out" / "latest").resolve() / "summary.json")
    assert [h["name"] for h in summary["hosts"]["hosts"]] == ["a", "b"]
    assert summary["runs"][0]["label"].startswith("hosts/order2")
    skipped = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*no --cxl-hosts FILE given*"])
    assert_clean(shm)


# ------------------------------------------------------------------------------------------
# The non-coherent model with a hosts placement

MODEL_HOSTS = {"hosts": [
    {"name": "a", "gateway": "popen", "device": "/unused", "roles": {"sequencer": True, "publishers": [0]}},
    {"name": "b", "gateway": "popen", "device": "/unused", "roles": {"publishers": [1], "subscribers": [1]}},
    {"name": "c", "gateway": "popen", "device": "/unused", "roles": {"subscribers": [0]}}]}


@pytest.mark.parametrize("fault, rule, hosts_of_agent", [
    (None, None, None),
    ("pub_no_payload_flush", "unflushed_before_publish", {"a", "b"}),
    ("sub_no_invalidate_payload", "read_without_invalidate", {"b", "c"}),
    ("seq_commit_unflushed", "unflushed_before_publish", {"a"}),
])
def test_model_findings_are_attributed_to_hosts(fault: str | None, rule: str | None,
                                                hosts_of_agent: set[str] | None) -> None:
    from harness.checked import small_config
    from harness.hosts.model import run_model_on_hosts

    run = run_model_on_hosts(parse_hosts(MODEL_HOSTS), small_config(), fault)
    if fault is None:
        assert run.ok and run.events > 1000 and run.result.brokers == 2
        return
    assert not run.ok
    hit = [f for f in run.findings if f.rule == rule]
    assert hit, [(f.rule, f.location) for f in run.findings]
    assert hosts_of_agent is not None and {f.host for f in hit} <= hosts_of_agent and hit[0].host
    assert hit[0].location.startswith("cffi_src/src/cxl_")
    if fault == "sub_no_invalidate_payload":  # the line was written on a publisher's host
        assert hit[0].other_host in {"a", "b"} and hit[0].other_agent.startswith("publisher")


def test_cli_model_with_hosts_and_run_refuses_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from harness.cli import main

    f = tmp_path / "hosts.yaml"
    f.write_text(yaml.safe_dump(MODEL_HOSTS))
    assert main(["publish", "--hosts", str(f), "--profile", "emulated-noncoherent", "--total-bytes", "60000",
                 "--msg-size", "100", "--batch-bytes", "300", "--ring-slots", "8"]) == 0
    assert "non-coherent model, roles placed on 3 hosts" in capsys.readouterr().out
    assert main(["run", "--hosts", str(f), "--profile", "emulated-noncoherent"]) == 2
    assert "publish --hosts FILE --profile emulated-noncoherent" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# One host through a real sshd on 127.0.0.1


def _sshd_binary() -> str | None:
    for cand in (shutil.which("sshd"), "/usr/sbin/sshd"):
        if cand and os.path.exists(cand):
            return cand
    return None


def _install_openssh() -> str:
    """Install openssh-server with apt (CI runs as root on a fresh machine); '' on success,
    else why not."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "openssh-server is not installed and apt-get as root is not available"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "openssh-server"]
    for attempt in range(2):
        if attempt:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return "apt-get install openssh-server timed out"
        if done.returncode == 0 and _sshd_binary():
            return ""
    return f"apt-get install openssh-server failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throw-away sshd on 127.0.0.1 (own config, host key and client key, free port);
    yields the client's ssh_config file; stopped afterwards."""
    if _sshd_binary() is None:
        why = _install_openssh()
        if why:
            pytest.skip(f"no sshd: {why}")
    binary = _sshd_binary()
    assert binary is not None
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = _free_port()
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        "Subsystem sftp internal-sftp\n")
    (d / "ssh_config").write_text(
        f"Host 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {d / 'client_key'}\n  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n"
        "  ConnectTimeout 10\n")
    os.makedirs("/run/sshd", exist_ok=True) if os.geteuid() == 0 else None
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(d / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=open(d / "sshd.log", "w"))
    try:
        deadline = time.monotonic() + 20
        while True:
            probe = subprocess.run(["ssh", "-F", str(d / "ssh_config"), "127.0.0.1", "true"], capture_output=True,
                                   text=True, timeout=30)
            if probe.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (d / "sshd.log").read_text().strip().splitlines()[-3:]
                pytest.skip(f"sshd on 127.0.0.1:{port} could not be started or reached: "
                            f"{probe.stderr.strip() or log}")
            time.sleep(0.3)
        yield d / "ssh_config"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.ssh
def test_one_host_through_a_real_sshd(shm: Path, sshd: Path) -> None:
    region = str(shm / "region")
    hf = parse_hosts({"hosts": [
        {"name": "local", "gateway": "popen", "device": region, "create": True,
         "roles": {"sequencer": True, "publishers": [0]}},
        {"name": "over-ssh", "gateway": "ssh=127.0.0.1", "ssh_config": str(sshd), "python": sys.executable,
         "device": region, "roles": {"publishers": [1], "subscribers": 1}},
    ]})
    run = run_hosts(hf, SMALL)
    assert run.ok, [(c.id, c.detail) for c in run.result.failed()] if run.result else run.failures
    remote = next(h for h in run.hosts if h.name == "over-ssh")
    assert remote.identity["pid"] != os.getpid() and remote.messages_published > 0
    assert remote.messages_delivered == run.result.messages_published if run.result else False
    assert_clean(shm)


@pytest.mark.ssh
def test_ssh_host_with_a_wrong_python_is_named(shm: Path, sshd: Path) -> None:
    hf = parse_hosts({"hosts": [
        {"name": "local", "gateway": "popen", "device": str(shm / "region"), "create": True,
         "roles": {"sequencer": True, "publishers": [0]}},
        {"name": "far", "gateway": "ssh=127.0.0.1", "ssh_config": str(sshd), "python": "/nonexistent/python",
         "device": str(shm / "region"), "roles": {"publishers": [1]}},
    ]})
    with pytest.raises(HostError) as e:
        run_hosts(hf, SMALL)
    assert e.value.host == "far"
    assert_clean(shm)


def test_hosts_share_the_device_models_channels(shm: Path) -> None:
    """On an emulated profile every host's region carries the device model, and all of them
    write through one channel file (one bandwidth cap, one utilisation), which the formatting
    host makes beside the region file and removes at the end."""
    hf = hosts(shm, *PLACEMENTS["three-hosts"])
    run = run_hosts(hf, SMALL, profile="emulated-cxl")
    assert run.ok, [(c.id, c.detail) for c in run.result.failed()] if run.result else run.failures
    for h in run.hosts:
        model = h.region["device_model"]
        assert model is not None and model["shared_channels"] is True, (h.name, model)
    assert_clean(shm)  # the channel file went with the region file


def test_a_host_without_the_formatting_hosts_channel_file_is_refused(tmp_path: Path) -> None:
    from harness.errors import DeviceError
    from harness.hosts import worker
    from harness.profiles import DeviceModel
    from harness.region import Region

    state = worker._State()
    path = tmp_path / "region"
    state.region = Region.file(path, 1 << 20, create=True, device_model=DeviceModel(load_ns=100))
    try:
        with pytest.raises(DeviceError, match=r"channel file .*region\.channels is missing"):
            worker._share_channels(state, path, formatting=False)
        worker._share_channels(state, path, formatting=True)  # the formatting host makes it
        assert worker.channels_path(path).exists() and state.region.info().to_dict()["device_model"]["shared_channels"]
    finally:
        state.cleanup()
    assert not worker.channels_path(path).exists()
