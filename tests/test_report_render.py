"""The HTML report: summary validation, rendering and the ``cxl-harness report`` command."""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.commands import report as report_cmd
from harness.errors import HarnessError
from harness.report import (
    SCHEMA_ID,
    SummaryError,
    load_summary,
    render_html,
    render_report,
    validate_summary,
    write_summary,
)
from harness.report import charts
from harness.report.render import fmt_bytes, fmt_ns, fmt_num, fmt_pct

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
SECTION_IDS = ["verdict", "meta", "device", "calibration", "checks", "targets", "charts", "ablations", "faults",
               "mutation", "raw"]


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"summary-{name}.json").read_text(encoding="utf-8"))
    return data


@functools.lru_cache(maxsize=None)
def rendered(name: str) -> str:
    """The report of a fixture summary (rendering draws charts: ~1 s, so once per name)."""
    return render_html(fixture(name))


@pytest.fixture
def fail_html() -> str:
    return rendered("fail")


@pytest.fixture
def pass_html() -> str:
    return rendered("pass")


class _Elements(HTMLParser):
    """Text content of every element that has an id, plus every attribute value seen."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None]] = []
        self.text: dict[str, list[str]] = {}
        self.attrs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.classes: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key, value in attrs:
            self.attrs.append((tag, key, value or ""))
        ident = values.get("id")
        if ident is not None:
            assert ident not in self.text, f"duplicate id {ident!r}"
            self.text[ident] = []
            self.classes[ident] = values.get("class") or ""
        if tag not in self.VOID:
            self.stack.append((tag, ident))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            open_tag, _ = self.stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, ident in self.stack:
            if ident is not None:
                self.text[ident].append(data)


def parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


def text_of(html: str, ident: str) -> str:
    parsed = parse(html)
    assert ident in parsed.text, f"no element with id {ident!r}"
    return re.sub(r"\s+", " ", "".join(parsed.text[ident])).strip()


# --------------------------------------------------------------------------- fixtures & schema


@pytest.mark.parametrize("name", ["pass", "fail"])
def test_fixtures_are_valid_summaries(name: str) -> None:
    summary = load_summary(FIXTURES / f"summary-{name}.json")
    assert summary["schema"] == SCHEMA_ID
    assert summary["verdict"]["ok"] is (name == "pass")


def test_minimal_summary_is_normalised() -> None:
    summary = validate_summary({"schema": SCHEMA_ID, "verdict": {"ok": True}})
    assert summary["checks"] == [] and summary["runs"] == [] and summary["meta"] == {}
    assert summary["verdict"]["failed"] == [] and summary["verdict"]["summary"] == ""


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s["runs"][0].__setitem__("throughput_mib_s", "fast"), r"runs\[0\]\.throughput_mib_s: 'fast' is not of type 'number'"),
        (lambda s: s["checks"][1].__setitem__("group", "vibes"), r"checks\[1\]\.group: 'vibes' is not one of"),
        (lambda s: s["verdict"].pop("ok"), r"verdict: 'ok' is a required property"),
        (lambda s: s["targets"][0].__setitem__("comparison", "=="), r"targets\[0\]\.comparison"),
        (lambda s: s["ablations"][0]["series"][0]["y"].pop(), r"ablations\[0\]\.series\[0\]: x has 4 values but y has 3"),
        (lambda s: s["runs"][1].__setitem__("elapsed_s", float("nan")), r"runs\[1\]\.elapsed_s: nan is not a finite number"),
        (lambda s: s["checks"][2].__setitem__("id", s["checks"][0]["id"]), r"checks\[2\]\.id: 'order\.unique-dense' is used by an earlier check"),
        (lambda s: s["runs"][0]["latency_cdf"].reverse(), r"runs\[0\]\.latency_cdf\[1\]: .* a CDF never decreases"),
    ],
)
def test_validation_names_the_field(mutate: Any, expected: str) -> None:
    summary = fixture("pass")
    mutate(summary)
    with pytest.raises(SummaryError) as info:
        validate_summary(summary, source="run/summary.json")
    message = str(info.value)
    assert message.startswith("run/summary.json: not a valid cxl-harness-summary/2 summary")
    assert re.search(expected, message), message
    assert "fix:" in message


def test_validation_rejects_other_schema_and_non_objects() -> None:
    with pytest.raises(SummaryError, match=r"schema is 'cxl-harness-summary/9'"):
        validate_summary({"schema": "cxl-harness-summary/9", "verdict": {"ok": True}})
    with pytest.raises(SummaryError, match="a run summary is a JSON object, got list"):
        validate_summary([1, 2])


def test_write_summary_round_trips(tmp_path: Path) -> None:
    summary = fixture("fail")
    path = write_summary(summary, tmp_path / "run" / "summary.json")
    assert load_summary(path) == validate_summary(summary)
    bad = copy.deepcopy(summary)
    bad["runs"][0]["order"] = -1
    with pytest.raises(SummaryError, match=r"runs\[0\]\.order"):
        write_summary(bad, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


# --------------------------------------------------------------------------- rendering


def test_fail_report_shows_fail_and_counterexamples(fail_html: str) -> None:
    verdict = text_of(fail_html, "verdict")
    assert verdict.startswith("FAIL 3 ordering/flush checks failed, 1 target missed")
    assert 'data-verdict="fail"' in fail_html
    # Every failed item is listed and links to its row.
    for anchor in [
        "check-order-unique-dense",
        "check-order-same-sequence",
        "check-ff-goi-before-committed",
        "check-faults-all-caught",
        "check-targets-order2-absolute",
        "target-order-2-absolute-throughput",
        "cal-flush-fence-per-line",
        "fault-drop-fence-goi-batch-before-committed-seq",
    ]:
        assert f'href="#{anchor}"' in fail_html, anchor
        assert f'id="{anchor}"' in fail_html, anchor
    assert "not in verdict" not in verdict  # every failing item is named by the verdict
    # Counterexamples: a flat table for the duplicate sequence, nested values as JSON.
    row = text_of(fail_html, "check-order-unique-dense")
    assert "FAIL" in row and "3 counterexamples" in row
    assert "duplicate of position 40960" in row and "global_seq 40962 missing" in row
    assert "40,961" in row and "10,241" in row
    same = text_of(fail_html, "check-order-same-sequence")
    assert '{"global_seq": 40961, "broker": 3, "client": 11, "client_batch_seq": 5120}' in same
    goi = text_of(fail_html, "check-ff-goi-before-committed")
    assert "fence after flush of GOI 40961..40963" in goi and "sequencer.c:322" in goi
    assert text_of(fail_html, "fault-drop-fence-goi-batch-before-committed-seq").startswith(
        "drop fence: GOI batch before committed_seq MISSED"
    )
    assert "FAIL" in text_of(fail_html, "cal-flush-fence-per-line")
    assert "MISSED" in text_of(fail_html, "target-order-2-absolute-throughput")
    assert re.search(r'<details class="cx" open>', fail_html)


def test_pass_report_shows_pass(pass_html: str) -> None:
    assert text_of(pass_html, "verdict").startswith("PASS 18 checks passed, 4 / 4 targets met, 11 / 11 faults caught")
    assert 'data-verdict="pass"' in pass_html
    assert ">FAIL<" not in pass_html and ">MISSED<" not in pass_html
    assert "<title>PASS · cxl-harness report · emulated-ci · ci-runner-07</title>" in pass_html
    assert 'class="failed"' not in pass_html


@pytest.mark.parametrize("name", ["pass", "fail"])
def test_sections_present_in_order(name: str) -> None:
    html = rendered(name)
    positions = [html.index(f'<section id="{ident}"') for ident in SECTION_IDS]
    assert positions == sorted(positions)
    parsed = parse(html)
    for ident in SECTION_IDS:
        assert "".join(parsed.text[ident]).strip(), ident


@pytest.mark.parametrize("name", ["pass", "fail"])
def test_figures_match_summary(name: str) -> None:
    summary = fixture(name)
    html = rendered(name)
    runs = validate_summary(summary)["runs"]
    for run in runs:
        row = text_of(html, "run-" + re.sub(r"[^a-z0-9]+", "-", run["label"].lower()).strip("-"))
        assert fmt_num(run["throughput_mib_s"]) in row
        assert fmt_num(run["messages_published"]) in row
        assert fmt_ns(run["latency_ns"]["p99"]) in row
    targets = text_of(html, "targets")
    for target in summary["targets"]:
        assert target["name"] in targets and fmt_num(target["measured"]) in targets
    meta = text_of(html, "meta")
    for key in ("host", "kernel", "cpu", "git_revision", "command"):
        assert summary["meta"][key] in meta
    device = text_of(html, "device")
    assert summary["device"]["discovery_reason"] in device
    calibration = text_of(html, "calibration")
    for item in summary["calibration"]:
        assert item["name"] in calibration and fmt_num(item["measured"]["median"]) in calibration
    faults = text_of(html, "faults")
    for fault in summary["faults"]:
        assert fault["name"] in faults


def test_known_figures_formatted(fail_html: str, pass_html: str) -> None:
    assert "10,084" in text_of(pass_html, "run-order2-per-scanner")  # 10083.5 MiB/s
    assert "9,211" in text_of(fail_html, "run-order2-per-scanner")
    assert "64.00 GiB (68,719,476,736 bytes)" in text_of(fail_html, "device")
    assert "23 min 41 s" in text_of(fail_html, "meta")
    assert "+53.1 %" in text_of(fail_html, "cal-flush-fence-per-line")


@pytest.mark.parametrize("name", ["pass", "fail"])
def test_report_is_self_contained(name: str) -> None:
    html = rendered(name)
    parsed = parse(html)
    for tag, attribute, value in parsed.attrs:
        if attribute in ("src", "href", "xlink:href", "srcset", "action", "poster", "data"):
            assert not re.match(r"^\s*([a-z][a-z0-9+.-]*:|//)", value, re.I), (tag, attribute, value)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    lowered = html.lower()
    for forbidden in ("<script", "<link", "<iframe", "<img", "@import", "<object", "<embed"):
        assert forbidden not in lowered, forbidden
    # url(...) only for fragment references inside the inline SVGs (clip paths).
    assert re.findall(r"url\(([^)]*)\)", html) and all(ref.startswith("#") for ref in re.findall(r"url\(([^)]*)\)", html))


@pytest.mark.parametrize("name", ["pass", "fail"])
def test_charts_are_inline_matplotlib_svg(name: str) -> None:
    summary = fixture(name)
    html = rendered(name)
    names = re.findall(r'<svg [^>]*data-chart="([^"]+)"', html)
    expected = {"throughput", "latency-percentiles", "latency-cdf", "calibration"}
    expected |= {f"ablation-{i}" for i in range(len(summary["ablations"]))}
    assert set(names) == expected and len(names) == len(expected)
    for svg in re.findall(r"<svg .*?</svg>", html, re.S):
        head = svg[: svg.index(">")]
        assert "viewBox=" in head and ' width="' not in head
        assert "Matplotlib" in svg or "matplotlib" in svg
        assert svg.count("<path") > 20
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html


def test_rendering_is_deterministic() -> None:
    assert render_html(fixture("fail")) == rendered("fail")


def test_comparison_shows_previous_figures_and_deltas() -> None:
    html = render_html(fixture("fail"), previous=fixture("pass"))
    # Throughput 9,210.6 now vs 10,083.5 before: -8.7 %, worse.
    row = text_of(html, "compare-run-order2-per-scanner")
    assert row.startswith("order2/per-scanner 9,211 10,084 -8.7 %")
    # one run on each side: no significance test is possible, so no colour either way
    assert re.search(r'<td class="num delta untested" title="one value on a side: no '
                     r'significance test possible">-8\.7 %</td>', html)
    # p99 latency 18.9 us now vs 14.2 us: +33.1 %, shown, not judged.
    assert "14.20 µs" in row and "+33.1 %" in row
    assert re.search(r'<td class="num delta untested"[^>]*>\+1\.3 %</td>', html)
    assert 'class="num delta better"' not in html.split('id="runs-compare"')[1].split("</table>")[0]
    # Targets carry their samples: only the p99 target exists in both runs, and its +33 %
    # over 12 samples each is significant (Mann-Whitney), worse because lower is better.
    target = text_of(html, "target-order-2-p99-latency")
    assert "14,200" in target and "+33.1 %" in target
    assert re.search(r'<td class="num delta worse" title="\+33\.1% significant \(Mann-Whitney '
                     r'p=0\.000\)">\+33\.1 %</td>', html)
    assert "—" in text_of(html, "target-order-2-absolute-throughput")
    assert "Compared with an earlier run started 2025-11-24T09:12:03+00:00 at revision 3f9c2e1a7b" in text_of(html, "verdict")
    assert "Prev. MiB/s" in html and 'id="runs-compare"' in html
    assert "Prev. MiB/s" not in rendered("fail") and "runs-compare" not in rendered("fail")


def test_minimal_summary_renders_every_section() -> None:
    html = render_html({"schema": SCHEMA_ID, "verdict": {"ok": False, "summary": "aborted before the first run"}})
    for ident in SECTION_IDS:
        assert f'<section id="{ident}"' in html
    assert text_of(html, "verdict").startswith("FAIL aborted before the first run")
    assert "The run's verdict is FAIL, but it names no failed item." in text_of(html, "verdict")
    assert "No checks were recorded for this run." in html
    assert "<svg" not in html


def test_inconsistent_verdict_is_flagged() -> None:
    summary = fixture("pass")
    summary["checks"][0]["ok"] = False
    html = render_html(summary)
    verdict = text_of(html, "verdict")
    assert "The run's verdict is PASS, but 1 item(s) below are marked as failing." in verdict
    assert "Global sequence unique and dense order.unique-dense" in verdict and "not in verdict" in verdict


def test_unknown_failed_name_is_listed_without_link() -> None:
    summary = fixture("fail")
    summary["verdict"]["failed"].append("sequencer crashed")
    html = render_html(summary)
    assert re.search(r'<span class="kind">item</span><strong>sequencer crashed</strong>', html)


def test_text_is_escaped() -> None:
    summary = fixture("fail")
    summary["checks"][0]["detail"] = "<script>alert(1)</script>"
    summary["checks"][0]["counterexamples"].append({"payload": "<img src=x onerror=alert(1)>"})
    html = render_html(summary)
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_long_counterexample_lists_are_cut() -> None:
    summary = fixture("fail")
    summary["checks"][0]["counterexamples"] = [{"position": i, "problem": "duplicate"} for i in range(27)]
    row = text_of(render_html(summary), "check-order-unique-dense")
    assert "27 counterexamples" in row and "… and 7 more in the raw summary." in row
    assert "19" in row and '"position": 20' not in row


def test_raw_files_are_relative_links(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(fixture("pass")))
    (run / "pyperf.json").write_text("{}")
    summary = fixture("pass")
    summary["files"]["trace"] = "https://example.com/trace.json"
    path = render_report(summary, run)
    assert path == run / "index.html"
    raw = text_of(path.read_text(), "raw")
    assert 'href="summary.json"' in path.read_text() and 'href="pyperf.json"' in path.read_text()
    assert "benchmark.json missing" in raw  # listed but not written
    assert "pyperf.json missing" not in raw
    assert "https://example.com/trace.json" in raw
    assert 'href="https://example.com' not in path.read_text()
    # Written elsewhere, the links still reach the files.
    elsewhere = render_report(summary, tmp_path / "out" / "deep", filename="r.html", raw_dir=run)
    assert 'href="../../run/summary.json"' in elsewhere.read_text()


def test_chart_functions_skip_empty_input() -> None:
    assert charts.throughput_chart([]) is None
    assert charts.latency_percentile_chart([]) is None
    assert charts.latency_cdf_chart([]) is None
    assert charts.calibration_chart([]) is None
    assert charts.ablation_chart({"name": "x", "series": []}, 0) is None


def test_categorical_ablation_draws_bars() -> None:
    summary = validate_summary(fixture("pass"))
    svg = charts.ablation_chart(summary["ablations"][1], 1)
    assert svg is not None and 'data-chart="ablation-1"' in svg
    assert "flush amortisation" in svg  # accessible title


def test_formatting_helpers() -> None:
    assert fmt_num(1234567) == "1,234,567"
    assert fmt_num(10083.5) == "10,084"
    assert fmt_num(25.0) == "25"
    assert fmt_num(0.971) == "0.971"
    assert fmt_num(None) == "—"
    assert fmt_ns(612.5) == "612 ns" or fmt_ns(612.5) == "613 ns"
    assert fmt_ns(14200) == "14.20 µs"
    assert fmt_ns(2_500_000) == "2.50 ms"
    assert fmt_bytes(68719476736) == "64.00 GiB"
    assert fmt_bytes(512) == "512 B"
    assert fmt_pct(-8.66) == "-8.7 %"


# --------------------------------------------------------------------------- CLI


def _run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cxl-harness")
    sub = parser.add_subparsers(dest="command")
    report_cmd.register(sub)
    args = parser.parse_args(["report", *argv])
    assert args.func is report_cmd.run
    code: int = args.func(args)
    return code


def _run_dir(tmp_path: Path, name: str, summary: dict[str, Any] | str) -> Path:
    run = tmp_path / name
    run.mkdir()
    text = summary if isinstance(summary, str) else json.dumps(summary)
    (run / "summary.json").write_text(text)
    return run


def test_cli_renders_into_the_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path, "run", fixture("fail"))
    assert _run_cli(str(run)) == 0
    assert capsys.readouterr().out.strip() == str(run / "index.html")
    assert 'data-verdict="fail"' in (run / "index.html").read_text()


def test_cli_compare_and_out(tmp_path: Path) -> None:
    new = _run_dir(tmp_path, "new", fixture("fail"))
    old = _run_dir(tmp_path, "old", fixture("pass"))
    out = tmp_path / "published" / "report.html"
    assert _run_cli(str(new), "--compare", str(old), "--out", str(out)) == 0
    html = out.read_text()
    assert "Prev. MiB/s" in html and "-8.7 %" in html
    assert 'href="../new/summary.json"' in html
    assert not (new / "index.html").exists()
    # --compare also takes the summary file itself.
    assert _run_cli(str(new), "--compare", str(old / "summary.json")) == 0
    assert "-8.7 %" in (new / "index.html").read_text()


def test_cli_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as info:
        _run_cli(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(info.value) and "no such directory" in str(info.value)
    assert info.value.fix and "summary.json" in info.value.fix


def test_cli_dir_without_summary(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"has no summary\.json \(fix: point at the directory"):
        _run_cli(str(tmp_path))


def test_cli_invalid_json(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, "run", '{"schema": "cxl-harness-summary/1",\n  "verdict": {"ok": tru')
    with pytest.raises(SummaryError) as info:
        _run_cli(str(run))
    message = str(info.value)
    assert str(run / "summary.json") in message and "invalid JSON at line 2" in message
    assert "re-run the harness" in message


def test_cli_invalid_summary(tmp_path: Path) -> None:
    bad = fixture("pass")
    bad["verdict"]["ok"] = "yes"
    run = _run_dir(tmp_path, "run", bad)
    with pytest.raises(SummaryError, match=r"verdict\.ok: 'yes' is not of type 'boolean'"):
        _run_cli(str(run))
    assert not (run / "index.html").exists()


def test_cli_bad_compare_and_out(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, "run", fixture("pass"))
    with pytest.raises(HarnessError, match=r"--compare .*missing: no such directory"):
        _run_cli(str(run), "--compare", str(tmp_path / "missing"))
    with pytest.raises(HarnessError, match=r"--out .*: is a directory"):
        _run_cli(str(run), "--out", str(tmp_path))


def test_undelivered_messages_are_flagged() -> None:
    summary = fixture("fail")
    summary["runs"][1]["messages_delivered"] -= 32
    html = render_html(summary)
    assert 'id="run-order2-shared-mutex" class="failing"' in html
    assert "8,388,576 −32" in text_of(html, "run-order2-shared-mutex")
    assert 'id="run-order2-per-scanner" class="failing"' not in html


def test_inconclusive_target_is_amber_with_its_reason_and_does_not_fail() -> None:
    html = render_html(fixture("pass"))
    row = text_of(html, "target-fence-amortised-header-straddling")
    assert "INCONCLUSIVE" in row and "straddles the bound" in row
    assert "0.982 [0.968, 0.996], n=12" in row
    assert re.search(r'<span class="badge warn" data-verdict="INCONCLUSIVE">INCONCLUSIVE</span>', html)
    assert 'data-verdict="pass"' in html  # the run still passes
    strict = fixture("pass")
    strict["verdict"].update(ok=False, strict=True, failed=["fence-amortised header (straddling)"])
    page = render_html(strict)
    assert 'data-verdict="fail"' in page and "INCONCLUSIVE: median 0.982" in text_of(page, "verdict")


def test_format_1_summaries_are_upgraded_for_compare() -> None:
    old = fixture("v1")
    assert old["schema"] == "cxl-harness-summary/1" and "target" in old["targets"][0]
    summary = validate_summary(old)
    assert summary["schema"] == SCHEMA_ID
    t = summary["targets"][0]
    assert t["bound"] == old["targets"][0]["target"] and t["verdict"] == "MET" and t["interval"] is None
    series = summary["ablations"][0]["series"][0]
    y, e = old["ablations"][0]["series"][0]["y"][0], old["ablations"][0]["series"][0]["spread"][0]
    assert series["interval"][0] == [y - e, y + e]
    html = render_html(fixture("pass"), previous=old)  # compares without error
    assert "Compared with an earlier run" in html


# --------------------------------------------------------------------------- the Mutation section


@functools.lru_cache(maxsize=1)
def real_mutation() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Real results, small: two site mutants (one killed, one equivalent) after the full
    fault-free baseline, two patch mutants (one killed, one equivalent) with one seed, and the
    shortest counterexamples of two catalogue faults."""
    from harness.counterexamples import fault_counterexamples
    from harness.mutate import run_mutation
    from harness.patchmut import run_patches

    sites = run_mutation(["write_header/flush#3", "write_payload/sfence#1"]).to_dict()
    patches = run_patches(["sub-checksum-range", "order0-durable-with-frontier"], seeds=(1,),
                          search=False).to_dict()
    cx = [c.to_dict() for c in fault_counterexamples(["pub_no_payload_flush", "seq_unsealed_read"])]
    return sites, patches, cx


