"""The HTML report in a real headless Chromium, offline.

Renders the pass and fail fixture summaries, opens each page through the Chrome DevTools
Protocol (a minimal stdlib WebSocket client below: no extra dependency) with the network
switched off, and checks what a person would see: no console error or failed load, no
network request, the verdict banner, every section, charts laid out with a non-zero size,
no page-wide horizontal scrolling, and in-page links that resolve. A full-page screenshot of
each report is saved under ``reports/test-artifacts/``.

Chromium comes from ``scripts/install-browser.sh`` (CI runs it). Without it the test skips
locally and fails in CI (``CI=true``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from harness.report import render_report

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "reports"
ARTIFACTS = ROOT / "reports" / "test-artifacts"
SECTION_IDS = ["verdict", "meta", "device", "calibration", "checks", "targets", "charts", "ablations", "faults", "raw"]
VIEWPORT_WIDTH = 1280
CDP_TIMEOUT_S = 30.0


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CXL_HARNESS_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


# --------------------------------------------------------------------------- minimal CDP client


class WebSocket:
    """Just enough RFC 6455 for the DevTools protocol: text frames, client masking,
    fragmented and large messages, ping/pong."""

    def __init__(self, url: str, timeout: float) -> None:
        parsed = urlparse(url)
        assert parsed.hostname and parsed.port, url
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv_some()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"DevTools WebSocket handshake refused: {head.decode(errors='replace')}")

    def _recv_some(self) -> bytes:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("DevTools WebSocket closed by the browser")
        return chunk

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._recv_some()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack(">H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            fin, opcode = first & 0x80, first & 0x0F
            n = second & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self._read(8))
            mask = self._read(4) if second & 0x80 else b""
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("DevTools WebSocket closed by the browser")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if fin:
                    return message.decode()

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class DevTools:
    """Commands and events of one browser connection (flat sessions)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + CDP_TIMEOUT_S
        while time.monotonic() < deadline:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)
        raise TimeoutError(f"no reply to {method} within {CDP_TIMEOUT_S} s")

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + CDP_TIMEOUT_S
        while True:
            for event in self.events:
                if event["method"] == method and event.get("sessionId") == session:
                    return event
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {CDP_TIMEOUT_S} s")
            reply = json.loads(self.ws.recv())
            if "method" in reply:
                self.events.append(reply)

    def session_events(self, session: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("sessionId") == session]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    chromium = find_chromium()
    if chromium is None:
        message = (
            "Chromium not found (looked at $CXL_HARNESS_CHROMIUM, /usr/bin/chromium and PATH); "
            "the report's browser test needs it: run 'bash scripts/install-browser.sh' as root"
        )
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = (tmp_path_factory.mktemp("chromium-log") / "stderr.log").open("w+b")
    proc = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--hide-scrollbars",
            "--mute-audio",
            # No name resolves: nothing can leave the machine even if the page asked.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile}",
            f"--window-size={VIEWPORT_WIDTH},4000",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + CDP_TIMEOUT_S
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"Chromium did not start (exit {proc.poll()}):\n{log.read().decode(errors='replace')[-3000:]}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        ws = WebSocket(f"ws://127.0.0.1:{port}{path}", timeout=CDP_TIMEOUT_S)
        try:
            yield DevTools(ws)
        finally:
            ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


PAGE_PROBE = """
(() => {
  const ids = %s;
  const box = (el) => { const r = el.getBoundingClientRect(); return {w: r.width, h: r.height}; };
  const sections = {};
  for (const id of ids) {
    const el = document.getElementById(id);
    sections[id] = el ? {...box(el), text: el.innerText} : null;
  }
  const charts = [...document.querySelectorAll("svg[data-chart]")].map((svg) => {
    const drawn = svg.getBBox();
    return {name: svg.dataset.chart, ...box(svg), drawnW: drawn.width, drawnH: drawn.height,
            shapes: svg.querySelectorAll("path, use").length,
            visible: getComputedStyle(svg).visibility === "visible" && getComputedStyle(svg).display !== "none"};
  });
  const banner = document.querySelector(".banner .word");
  const bannerStyle = banner ? getComputedStyle(banner) : null;
  return {
    title: document.title,
    verdict: document.querySelector("[data-verdict]")?.dataset.verdict ?? null,
    banner: banner ? banner.innerText : null,
    bannerColor: bannerStyle ? bannerStyle.color : null,
    bannerFontPx: bannerStyle ? parseFloat(bannerStyle.fontSize) : 0,
    sections, charts,
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    brokenAnchors: [...document.querySelectorAll('a[href^="#"]')]
      .map((a) => a.getAttribute("href").slice(1))
      .filter((id) => !document.getElementById(decodeURIComponent(id))),
    fonts: document.fonts.status,
  };
})()
""" % json.dumps(SECTION_IDS)


