"""Campaigns against real local clusters: cells run through harness.runner, reports and JUnit follow.

Small on purpose (3 nodes, seconds of load): the point is the path —
child process per cell, the run stored as usual, results read back,
expectations evaluated, a time limit that stops a cell and leaves no node
process behind.
"""
from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.campaign import SubprocessCellRunner, parse_campaign, run_campaign

pytestmark = pytest.mark.cluster

BASE = {"nodes": 3, "duration": 3, "rate": 40, "concurrency": 3, "recovery": 1, "seed": 5,
        "target": {"n": 3, "r": 2, "w": 2, "fsync": "never"}}


def _leftover_processes(path: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", str(path)], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if "pgrep" not in ln]


def two_register_cells(tmp_path: Path, duration: float) -> Path:
    """A campaign file of two register cells (vclock, lww) on 3 local nodes: ``two.toml``."""
    camp_file = tmp_path / "two.toml"
    camp_file.write_text(
        f'name = "two"\ntime_limit = 120\n[base]\nnodes = 3\nduration = {duration}\nrate = 40\nconcurrency = 3\n'
        'recovery = 1\nseed = 1\ntarget = { fsync = "never" }\n[matrix]\nmode = ["vclock", "lww"]\n'
        'nemesis = ["none"]\n"workload.name" = ["register"]\n')
    return camp_file


def test_real_cells_store_runs_reports_and_junit(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNHARNESS_HISTORIES", str(tmp_path))
    defn = parse_campaign({"name": "e2e", "time_limit": 120, "base": BASE, "cell": [
        {"id": "cart", "workload": "cart", "mode": "vclock", "nemesis": "none",
         "expect": ["lost_writes == 0", "availability >= 0.5"]},
        {"id": "register", "workload": "register", "mode": "lww", "nemesis": "none",
         "expect": ["max_siblings <= 1000"]}]})
    camp = run_campaign(defn, histories=tmp_path, runner=SubprocessCellRunner(tmp_path))
    for cid, r in camp.cells.items():
        assert r.state == "done", (cid, r.error)
        run = Path(r.run_dir)
        assert run.parent == tmp_path / f"e2e.{cid}"
        for f in ("spec.json", "history.jsonl", "results.json", "report.html"):
            assert (run / f).is_file(), f
        assert r.verdict in ("valid", "invalid", "unknown")
    cart = camp.cells["cart"]
    assert cart.metrics["acked_writes"] > 0 and "lost_writes" in cart.metrics
    assert [e["expect"] for e in cart.expectations] == ["lost_writes == 0", "availability >= 0.5"]
    cases = ET.parse(camp.dir / "junit.xml").getroot().find("testsuite").findall("testcase")
    assert len(cases) == 2 + 2 + 1
    assert not _leftover_processes(tmp_path)


def test_time_limit_stops_the_cell_and_leaves_nothing_running(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNHARNESS_HISTORIES", str(tmp_path))
    defn = parse_campaign({"name": "slow", "base": {**BASE, "duration": 60}, "cell": [
        {"id": "long", "workload": "cart", "nemesis": "none", "time_limit": 8, "expect": ["lost_writes == 0"]}]})
    camp = run_campaign(defn, histories=tmp_path, runner=SubprocessCellRunner(tmp_path, grace=60))
    r = camp.cells["long"]
    assert r.state == "timeout" and "time limit of 8 s" in r.error
    assert r.run_dir and Path(r.run_dir).parent == tmp_path / "slow.long"   # the partial run is found
    assert camp.exit_code() == 3
    assert r.expectations and not r.expectations[0]["ok"] and "not evaluated" in r.expectations[0]["message"]
    assert not _leftover_processes(tmp_path)


def test_ctrl_c_keeps_finished_cells_and_resume_finishes(tmp_path):
    import json
    import os
    import signal
    import sys
    import time

    camp_file = two_register_cells(tmp_path, duration=2)
    env = {**os.environ, "DYNHARNESS_HISTORIES": str(tmp_path / "h")}
    cmd = [sys.executable, "-m", "harness", "campaign", str(camp_file), "--no-live"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 150
    state = {}
    try:
        while time.monotonic() < deadline:   # wait for the first cell to finish and the second to start
            files = list((tmp_path / "h" / "campaigns" / "two").glob("*/campaign.json"))
            if files:
                obj = json.loads(files[0].read_text())
                order = [c["id"] for c in obj["definition"]["cells"]]
                state = [obj["cells"][cid]["state"] for cid in order]
                if state == ["done", "running"]:
                    break
            time.sleep(0.5)
        assert state == ["done", "running"], state
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGINT)          # Ctrl-C: the campaign and its running cell
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out
    assert "--resume" in out
    camp_dir = files[0].parent
    cells = json.loads((camp_dir / "campaign.json").read_text())["cells"]
    first, second = order
    assert cells[first]["state"] == "done" and cells[second]["state"] == "interrupted"
    assert not _leftover_processes(tmp_path)
    res = subprocess.run([sys.executable, "-m", "harness", "campaign", "--resume", str(camp_dir), "--no-live"],
                         env=env, capture_output=True, text=True, timeout=150)
    assert res.returncode == 0, res.stdout + res.stderr
    cells2 = json.loads((camp_dir / "campaign.json").read_text())["cells"]
    assert cells2[first] == cells[first]                      # not run again
    assert cells2[second]["state"] == "done"
    assert not _leftover_processes(tmp_path)