@pytest.mark.checker
def test_mutation_section_renders_the_computed_score() -> None:
    from harness.report.mutation import mutation_section

    sites, patches, cx = real_mutation()
    summary = {**fixture("pass"), "mutation": mutation_section(sites, patches, cx)}
    validate_summary(summary)
    html = render_html(summary)
    text = text_of(html, "mutation")
    assert "not computed" not in text.lower()
    st = summary["mutation"]["sites"]
    assert st["mutants"] == 3 and st["killed"] == 2 and st["equivalent"] == 1  # write_payload/sfence#1: delete, late
    cells = re.findall(r'<td class="num">([^<]*)</td>', html.split('id="mutation-sites"')[1].split("</table>")[0])
    assert cells[:8] == [str(st["sites"]), "3", "2", "1", "0", "0", "0", "100.0 %"], cells
    assert "NO SURVIVOR" in text
    assert "write_payload/sfence#1:delete" in text  # the equivalent one, with its reason
    assert "extra_fence ablation" in text
    assert "sub-checksum-range" in text and "KILLED" in text and "check:payload-checksums" in text
    assert "order0-durable-with-frontier" in text and "EQUIVALENT" in text
    assert "2 mutants: 1 killed, 1 equivalent, 0 survived" in text
    # every caught fault's reduced schedule and its story
    for row in cx:
        assert text_of(html, f"cx-{row['fault'].replace('_', '-')}").startswith(row["fault"])
        assert " ".join(row["story"][0].split()) in text
    assert "rule:unflushed_before_publish" in text and "rule:push_after_seal" in text


