"""The local backend with real node processes: lifecycle, signals, clocks, iptables, re-attach."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.backends import attach
from harness.backends.base import ClusterConfig
from harness.backends.local import LIBFAKETIME, LocalBackend, iptables_usable
from harness.spec import target_defaults
from tests.conftest import require
from targets.dynamo.admin import request
from targets.dynamo.target import DynamoTarget

pytestmark = pytest.mark.cluster


def node_pids(run_dir: Path) -> list[int]:
    """Processes whose command line mentions this run's folder (our nodes)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if str(run_dir).encode() in (p / "cmdline").read_bytes():
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def chains() -> str:
    return subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout if iptables_usable() else ""


def health(node) -> dict:
    """The node's ``/admin/health`` answer, asked with the cluster's secret (OSError: no answer)."""
    status, answer = request(node, "GET", "/admin/health", timeout=3)
    assert status == 200, (status, answer)
    return answer


@pytest.fixture
def cluster(tmp_path: Path):
    b = LocalBackend()
    try:
        nodes = b.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1", "n2", "n3"), settings=target_defaults(), run_dir=tmp_path))
        yield b, nodes, tmp_path
    finally:
        b.teardown()


def test_lifecycle_and_teardown_leave_nothing(cluster) -> None:
    b, nodes, run_dir = cluster
    assert [n.host for n in nodes] == ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    assert len({n.port for n in nodes}) == 1
    assert all(health(n)["ok"] for n in nodes)
    assert len(node_pids(run_dir)) >= 3
    state = json.loads((run_dir / "cluster.json").read_text())
    assert state["backend"] == "local" and [n["name"] for n in state["nodes"]] == ["n1", "n2", "n3"]
    chain = b.firewall_chain
    if "iptables" in b.capabilities:
        assert f"-A INPUT -j {chain}" in chains()
    b.teardown()
    assert node_pids(run_dir) == []
    assert not chain or chain not in chains()
    assert all((run_dir / "nodes" / f"{n}.log").exists() for n in ("n1", "n2", "n3"))


def test_kill_start_pause_resume_wipe(cluster) -> None:
    b, nodes, _ = cluster
    n2 = nodes[1]
    b.kill("n2")
    assert not b.is_running("n2")
    with pytest.raises(OSError):
        health(n2)
    Path(n2.data_dir, "marker").write_text("x")
    b.wipe("n2")
    assert not Path(n2.data_dir, "marker").exists()
    b.start("n2")
    assert b.is_running("n2") and health(n2)["ok"]
    b.pause("n3")
    with pytest.raises(OSError):  # a paused node accepts TCP but never answers
        health(nodes[2])
    assert b.is_running("n3")
    b.resume("n3")
    assert health(nodes[2])["ok"]


def test_faketime_clock_file_moves_the_node_clock(cluster) -> None:
    b, nodes, _ = cluster
    require(os.path.exists(LIBFAKETIME), "libfaketime not installed")
    assert "faketime" in b.capabilities
    n1 = nodes[0]
    before = b.target.admin.clock(n1) - time.time()
    b.write_file("n1", n1.clock_file, b"+3600s\n")
    after = b.target.admin.clock(n1) - time.time()
    assert 3500 < after - before < 3700


def test_attach_controls_a_cluster_left_running(tmp_path: Path) -> None:
    b = LocalBackend()
    b.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1", "n2", "n3"), settings=target_defaults(), run_dir=tmp_path,
                          extra={"leave_running": True}))
    chain = b.firewall_chain
    try:
        again = attach(tmp_path)
        assert [n.name for n in again.nodes()] == ["n1", "n2", "n3"]
        assert all(again.is_running(n) for n in ("n1", "n2", "n3"))
        assert again.firewall_chain == chain
        again.kill("n1")
        assert not b.is_running("n1")
        again.teardown()
        assert node_pids(tmp_path) == []
        assert not chain or chain not in chains()
    finally:
        b.teardown()


def test_run_executes_on_the_host(cluster) -> None:
    b, _, _ = cluster
    r = b.run("n1", ["echo", "hello"])
    assert r.returncode == 0 and r.stdout.strip() == "hello"
    assert b.run("n1", ["/nonexistent-binary"]).returncode == 127
