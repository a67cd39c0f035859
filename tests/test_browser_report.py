"""Reports in a real browser: Debian's headless Chromium driven by Playwright.

Each test opens a page, checks what a person would look at (verdict, anomaly
list, timeline drawn), clicks through to the ops of an anomaly, asserts the
console stayed clean, and keeps a screenshot under ``test-artifacts/``. With
``DYNHARNESS_DOC_SCREENSHOTS=1`` the screenshots ``docs/reports.md`` shows are rewritten
under ``docs/img/`` too.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.conftest import require

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DOC_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "img"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    require(shutil.which("chromium") is not None, "needs Debian's chromium (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the machine
        require(False, "needs the playwright Python package")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    pg.close()


def _shot(target, name: str, **kw) -> None:
    """A screenshot (of a page or one element) under test-artifacts/, and docs/img/ when asked."""
    target.screenshot(path=str(ARTIFACTS / name), **kw)
    if os.environ.get("DYNHARNESS_DOC_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / name, DOC_IMAGES / name)


def _open(page, path: Path | str) -> None:
    page.goto(path if isinstance(path, str) else path.as_uri())
    page.wait_for_selector("body", timeout=15000)


def test_run_report_anomaly_click_reaches_its_ops(page, tmp_path):
    from harness.reports.html import write_run_report
    from harness.reports.synthetic import write_synthetic_run

    run = write_synthetic_run(tmp_path / "cart" / "1", ops=1500, seed=5)
    report = write_run_report(run)
    _open(page, report)
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    assert page.inner_text("#verdict").strip().lower() == "invalid"
    items = page.locator("#anomaly-list li")
    assert items.count() > 0
    assert int(page.get_attribute("#tl-canvas", "data-drawn")) > 100
    assert int(page.get_attribute("#lat-canvas", "data-points")) > 100
    page.screenshot(path=str(ARTIFACTS / "report-run.png"), full_page=True)

    first = items.nth(2)
    ops = [int(x) for x in first.inner_text().split("ops ")[-1].replace("…", "").split(",")]
    first.click()
    page.wait_for_selector("#selected-ops:not(.hidden)")
    shown = [int(x) for x in page.locator("#selected-ops tbody tr").evaluate_all("rs => rs.map(r => r.dataset.op)")]
    assert shown[:len(ops)] == ops
    assert int(page.get_attribute("#tl-canvas", "data-highlighted")) >= 1
    assert "sel" in (first.get_attribute("class") or "")
    # the timeline zoomed in: fewer ops drawn than in the whole run
    assert int(page.get_attribute("#tl-canvas", "data-drawn")) < 1000
    page.screenshot(path=str(ARTIFACTS / "report-run-anomaly.png"))
    # hover an op: the tooltip says which op and node
    box = page.locator("#tl-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 48)
    page.locator("#selected-ops tbody tr").last.click()   # jump to the final read
    page.locator("#tl-reset").click()
    page.select_option("#tl-rows", "process")     # Jepsen's one row per process
    page.select_option("#tl-colour", "node")
    assert int(page.get_attribute("#tl-canvas", "data-drawn")) > 100
    page.screenshot(path=str(ARTIFACTS / "report-run-by-process.png"))
    assert page.errors == []


def test_register_report_per_key_drill_down(page, tmp_path):
    from harness.reports.html import write_run_report
    from harness.reports.synthetic import write_synthetic_run

    run = write_synthetic_run(tmp_path / "reg" / "1", workload="register", ops=1200, seed=6)
    _open(page, write_run_report(run))
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    page.locator("#per-key-table .key-show").first.click()
    assert page.eval_on_selector("#tl-key", "s => s.value") != "-1"
    assert int(page.get_attribute("#tl-canvas", "data-highlighted")) >= 1
    page.screenshot(path=str(ARTIFACTS / "report-register-key.png"))
    assert page.errors == []


def test_campaign_index_heat_map_links_to_run_reports(page, tmp_path):
    from harness.campaign import parse_campaign, run_campaign
    from tests.test_campaign import FakeRunner

    camp = run_campaign(parse_campaign({"name": "browser", "matrix": {
        "nrw": [[3, 1, 1], [3, 2, 2], [3, 1, 3]], "mode": ["lww", "vclock"]}, "expect": ["lost_writes == 0"]}),
        histories=tmp_path, runner=FakeRunner(tmp_path))
    _open(page, camp.dir / "index.html")
    assert "3 expectation(s) broken" in page.inner_text("#campaign-status").lower()
    assert page.locator(".heatmap:not(.hidden)").count() == 1
    assert page.locator(".heatmap:not(.hidden) td.hc").count() == 6
    page.screenshot(path=str(ARTIFACTS / "report-campaign.png"), full_page=True)
    page.locator("#metric-tabs button[data-metric='max_siblings']").click()
    assert page.locator(".heatmap:not(.hidden)").get_attribute("data-metric") == "max_siblings"
    page.locator("#metric-tabs button[data-metric='lost_writes']").click()
    page.locator(".heatmap:not(.hidden) td.hc a").first.click()
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    assert page.inner_text("#verdict").strip().lower() in ("valid", "invalid")
    assert page.errors == []


def test_served_histories_index(page, tmp_path):
    from harness.cli.serve import make_server
    from harness.reports.synthetic import write_synthetic_run

    write_synthetic_run(tmp_path / "demo" / "20260101T000000", ops=200, seed=1)
    srv = make_server(tmp_path, 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        _open(page, f"http://127.0.0.1:{srv.server_address[1]}/")
        page.locator("#runs a").first.click()
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        page.screenshot(path=str(ARTIFACTS / "report-served.png"))
        assert page.errors == []
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_served_index_filters_rows_and_links_to_reports(page, tmp_path):
    """The index of ``dynharness serve``: typing and selecting filters reduce the rows, the filters
    live in the address, a link opens a run's report; its screenshot is the one in docs/reports.md."""
    from harness.campaign import parse_campaign, run_campaign
    from harness.cli.serve import make_server
    from harness.reports.synthetic import write_synthetic_run
    from tests.test_campaign import FakeRunner

    root = tmp_path / "histories"
    runs = [("cart-lww-partition", "20260105T101500", dict(mode="lww")),
            ("cart-vclock-partition", "20260106T091000", dict(mode="vclock", lost_share=0.0)),
            ("register-lww-nofaults", "20260107T120000", dict(workload="register", partition=False)),
            ("cart-dvv-nofaults", "20260108T170500", dict(mode="dvv", lost_share=0.0, partition=False))]
    for i, (name, stamp, kw) in enumerate(runs):
        write_synthetic_run(root / name / stamp, ops=200, seed=i + 1, **kw)   # with nodes/n1.log ... n5.log
    run_campaign(parse_campaign({"name": "lww-vs-vclock", "matrix": {"mode": ["lww", "vclock"]},
                                 "expect": ["lost_writes == 0"]}), histories=root, runner=FakeRunner(root))
    srv = make_server(root, 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}/"
    rows = "#runs tbody tr:not(.hidden)"
    try:
        page.set_viewport_size({"width": 1280, "height": 760})
        _open(page, base)
        page.wait_for_selector("body[data-ready='1']")
        total = page.locator(rows).count()
        assert total == 6 and page.locator("#campaigns tbody tr").count() == 1
        page.fill("#f-test", "cart-")
        assert page.locator(rows).count() == 3   # not the campaign's cells (lww-vs-vclock.lww, ...)
        page.select_option("#f-verdict", "invalid")
        shown = page.locator(rows)
        assert shown.count() == 1 and all(v == "invalid" for v in shown.evaluate_all("rs => rs.map(r => r.dataset.verdict)"))
        assert "verdict=invalid" in page.url and "test=cart-" in page.url
        page.click("#f-clear")
        page.select_option("#f-workload", "register")
        assert page.locator(rows).count() == 1
        page.fill("#f-test", "vclock")
        assert page.locator(rows).count() == 0 and page.is_visible("#no-match")
        page.click("#f-clear")
        page.fill("#f-since", "2026-01-07")
        assert page.locator(rows).count() == 2   # 01-07 and 01-08 (the fake campaign's run folders have no date)
        assert page.locator("#runs tbody tr[data-day='2026-01-05']:not(.hidden)").count() == 0
        page.click("#f-clear")
        page.select_option("#f-fault", "partition")
        assert page.locator(rows).count() == 4   # the campaign's synthetic cells have a partition too
        page.click("#f-clear")
        assert page.locator(rows).count() == total
        _shot(page, "serve-index.png", full_page=True)
        # a filtered view from its address, then a link to a report
        _open(page, base + "?workload=cart&verdict=valid")
        page.wait_for_selector("body[data-ready='1']")
        assert page.input_value("#f-verdict") == "valid" and page.locator(rows).count() >= 2
        log = page.locator(f"{rows} .logs a").first.get_attribute("href")
        page.locator(f"{rows} a.report").first.click()
        page.wait_for_selector("body[data-ready='1'] #verdict", timeout=15000)
        assert page.inner_text("#verdict").strip().lower() == "valid"
        assert page.errors == []
        _open(page, base + log)   # a node log shows as text in the page, not a download
        assert "n1 synthetic log" in page.inner_text("body")
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_compressed_report_data_unpacks_in_the_browser(page, tmp_path, monkeypatch):
    from harness.reports import render
    from harness.reports.html import write_run_report
    from harness.reports.synthetic import write_synthetic_run

    monkeypatch.setattr(render, "COMPRESS_ABOVE", 1000)   # big runs' path, on a small run
    run = write_synthetic_run(tmp_path / "gz" / "1", ops=800, seed=8)
    report = write_run_report(run)
    assert 'data-encoding="gzip-base64"' in report.read_text()
    _open(page, report)
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    assert int(page.get_attribute("#tl-canvas", "data-drawn")) > 100
    page.locator("#anomaly-list li").first.click()
    assert int(page.get_attribute("#tl-canvas", "data-highlighted")) >= 1
    assert page.errors == []


