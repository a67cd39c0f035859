"""The power-loss nemesis on real local clusters: the fsync setting becomes visible.

Every replica loses power at once (N=3 on 3 nodes, ``targets = "all"``): under ``--fsync never``
the lazy disks drop every write since the nodes started, and the lost-writes checker must find
acknowledged adds gone; under ``always`` every acknowledged add was fsynced on W replicas, so
none may be lost. Both runs leave no node, no daemon and no mount behind. Refusals are one line,
before anything starts.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from harness.backends import attach, lazy_disks
from harness.errors import UserError
from harness.runner import run_test
from harness.spec import load_spec
from tests.conftest import require
from tests.test_local_backend import node_pids
from tests.test_runner_cluster import gone, start_cli, wait_for_ops

pytestmark = pytest.mark.cluster


#: 3 nodes, N=3, every node loses power at once at 3 s and 6 s of an 8 s run
ALL_REPLICAS_LOSE_POWER = {"nodes": 3, "duration": 8, "rate": 60, "concurrency": 4, "recovery": 2, "seed": 5,
                           "nemesis.faults": ["power-loss"], "nemesis.targets": "all", "nemesis.start_at": 3,
                           "nemesis.interval": 3, "final_read_timeout": 20}


def probed_power_offs(out) -> list[dict]:
    """The run's completed power-off ops, after checking it ran, every probe passed and the first
    one cut every node."""
    assert out.error is None, out.error
    offs = [json.loads(line) for line in (out.run_dir / "history.jsonl").read_text().splitlines()
            if '"power-off"' in line and '"invoke"' not in line]
    assert offs and all(o["type"] == "info" and o["probe"]["ok"] for o in offs), offs
    assert set(offs[0]["value"]) == {"n1", "n2", "n3"}
    return offs


def power_loss_run(tmp_path: Path, fsync: str | None, **more):
    require(lazy_disks.unavailable() is None, f"no lazy disks here: {lazy_disks.unavailable()}")
    name = f"power-{fsync or more.get('target.kind')}"
    spec = load_spec(None, {"histories": str(tmp_path), "name": name, **ALL_REPLICAS_LOSE_POWER,
                            **({"target.fsync": fsync} if fsync else {}), **more})
    out = run_test(spec)
    offs = probed_power_offs(out)
    assert node_pids(out.run_dir) == []                 # nodes and lazyfs daemons gone
    mounts = [str(out.run_dir / "nodes" / n) for n in ("n1", "n2", "n3")]
    assert lazy_disks.stale_mounts(mounts) == []
    return out, offs


def test_fsync_never_loses_acknowledged_writes_when_every_replica_loses_power(tmp_path: Path) -> None:
    out, offs = power_loss_run(tmp_path, "never")
    assert all(v["dropped"]["bytes"] > 0 and v["dropped"]["names"] > 0 for v in offs[0]["value"].values())
    lost = out.results["checkers"]["lost-writes"]
    assert out.verdict == "invalid" and lost["verdict"] == "invalid" and lost["counts"]["lost_writes"] > 0, lost


def test_fsync_always_loses_nothing_when_every_replica_loses_power(tmp_path: Path) -> None:
    out, _ = power_loss_run(tmp_path, "always")
    lost = out.results["checkers"]["lost-writes"]
    assert lost["verdict"] == "valid" and lost["counts"]["lost_writes"] == 0 and lost["counts"]["acked_writes"] > 50


def test_etcd_fsyncs_what_it_acknowledges_so_a_power_loss_of_every_member_loses_nothing(tmp_path: Path) -> None:
    """etcd fdatasyncs its WAL before it answers: through the lazy disks a power loss drops only
    the probe's own unsynced marker, and the register stays linearizable."""
    require(shutil.which("etcd") is not None, "etcd is not installed (apt-get install etcd-server)")
    out, offs = power_loss_run(tmp_path, None, **{"target.kind": "etcd", "workload.name": "register",
                                                  "workload.keys": 3})
    assert all(v["dropped"]["names"] <= 2 and v["dropped"]["bytes"] < 200 for v in offs[0]["value"].values()), offs
    assert out.results["checkers"]["linearizable"]["verdict"] == "valid"


def test_power_loss_is_refused_in_one_line_where_it_cannot_happen(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(UserError, match=r"^the ssh backend cannot put the nodes' data dirs on a lazy file "
                                        r"system .*: refusing the power-loss nemesis rather than pretending$"):
        load_spec(None, {"backend": "ssh", "nemesis.faults": ["power-loss"]})
    monkeypatch.setattr(lazy_disks, "unavailable", lambda: "/dev/fuse is missing (no FUSE in this kernel or container)")
    spec = load_spec(None, {"histories": str(tmp_path), "nodes": 3, "duration": 2, "nemesis.faults": ["power-loss"],
                            "nemesis.allow_unscheduled": True})
    out = run_test(spec)
    assert out.exit_code == 3 and out.error == ("cannot put the nodes' data dirs on lazy disks (for power loss): "
                                                "/dev/fuse is missing (no FUSE in this kernel or container)")
    assert node_pids(out.run_dir) == []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_no_mount_outlives_a_harness_killed_or_interrupted_mid_run(tmp_path: Path, sig: int) -> None:
    """SIGKILL: the lazyfs daemons die with the harness (PDEATHSIG) and take their mounts along
    (auto_unmount); SIGINT: the runner's cleanup unmounts. Either way nothing stays mounted."""
    require(lazy_disks.unavailable() is None, f"no lazy disks here: {lazy_disks.unavailable()}")
    proc = start_cli(tmp_path, "--nemesis", "power-loss", "--set", "nemesis.start_at=1")
    run_dir = wait_for_ops(tmp_path, proc)
    mounts = [str(run_dir / "nodes" / n) for n in ("n1", "n2", "n3")]
    assert lazy_disks.stale_mounts(mounts) == mounts
    os.kill(proc.pid, sig)
    proc.communicate(timeout=90)
    try:
        assert gone(run_dir), "nodes and lazyfs daemons die with their harness"
        assert lazy_disks.stale_mounts(mounts) == []
    finally:
        attach(run_dir).teardown()
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
