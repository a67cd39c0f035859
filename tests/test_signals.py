"""SIGTERM and SIGHUP stop a real run promptly and heal everything, even with SIGINT ignored (as in a
background job started by a script); a campaign cell's time limit really ends the cell.

The cluster tests run a real 3-node local cluster of the reference store under a partition nemesis
and check what the run left, by its own pids and iptables chain (other runs may share the host).
The first two pin the handlers' rules in-process.
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

from harness.campaign import CampaignDef, Cell, SubprocessCellRunner
from harness.history import read_history
from harness.signals import STOP_SIGNALS, Interrupted, raise_pending, shielded, stop_on_signals
from tests.test_local_backend import chains, node_pids
from tests.test_runner_cluster import ROOT, stop_harness

SMALL = {"nodes": 3, "rate": 50, "concurrency": 2, "seed": 2, "nemesis.faults": ["partition"], "nemesis.interval": 1}


def ignore_sigint() -> None:
    """A child as a script's background job has it: SIGINT ignored. SIGTERM and SIGHUP are put
    back to their defaults, so a test session itself started under ``nohup`` (SIGHUP ignored,
    which the harness honours on purpose) still tests what it means to."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture
def dispositions():
    saved = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_handlers_override_an_ignored_sigint_but_keep_nohup(dispositions) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # a background job of a script
    signal.signal(signal.SIGHUP, signal.SIG_IGN)     # nohup
    with stop_on_signals():
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        with pytest.raises(Interrupted) as e:
            signal.raise_signal(signal.SIGINT)
        assert e.value.signum == signal.SIGINT and isinstance(e.value, KeyboardInterrupt)
        signal.raise_signal(signal.SIGTERM)          # ignored while the first interrupt unwinds
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_shielded_code_is_not_interrupted_and_keeps_the_signal(dispositions) -> None:
    with stop_on_signals():
        with shielded():
            signal.raise_signal(signal.SIGTERM)      # nothing was stopping: kept for later
            signal.raise_signal(signal.SIGINT)       # (the first one counts)
        with pytest.raises(Interrupted) as e:
            raise_pending()
        assert e.value.signum == signal.SIGTERM
        raise_pending()                              # nothing left


def partitioned(run_dir: Path) -> bool:
    """A partition is in effect (its start journaled as done)."""
    try:
        ops = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        return False
    return any(o["f"] == "start-partition" and o["type"] == "info" for o in ops)


def left_behind(run_dir: Path) -> list[str]:
    """This run's node processes and iptables chain, if any are still there."""
    chain = json.loads((run_dir / "cluster.json").read_text())["firewall_chain"]
    return [f"pid {p}" for p in node_pids(run_dir)] + ([chain] if chain and chain in chains() else [])


@pytest.mark.cluster
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_a_run_with_sigint_ignored(tmp_path: Path, sig: int) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--histories", str(tmp_path), "--duration", "60",
                             "--no-display", "--nodes", "3", "--rate", "50", "--concurrency", "2", "--seed", "2",
                             "--nemesis", "partition", "--nemesis-interval", "1"], cwd=ROOT, preexec_fn=ignore_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = None
    try:
        deadline = time.monotonic() + 60
        while not (run_dir and partitioned(run_dir)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            found = list(tmp_path.glob("*/2*/history.jsonl"))
            run_dir = found[0].parent if found else None
            time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:        # the test gave up on it: stop it cleanly (a kill -9 left chains)
            stop_harness(proc, tmp_path)
    name = signal.Signals(sig).name
    assert proc.returncode == 130 and f"interrupted by {name}" in err and "Traceback" not in err, err
    assert took < 10, f"took {took:.1f} s to stop"
    assert left_behind(run_dir) == []
    history = read_history(run_dir / "history.jsonl")
    assert history.nemesis_ops()[-1].f == "heal" and history.nemesis_ops()[-1].type == "info"
    end = json.loads((run_dir / "results.json").read_text())["run_end"]
    assert end["state"] == "interrupted" and end["signal"] == name and not end["final_reads_done"]
    checked = subprocess.run([sys.executable, "-m", "harness", "check", str(run_dir)], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
    assert checked.returncode == 2, checked.stdout + checked.stderr           # unknown, not valid nor lost writes
    assert f"no final reads: run interrupted by {name}" in checked.stdout


def cell_result(tmp_path: Path, grace: float):
    cell = Cell("slow", {}, {**SMALL, "name": "sig.slow", "duration": 60}, time_limit=6)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)    # inherited by the cell, as from a backgrounded campaign
    try:
        t0 = time.monotonic()
        res = SubprocessCellRunner(tmp_path, grace=grace).run(CampaignDef("sig", "", (cell,)), cell)
        return res, time.monotonic() - t0
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.mark.cluster
def test_cell_time_limit_ends_the_cell_and_heals(tmp_path: Path) -> None:
    res, took = cell_result(tmp_path, grace=30)
    assert res.state == "timeout" and not res.killed and "time limit of 6 s reached" in res.error
    assert took < 6 + 10, took
    run_dir = Path(res.run_dir)
    assert partitioned(run_dir), "the cell was stopped mid-partition"
    assert left_behind(run_dir) == []
    assert json.loads((run_dir / "results.json").read_text())["run_end"]["signal"] == "SIGTERM"


@pytest.mark.cluster
def test_cell_killed_after_its_grace_is_torn_down_and_says_so(tmp_path: Path) -> None:
    res, took = cell_result(tmp_path, grace=0)
    assert res.state == "timeout" and res.killed, res
    assert "killed (SIGKILL): its cluster was torn down by the campaign" in res.error
    assert took < 6 + 10, took
    deadline = time.monotonic() + 5                       # nodes die with their harness (PDEATHSIG)
    while left_behind(Path(res.run_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left_behind(Path(res.run_dir)) == []