@pytest.fixture
def counterexample_report(tmp_path):
    """The hand-built register run (an invalid key, a valid one, one never reached, n2 wiped and
    answering again 4.3 s later), checked by the real linearizability checker, with its report."""
    from harness.reports.synthetic import write_counterexample_run
    from harness.runs import check_run

    run = write_counterexample_run(tmp_path / "counterexample" / "1", down_s=(1.0, 5.3))
    check_run(run, ["linearizable"])
    return run


def _band_columns(page, kind_rgb_max: int = 225) -> list[int]:
    """x of the timeline canvas columns shaded by a fault band, read from the nemesis row's pixels."""
    return page.evaluate("""() => {
      const cv = document.getElementById('tl-canvas'), g = cv.getContext('2d'), dpr = window.devicePixelRatio || 1;
      const y = Math.round(23 * dpr), row = g.getImageData(0, y, cv.width, 1).data, out = [];
      for (let x = 0; x < cv.width; x++) { const k = 4 * x; if (row[k + 3] > 0 && row[k] < %d) out.push(x / dpr); }
      return out;
    }""" % kind_rgb_max)


def test_wipe_band_is_as_wide_as_the_node_was_down(page, counterexample_report):
    lines = [json.loads(x) for x in (counterexample_report / "history.jsonl").read_text().splitlines()]
    wiped = next(o for o in lines if o["f"] == "wipe" and o["type"] != "invoke")["effective"]
    back = next(o for o in lines if o["f"] == "start" and o["type"] != "invoke")["effective"]
    end = max(o["time"] for o in lines)
    _open(page, counterexample_report / "report.html")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    cols = _band_columns(page)
    width = page.evaluate("() => document.getElementById('tl-canvas').parentElement.clientWidth")
    plot = width - 64 - 8   # report.js: LEFT = 64, 8 px right margin
    assert cols, "no band drawn"
    assert abs((max(cols) - min(cols) + 1) - (back - wiped) / end * plot) <= 3   # 4.29 s of 5.8 s
    assert abs(min(cols) - (64 + wiped / end * plot)) <= 2
    assert (back - wiped) / 1e9 > 4.2
    _shot(page.locator("#timeline"), "report-fault-bands.png")
    # the fault's own button zooms to it: the band fills the view but for the 10% padding each side
    page.locator(".tl-window").first.click()
    zoomed = _band_columns(page)
    assert abs((max(zoomed) - min(zoomed) + 1) - plot / 1.2) <= 4
    assert page.errors == []