def test_a_caught_fault_whose_run_did_not_show_it_again_is_listed_not_dropped() -> None:
    from harness.counterexamples import FaultCounterexample
    from harness.report.mutation import mutation_section

    lost = FaultCounterexample("seq5_gap_no_marker", caught=False).to_dict()
    summary = {**fixture("pass"), "mutation": mutation_section(None, None, [lost])}
    validate_summary(summary)
    html = render_html(summary)
    row = text_of(html, "cx-seq5-gap-no-marker")
    assert row.startswith("seq5_gap_no_marker") and "NOT REPRODUCED" in row
    assert 'id="cx-seq5-gap-no-marker" class="failing"' in html


@pytest.mark.checker
def test_a_patch_mutant_killed_by_the_search_shows_its_story() -> None:
    from harness.checked import ctl_sites, ctl_weaken
    from harness.explore import SCOPES, search_scope, search_story
    from harness.report.mutation import mutation_section

    # a real search counterexample (the weakened announcement: found in the first execution)
    site = next(s["id"] for s in ctl_sites() if s["func"] == "scanner_enter" and s["kind"] == "store")
    ctl_weaken(site, 3)
    try:
        found = search_scope(SCOPES[0], bound=1, stop_at_first=True)
        story = search_story(SCOPES[0].config(1), found.witness or [])
    finally:
        ctl_weaken(None)
    sites, patches, cx = real_mutation()
    killed = {**patches["outcomes"][0], "config": "search (bound 1): base scope", "searched": 1, "story": story}
    patches = {**patches, "outcomes": [killed] + patches["outcomes"][1:]}
    html = render_html({**fixture("pass"), "mutation": mutation_section(sites, patches, cx)})
    text = text_of(html, "mutation-patches") + text_of(html, "mutation")
    assert "counterexample (search)" in html and "broken: push_after_seal" in text
    assert "search (bound 1): base scope seed" not in text  # a search has no seed


