"""Whole runs against real local clusters: complete histories, and cleanup when killed.

Each test starts a real 3-node cluster of the reference store (node
processes on 127.0.0.11-13), through ``run_test`` or the CLI in a
subprocess, and checks what is left afterwards: the history the reader
accepts, no node process, no iptables chain.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends import attach
from harness.history import read_history
from harness.runner import run_test
from harness.runs import check_run
from harness.spec import load_spec
from tests.test_local_backend import chains, node_pids

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[1]


def test_run_produces_complete_history_with_faults(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    spec = load_spec(None, {"histories": str(tmp_path), "nodes": 3, "duration": 4, "rate": 100, "concurrency": 4,
                            "recovery": 1, "seed": 3, "nemesis.interval": 1.5, "final_read_timeout": 20})
    out = run_test(spec)
    assert capfd.readouterr() == ("", ""), "run_test(display=False) prints nothing"
    assert out.exit_code in (0, 1, 2) and out.error is None
    h = read_history(out.run_dir / "history.jsonl")
    assert not h.warnings
    assert all(c is not None for _, c in h.pairs()), "a finished run leaves no open invoke"
    clients = h.client_ops()
    assert len(clients) > 20 and {o.node for o in clients} == {"n1", "n2", "n3"}
    nem = h.nemesis_ops()
    assert any(o.f == "start-partition" and o.type in ("info", "fail") for o in nem)
    assert nem[-1].f == "heal" and nem[-1].type == "info"
    assert nem[-1].get("probe", {}).get("ok") is True, nem[-1]       # the runner's heal is verified too
    assert nem[-1].get("mechanism") == "heal"
    finals = {o.key for o in clients if o.get("final") and o.type == "ok"}
    assert finals == {f"cart-{i}" for i in range(10)}
    assert node_pids(out.run_dir) == []
    assert all((out.run_dir / "nodes" / f"n{i}.log").stat().st_size > 0 for i in (1, 2, 3))
    results = json.loads((out.run_dir / "results.json").read_text())
    assert results["verdict"] == out.verdict and "lost-writes" in results["checkers"]
    assert json.loads((out.run_dir / "nemesis-schedule.json").read_text())["actions"]
    # the faults as they ran are kept with the verdict, one row per completed nemesis op
    done = [o for o in nem if o.type != "invoke"]
    assert [(r["f"], r["type"]) for r in results["faults"]] == [(o.f, o.type) for o in done]
    assert results["faults"][-1]["mechanism"] == "heal" and results["faults"][-1]["probe"]["ok"] is True
    shown = subprocess.run([sys.executable, "-m", "harness", "check", str(out.run_dir), "--no-write"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "200"})
    assert "faults as they ran" in shown.stdout and "partition {" in shown.stdout, shown.stdout + shown.stderr


def start_cli(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness", "run", "--histories", str(tmp_path), "--nodes", "3",
                             "--duration", "60", "--rate", "100", "--concurrency", "4", "--no-display",
                             "--nemesis-interval", "1", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_ops(tmp_path: Path, proc: subprocess.Popen[str], count: int = 30, timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        hist = list(tmp_path.glob("*/2*/history.jsonl"))
        if hist and hist[0].read_bytes().count(b"\n") >= count and (hist[0].parent / "cluster.json").exists():
            return hist[0].parent
        time.sleep(0.2)
    stop_harness(proc, tmp_path)
    raise AssertionError("the run did not get going")


def stop_harness(proc: subprocess.Popen[str], tmp_path: Path) -> None:
    """A test giving up on a harness it started: SIGTERM first (the harness heals and tears down),
    SIGKILL only if it does not stop, then tear down whatever cluster it left under ``tmp_path``.
    A bare ``proc.kill()`` here left iptables chains on the host (kill -9: no cleanup runs)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    for state in tmp_path.glob("*/2*/cluster.json"):
        try:
            attach(state.parent).teardown()
        except Exception:  # noqa: BLE001 - best effort on a failure path; the failure is what is reported
            pass


def gone(run_dir: Path, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while node_pids(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    return node_pids(run_dir) == []


def test_sigkill_mid_run_leaves_a_readable_history(tmp_path: Path) -> None:
    proc = start_cli(tmp_path)
    run_dir = wait_for_ops(tmp_path, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    try:
        h = read_history(run_dir / "history.jsonl")
        assert len(h) >= 30
        assert all(o.type == "invoke" for o, c in h.pairs() if c is None) and h.pairs()
        assert gone(run_dir), "nodes die with their harness (PDEATHSIG)"
    finally:
        attach(run_dir).teardown()  # what `dynharness heal` does: removes the iptables chain left behind
    state = json.loads((run_dir / "cluster.json").read_text())
    assert not state["firewall_chain"] or state["firewall_chain"] not in chains()
    checked = check_run(run_dir, write=False)    # no final reads, no recorded end: never valid
    assert checked["verdict"] in ("unknown", "invalid")
    assert checked["checkers"]["lost-writes"]["verdict"] == "unknown"
    assert checked["checkers"]["lost-writes"]["reason"].startswith("no final reads: the run recorded no end")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_cleans_up_nodes_and_firewall(tmp_path: Path, sig: int) -> None:
    proc = start_cli(tmp_path)
    run_dir = wait_for_ops(tmp_path, proc)
    chain = json.loads((run_dir / "cluster.json").read_text())["firewall_chain"]
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert gone(run_dir, timeout=1)
    assert not chain or chain not in chains()
    h = read_history(run_dir / "history.jsonl")
    assert h.nemesis_ops()[-1].f == "heal"
    assert json.loads((run_dir / "results.json").read_text())["run_error"] == "interrupted"


def test_leave_running_keeps_the_cluster_until_attach_tears_it_down(tmp_path: Path) -> None:
    spec = load_spec(None, {"histories": str(tmp_path), "nodes": 3, "duration": 1, "rate": 20, "concurrency": 2,
                            "recovery": 0, "nemesis.faults": [], "leave_running": True, "seed": 1})
    out = run_test(spec)
    chain = json.loads((out.run_dir / "cluster.json").read_text())["firewall_chain"]
    try:
        assert out.error is None
        assert len(node_pids(out.run_dir)) >= 3, "nodes outlive the run"
        backend = attach(out.run_dir)
        assert all(backend.is_running(n) for n in ("n1", "n2", "n3"))
        assert not chain or chain in chains(), "the firewall chain stays with the cluster"
    finally:
        attach(out.run_dir).teardown()
    assert gone(out.run_dir, timeout=5)
    assert not chain or chain not in chains()
