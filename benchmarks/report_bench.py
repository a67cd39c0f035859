"""How fast a big run's report is built and opened: a 100,000-op run in headless Chromium.

Writes a synthetic cart run of about 100,000 client ops (with a partition
and ~40% lost writes, so the anomaly list is long too), builds its
``report.html``, then opens it in Debian's Chromium (Playwright) several
times and prints: build seconds, file size, time until the page's script has
drawn everything (``performance.now()`` at ready, and wall time around
``goto``), and the time an anomaly click takes to zoom and highlight.
Target (issue 7): the report opens in under 3 s.

    python benchmarks/report_bench.py [--ops 100000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.reports.html import write_run_report  # noqa: E402
from harness.reports.synthetic import write_synthetic_run  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=100_000, help="client ops in the synthetic run")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    chromium = shutil.which("chromium")
    if not chromium:
        print("needs Debian's chromium (apt-get install -y chromium)")
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        # the generator skips slots while a worker is busy: ask for ~30% more to get `ops` invokes
        run = write_synthetic_run(Path(tmp) / "big" / "1", ops=int(args.ops * 1.3), concurrency=10, duration_s=600,
                                  seed=11)
        gen_s = time.perf_counter() - t0
        lines = sum(1 for _ in open(run / "history.jsonl"))
        t0 = time.perf_counter()
        report = write_run_report(run)
        build_s = time.perf_counter() - t0
        size_mb = report.stat().st_size / 1e6
        print(f"history: {lines} lines ({lines // 2} ops), generated in {gen_s:.1f} s")
        print(f"report.html: {size_mb:.1f} MB, built in {build_s:.2f} s")
        ready, wall, click = [], [], []
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, args=ARGS)
            for _ in range(args.repeats):
                page = b.new_page(viewport={"width": 1400, "height": 900})
                errors: list[str] = []

                def on_error(e: object, errors: list[str] = errors) -> None:
                    errors.append(str(e))
                page.on("pageerror", on_error)
                t0 = time.perf_counter()
                page.goto(report.as_uri())
                page.wait_for_selector("body[data-ready='1']", timeout=60_000)
                wall.append(time.perf_counter() - t0)
                ready.append(int(page.get_attribute("body", "data-ready-ms")) / 1000)
                drawn = int(page.get_attribute("#tl-canvas", "data-drawn"))
                timings = page.get_attribute("body", "data-timings")
                t0 = time.perf_counter()
                page.locator("#anomaly-list li").nth(50).click()
                page.wait_for_selector("#selected-ops:not(.hidden)")
                click.append(time.perf_counter() - t0)
                if errors:
                    print("page errors:", errors)
                page.close()
            b.close()
    print(f"open (goto -> everything drawn), wall: median {statistics.median(wall):.2f} s, max {max(wall):.2f} s")
    print(f"open, performance.now() at ready: median {statistics.median(ready):.2f} s")
    print(f"timeline ops drawn at full zoom: {drawn}")
    print(f"in-page script, ms since it started (last open): {timings}")
    print(f"anomaly click -> zoomed + highlighted: median {statistics.median(click) * 1000:.0f} ms")
    print(f"load average during the run (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("target < 3 s (median):", "met" if statistics.median(wall) < 3 else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