def test_mutation_section_absent_is_explained(pass_html: str) -> None:
    assert "Not computed in this run" in text_of(pass_html, "mutation-not-computed")
    assert "cxl-harness mutate --json" in text_of(pass_html, "mutation-not-computed")
    assert 'id="mutation-sites"' not in pass_html


@pytest.mark.checker
def test_cli_report_reads_mutation_json_beside_the_summary(tmp_path: Path) -> None:
    sites, patches, cx = real_mutation()
    for name, data in (("sites", sites), ("patches", patches), ("cx", cx)):
        run = _run_dir(tmp_path, name, fixture("pass"))
        (run / "mutation.json").write_text(json.dumps(data))
        assert _run_cli(str(run)) == 0
        text = text_of((run / "index.html").read_text(), "mutation")
        assert "From mutation.json" in text
        assert ("NO SURVIVOR" in text) == (name == "sites")
        assert ("sub-checksum-range" in text) == (name == "patches")
        assert ("pub_no_payload_flush" in text) == (name == "cx")


def test_cli_report_bad_mutation_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for body, msg in (("{not json", "cannot be read as JSON"), ('{"x": 1}', "not the output of"),
                      ('{"sites": 3}', "not the output of")):
        run = _run_dir(tmp_path, f"r{len(body)}", fixture("pass"))
        (run / "mutation.json").write_text(body)
        with pytest.raises(HarnessError, match=msg):
            render_report(fixture("pass"), run)