def test_linearizability_view_table_and_drawn_counterexample(page, counterexample_report):
    _open(page, counterexample_report / "report.html")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    rows = page.locator("#per-key-table tbody tr")
    assert rows.evaluate_all("rs => rs.map(r => [r.dataset.key, r.dataset.label])") == [
        ["x", "invalid"], ["z", "not reached"], ["y", "valid"]]
    z = page.locator("#per-key-table tr[data-key='z']").inner_text()
    assert "never searched" in z and "stopped at the first non-linearizable key" in z and "UNKNOWN" not in z.upper()
    assert "not a failure" in page.inner_text("#linearizability")
    # the drawing: one row per process, the red op that cannot be placed, ending at the dashed cut
    svg = page.locator("#counterexample svg.linear-view")
    assert svg.is_visible()
    labels = page.locator("#counterexample svg > text").all_text_contents()
    assert [t for t in labels if t.startswith("process")] == [f"process {i}" for i in range(5)]
    blocked = page.locator("#counterexample g.cx-op.blocked")
    assert blocked.count() == 1 and blocked.get_attribute("data-process") == "2"
    assert blocked.locator("text").text_content() == "✗ read -> 1"
    box, cut = blocked.locator("rect").bounding_box(), page.locator("#counterexample line.cx-cut").bounding_box()
    assert abs((box["x"] + box["width"]) - cut["x"]) <= 2.5     # it completed at the cut
    order = page.locator("#counterexample g.cx-op.prefix text").all_text_contents()
    assert order == ["#1 write 1", "#2 write 2", "#3 read -> 2"]
    assert page.locator("#counterexample g.cx-op.in-proof").count() == 3
    # the raw JSON is still there, folded
    assert not page.locator("#linearizability details pre").is_visible()
    _shot(page.locator("#linearizability"), "report-linearizability.png")
    page.locator("#per-key-table tr[data-key='x'] .key-show").click()
    assert int(page.get_attribute("#tl-canvas", "data-highlighted")) >= 1
    assert page.errors == []


