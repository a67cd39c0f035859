"""Two runs on one host never see each other's faults.

Both local runs use the loopback addresses 127.0.0.11-15 (each its own port). With rules on
addresses, one run's partition cut the other run's cluster too (seen for real). Each local node
now runs in a cgroup of its own and the rules match the sending node's processes, so a partition
touches its own run only: here two runs partition their clusters differently at the same time,
and each run's probe must find exactly its own cut links cut and its own kept links carrying
traffic at its first probe round (a kept link cut by the other run's rules holds the probe back
until they are gone, or fails it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends import node_cgroups
from tests.conftest import require

pytestmark = [pytest.mark.cluster]


def start_run(tmp_path: Path, name: str, topology: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--no-display", "--histories", str(tmp_path), "--name", name,
         "--workload", "cart", "--keys", "3", "--nemesis", "partition", "--partition", topology,
         "--set", "nemesis.start_at=3", "--nemesis-interval", "5", "--duration", "16", "--rate", "50",
         "--recovery", "1", "--seed", "3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def test_two_concurrent_partitioned_runs_touch_only_their_own_cluster(tmp_path: Path) -> None:
    require(os.geteuid() == 0 and node_cgroups.cgroup2_root() is not None, "needs root and a cgroup2 hierarchy")
    runs = {"a": start_run(tmp_path, "a", "split:n1,n2|n3,n4,n5"), "b": start_run(tmp_path, "b", "split:n1|n2,n3,n4,n5")}
    errors = {}
    try:
        for name, proc in runs.items():
            errors[name] = proc.communicate(timeout=240)[1]
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                proc.kill()
    for name, proc in runs.items():
        assert proc.returncode == 0, errors[name][-2000:]
        run_dir = next((tmp_path / name).glob("2*"))
        ops = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
        invoked, started = [op for op in ops if op["process"] == "nemesis" and op["f"] == "start-partition"]
        assert started["type"] == "info" and started["probe"]["ok"], started
        assert "kept link(s) carry traffic" in started["probe"]["detail"]
        # with the other run's rules in its way, a kept link did not flow and the probe retried until
        # they were gone (seen: 5.3 s, the whole window); on its own, the first probe round confirms it
        assert started["probe"]["measurements"]["probe_rounds"] == 1, started["probe"]