def open_report(browser: DevTools, html: Path, screenshot: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Load ``html`` offline in a fresh tab; return the page probe and the tab's events."""
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=session)
        browser.call(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
            session=session,
        )
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": VIEWPORT_WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        navigation = browser.call("Page.navigate", {"url": html.as_uri()}, session=session)
        assert "errorText" not in navigation, navigation
        browser.wait_for("Page.loadEventFired", session)
        probe = browser.call(
            "Runtime.evaluate", {"expression": PAGE_PROBE, "returnByValue": True, "awaitPromise": True}, session=session
        )
        assert "exceptionDetails" not in probe, probe
        page: dict[str, Any] = probe["result"]["value"]

        # Full-page screenshot: grow the viewport to the content, then capture.
        metrics = browser.call("Page.getLayoutMetrics", session=session)
        height = int(min(metrics["cssContentSize"]["height"], 16384))
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": VIEWPORT_WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        # Let late console/log events arrive before reading them.
        browser.call("Runtime.evaluate", {"expression": "1"}, session=session)
        return page, browser.session_events(session)
    finally:
        browser.call("Target.closeTarget", {"targetId": target})


def problems_in(events: list[dict[str, Any]]) -> list[str]:
    """Console errors/warnings, uncaught exceptions, failed loads and network requests."""
    found: list[str] = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            found.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            found.append(f"log {params['entry']['level']}: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            found.append(f"load failed: {params.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file:", "data:", "about:")):
                found.append(f"network request: {url}")
    return found


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"summary-{name}.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize(
    ("name", "compare_with", "verdict", "screenshot"),
    [
        ("fail", None, "FAIL", "report-screenshot.png"),
        ("pass", None, "PASS", "report-screenshot-pass.png"),
        ("fail", "pass", "FAIL", "report-screenshot-compare.png"),
    ],
)
def test_report_in_headless_chromium(
    browser: DevTools, tmp_path: Path, name: str, compare_with: str | None, verdict: str, screenshot: str
) -> None:
    summary = load_fixture(name)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # The raw files the report links to, as a run leaves them.
    for role, rel in summary["files"].items():
        (run_dir / rel).write_text(json.dumps(summary) if role == "summary" else "{}")
    previous = load_fixture(compare_with) if compare_with else None
    page_path = render_report(summary, run_dir, previous)
    shot = ARTIFACTS / screenshot

    page, events = open_report(browser, page_path, shot)

    assert problems_in(events) == []
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert requests == [page_path.as_uri()]  # the page itself and nothing else

    # The verdict comes first, big, in the right colour.
    assert page["verdict"] == verdict.lower() and page["banner"] == verdict
    assert page["title"].startswith(f"{verdict} · cxl-harness report")
    assert page["bannerFontPx"] >= 40
    assert page["bannerColor"] == ("rgb(207, 34, 46)" if name == "fail" else "rgb(26, 127, 55)")
    assert page["sections"]["verdict"]["text"].lstrip().startswith(verdict)
    assert summary["verdict"]["summary"] in page["sections"]["verdict"]["text"]

    # Every section is there, laid out and has content.
    for ident in SECTION_IDS:
        section = page["sections"][ident]
        assert section is not None, f"section #{ident} missing"
        assert section["w"] > 600 and section["h"] > 40, (ident, section["w"], section["h"])
        assert section["text"].strip(), ident
    if previous is not None:
        assert "Change since the earlier run" in page["sections"]["charts"]["text"]
        assert "-8.7 %" in page["sections"]["charts"]["text"]
    if name == "fail":
        checks = page["sections"]["checks"]["text"]
        assert "duplicate of position 40960" in checks  # counterexamples shown open
        assert "MISSED" in page["sections"]["faults"]["text"]

    # Charts render with a real size and drawn content.
    names = {chart["name"] for chart in page["charts"]}
    assert {"throughput", "latency-percentiles", "latency-cdf", "calibration", "ablation-0"} <= names
    for chart in page["charts"]:
        assert chart["visible"], chart["name"]
        assert chart["w"] >= 300 and chart["h"] >= 150, chart
        assert chart["drawnW"] > 100 and chart["drawnH"] > 100, chart
        assert chart["shapes"] > 20, chart

    # Reads at 1280 px without sideways scrolling; every in-page link lands somewhere.
    assert page["scrollWidth"] <= page["clientWidth"], (page["scrollWidth"], page["clientWidth"])
    assert page["brokenAnchors"] == []

    # The screenshot is a real, non-blank full-page image with the banner's colour on top.
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == VIEWPORT_WIDTH and height > 3000
    import numpy as np
    from PIL import Image  # both come with matplotlib

    with Image.open(shot) as image:
        top = np.asarray(image.convert("RGB").crop((0, 0, VIEWPORT_WIDTH, 400)), dtype=np.int16)
    banner_bg = np.array((255, 235, 233) if name == "fail" else (218, 251, 225), dtype=np.int16)
    share = float((np.abs(top - banner_bg).max(axis=2) <= 3).mean())
    assert share > 0.15, f"the banner's colour covers only {share:.0%} of the top of the page"
