"""etcd on Docker, end to end as a user runs it: real partitions of a real store.

Each member has a network namespace of its own, so the partition's iptables rules cut etcd's
peer traffic (on the local backend they cannot, and the run refuses). n1 and n2 are cut off from
the majority for ~10 s. With linearizable reads (etcd's default) the register history must stay
linearizable; with serializable reads the minority answers from its own, stale state and the
linearizability checker must report it. Both runs must show the partition probed as taken effect.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends.docker_cluster import L_CLUSTER, LABEL, connect_engine, engine_available
from tests.conftest import require

pytestmark = [pytest.mark.docker, pytest.mark.cluster, pytest.mark.slow]


def run_etcd(tmp_path: Path, reads: str) -> tuple[int, dict, list[dict], str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--no-display", "--histories", str(tmp_path), "--name", reads,
         "--backend", "docker", "--target", "etcd", "--workload", "register", "--keys", "3",
         "--nemesis", "partition", "--partition", "split:n1,n2|n3,n4,n5", "--set", "nemesis.start_at=3",
         "--nemesis-interval", "10", "--duration", "25", "--rate", "150", "--recovery", "3", "--seed", "1",
         "--set", f"target.reads={reads}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    run_dir = next((tmp_path / reads).glob("2*"))
    results = json.loads((run_dir / "results.json").read_text())
    ops = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    cluster = json.loads((run_dir / "cluster.json").read_text())["cluster"]
    return proc.returncode, results, ops, proc.stderr, cluster


def partitions_took_effect(ops: list[dict]) -> bool:
    started = [op for op in ops if op["process"] == "nemesis" and op["type"] == "info" and op["f"] == "start-partition"]
    return bool(started) and all(op["probe"]["ok"] and op["mechanism"] == "iptables" for op in started)


@pytest.mark.parametrize("reads, exit_code, verdict", [("linearizable", 0, "valid"), ("serializable", 1, "invalid")])
def test_etcd_under_a_minority_partition(tmp_path: Path, reads: str, exit_code: int, verdict: str) -> None:
    require(engine_available(), "no Docker engine: install docker.io and start dockerd (.ci/docker-setup.sh)")
    code, results, ops, stderr, cluster = run_etcd(tmp_path, reads)
    assert code == exit_code, stderr[-2000:]
    assert partitions_took_effect(ops), "no partition was probed as cutting etcd's traffic"
    lin = results["checkers"]["linearizable"]
    assert lin["verdict"] == verdict, lin.get("reason")
    if verdict == "invalid":
        assert "cannot be linearized" in lin["reason"]
    client = connect_engine()
    try:                                          # the run removed its containers and network
        assert client.containers.list(all=True, filters={"label": [f"{L_CLUSTER}={cluster}"]}) == []
        assert client.networks.list(filters={"label": [f"{LABEL}=1", f"{L_CLUSTER}={cluster}"]}) == []
    finally:
        client.close()
