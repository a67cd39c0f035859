"""`dynharness heal --teardown` ends a cluster kept with --leave-running: no node process, no chain left."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.backends.base import ClusterConfig
from harness.backends.local import LocalBackend, iptables_usable
from harness.spec import target_defaults
from tests.conftest import require
from targets.dynamo.target import DynamoTarget

ROOT = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    """Running (a zombie child of this test process that nobody reaped yet counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _chains() -> str:
    return subprocess.run(["iptables", "-S"], capture_output=True, text=True, timeout=10).stdout


def test_heal_teardown_stops_a_cluster_left_running(tmp_path: Path) -> None:
    require(os.geteuid() == 0 and iptables_usable(), "needs root and a working iptables")
    backend = LocalBackend()
    backend.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1", "n2", "n3"), settings=target_defaults(), run_dir=tmp_path,
                                extra={"leave_running": True}))
    chain = backend.firewall_chain
    pids = [n["pid"] for n in json.loads((tmp_path / "cluster.json").read_text())["nodes"]]
    assert pids and all(_alive(p) for p in pids)
    assert chain in _chains()
    # the harness that made it is gone: only the state file is left
    p = subprocess.run([sys.executable, "-m", "harness", "heal", "--teardown", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "torn down" in p.stdout
    assert not any(_alive(p) for p in pids)
    assert chain not in _chains()
    # a second call finds a stopped cluster and says so
    p = subprocess.run([sys.executable, "-m", "harness", "heal", "--teardown", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0 and "nothing to heal" in p.stdout, p.stdout + p.stderr
