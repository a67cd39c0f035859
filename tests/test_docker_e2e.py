"""End to end on Docker: 5 containers, the cart workload, a partition, a clock skew and a crash.

The nemesis schedule is fixed (replayed from a file) so every run has all
three faults. Checked: every client and nemesis op completed, every fault's
probe confirmed it took effect, the checkers ran, and no container or
network is left afterwards.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.backends.docker_cluster import L_CLUSTER, LABEL, connect_engine, engine_available
from harness.history import read_history
from harness.runner import run_test
from harness.spec import load_spec
from tests.conftest import require

pytestmark = [pytest.mark.docker, pytest.mark.cluster, pytest.mark.slow]

HALVES = {"n1": ["n3", "n4", "n5"], "n2": ["n3", "n4", "n5"], "n3": ["n1", "n2"], "n4": ["n1", "n2"],
          "n5": ["n1", "n2"]}
SCHEDULE = [      # roomy: a partition's probe alone takes ~5 s on a loaded machine, and ops run in order
    (1.0, "start-partition", {"topology": "majorities-ring", "grudge": HALVES}),
    (5.0, "stop-partition", None),
    (9.0, "start-clock", {"mode": "bump", "nodes": ["n2"], "offset_ms": 90_000}),
    (11.0, "stop-clock", {"nodes": ["n2"]}),
    (12.0, "kill", {"nodes": ["n4"]}),
    (14.0, "start", {"nodes": ["n4"]}),
    (19.0, "heal", None),
]
FAULTS_STARTED = {"start-partition", "stop-partition", "start-clock", "stop-clock", "kill", "start"}


def fixed_schedule_dir(tmp_path: Path) -> Path:
    """A directory holding the nemesis-schedule.json above (what --replay-schedule reads)."""
    d = tmp_path / "schedule"
    d.mkdir()
    doc = {"version": 1, "actions": [{"at": at, "f": f, "value": v} for at, f, v in SCHEDULE]}
    (d / "nemesis-schedule.json").write_text(json.dumps(doc))
    return d


def run_with_faults(tmp_path: Path, backend: str, options: dict[str, Any] | None = None):
    """Run the cart workload on ``backend`` through the real runner; return (outcome, history)."""
    over: dict[str, Any] = {
        "name": f"{backend}-e2e", "backend": backend, "nodes": 5, "duration": 22.0, "rate": 60,
        "concurrency": 5, "recovery": 3.0, "final_read_timeout": 30.0, "seed": 11, "workload.name": "cart",
        "histories": str(tmp_path / "histories"), "replay_schedule": str(fixed_schedule_dir(tmp_path)),
        "nemesis.faults": ["partition", "clock", "crash"]}
    for k, v in (options or {}).items():
        over[f"{backend}.{k}"] = v
    outcome = run_test(load_spec(None, over), display=False)
    return outcome, read_history(Path(outcome.run_dir) / "history.jsonl")


def assert_complete_and_probed(outcome, history) -> None:
    """Every op completed; every fault took effect according to its probe; checkers ran."""
    assert outcome.verdict in ("valid", "invalid"), outcome.verdict      # checked, not "unknown"/failed
    open_ops = [inv for inv, done in history.pairs() if done is None]
    assert open_ops == []
    finals = [o for o in history.client_ops() if o.type == "ok" and o.extra.get("final")]
    assert finals, "no final reads"
    done = {o.f: o for o in history.nemesis_ops() if o.type != "invoke"}
    assert FAULTS_STARTED <= set(done), sorted(done)
    for f in FAULTS_STARTED:
        probe = done[f].extra.get("probe") or {}
        assert done[f].type == "info" and probe.get("ok") is True, (f, done[f].type, probe)
    assert done["start-partition"].extra.get("mechanism") == "iptables"
    results = json.loads((Path(outcome.run_dir) / "results.json").read_text())
    assert "lost-writes" in results["checkers"]
    logs = sorted(p.name for p in (Path(outcome.run_dir) / "nodes").iterdir() if p.suffix == ".log")
    assert logs == [f"n{i}.log" for i in range(1, 6)]


def test_docker_run_with_partition_clock_and_crash_leaves_nothing(tmp_path):
    require(engine_available(), "no Docker engine: install docker.io and start dockerd (.ci/docker-setup.sh)")
    outcome, history = run_with_faults(tmp_path, "docker", {"reuse": False})
    assert_complete_and_probed(outcome, history)
    cluster = json.loads((Path(outcome.run_dir) / "cluster.json").read_text())["cluster"]
    client = connect_engine()
    try:
        assert client.containers.list(all=True, filters={"label": [f"{L_CLUSTER}={cluster}"]}) == []
        assert client.networks.list(filters={"label": [f"{LABEL}=1", f"{L_CLUSTER}={cluster}"]}) == []
    finally:
        client.close()