def test_timeline_ticks_stay_distinct_at_every_zoom(page, tmp_path):
    from harness.reports.html import write_run_report
    from harness.reports.synthetic import write_synthetic_run

    run = write_synthetic_run(tmp_path / "ticks" / "1", workload="register", ops=600, seed=9, duration_s=5.0)
    _open(page, write_run_report(run))
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    page.locator("#timeline").scroll_into_view_if_needed()
    box = page.locator("#tl-canvas").bounding_box()
    width = page.evaluate("() => document.getElementById('tl-canvas').parentElement.clientWidth")
    page.mouse.move(box["x"] + 64 + (width - 72) * 2.58 / 5.0, box["y"] + 60)   # around 2.58 s, as in issue 21
    seen_decimals = set()
    for _ in range(16):   # from the whole run down to the 0.05 ms the view allows
        labels = json.loads(page.get_attribute("#tl-canvas", "data-ticks"))
        assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
        values = [float(x.rstrip("s")) for x in labels]
        steps = {round(b - a, 9) for a, b in zip(values, values[1:])}
        assert len(steps) == 1, labels                      # evenly spaced as printed
        step = steps.pop()
        assert step > 0 and f"{step:.1e}"[0] in "125"         # from the 1-2-5 series
        seen_decimals.add(len(labels[0].rstrip("s").partition(".")[2]))
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(30)
    assert max(seen_decimals) >= 5 and min(seen_decimals) <= 1
    _shot(page.locator("#timeline"), "report-ticks-zoomed.png")
    assert page.errors == []
