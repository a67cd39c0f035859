"""Convergence on real local clusters of the reference store.

* The per-replica snapshot (``/admin/replicas`` through ``DynamoAdmin.replica_snapshot``) shows a
  replica that missed a write, and looking does not repair it; a coordinated read at r = N does.
* Whole runs with a replica wiped mid-run: with anti-entropy off (``ae_interval`` = 600 s) the
  wiped replica stays empty for the keys nobody touched after the wipe, and the convergence checker
  must say invalid; with anti-entropy every second it refills the replica and the verdict is valid.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from checkers.convergence import examine
from harness.runner import run_test
from harness.runs import check_run
from harness.spec import load_spec
from targets.dynamo.admin import DynamoAdmin
from targets.dynamo.launcher import local_cluster
from tests.test_store_replication import eventually, with_clients

pytestmark = pytest.mark.cluster


def snap(cluster, keys: list[str]) -> dict:
    from harness.replica_snapshot import snapshot_round
    return asyncio.run(snapshot_round(DynamoAdmin(), list(cluster.nodes.values()), keys, 5.0))


def test_the_snapshot_shows_a_missed_write_and_does_not_repair_it(tmp_path: Path) -> None:
    with local_cluster(3, tmp_path, ae_interval=600, request_timeout=5.0) as c:
        first = with_clients(c, lambda cs: cs["n1"].put("k", "v1", w=3))
        c.kill("n3")
        with_clients(c, lambda cs: cs["n1"].put("k", "v2", first.context, w=2))
        with_clients(c, lambda cs: cs["n1"].put("new", "only-on-two", w=2))
        c.start("n3")
        keys = ["k", "new", "never"]
        for _ in range(2):                                   # looking twice: still not repaired
            found = examine(snap(c, keys))
            assert [k for k, _ in found.divergent] == ["k"]
            assert [k for k, _ in found.under_replicated] == ["new"]
        copies = snap(c, keys)["keys"]
        assert copies["never"]["replicas"]["n1"]["held"] is False
        assert copies["k"]["replicas"]["n3"]["values"] == ["v1"] and copies["k"]["replicas"]["n1"]["values"] == ["v2"]
        assert sorted(copies["k"]["preference"]) == ["n1", "n2", "n3"]
        with_clients(c, lambda cs: asyncio.gather(cs["n2"].get("k", r=3), cs["n2"].get("new", r=3)))
        assert eventually(lambda: examine(snap(c, keys)).agreed)    # read repair at r = N fixed both


def wipe_run(tmp_path: Path, name: str, ae_interval: float) -> dict:
    """A register run on 3 nodes (N = 3: every node holds every key) with n-th node wiped at 3 s and
    restarted at 5.5 s; 200 keys, so most keys written before the wipe are not written after it."""
    spec = load_spec(None, {
        "name": name, "histories": str(tmp_path), "nodes": 3, "duration": 6, "rate": 60, "concurrency": 4,
        "recovery": 1, "seed": 11, "final_read_timeout": 8, "workload.name": "register", "workload.keys": 200,
        "workload.mix": {"write": 3.0, "read": 1.0}, "target.mode": "lww", "target.fsync": "never",
        "target.ae_interval": ae_interval, "nemesis.faults": ["wipe"], "nemesis.start_at": 3,
        "nemesis.interval": 2.5, "nemesis.targets": "n3"})
    out = run_test(spec)
    assert out.error is None, out.error
    assert any(r["f"] == "wipe" and r["type"] == "info" for r in out.results["faults"]), out.results["faults"]
    return out.results


def test_a_wiped_replica_without_anti_entropy_is_under_replicated(tmp_path: Path) -> None:
    results = wipe_run(tmp_path, "wipe-no-ae", ae_interval=600)
    conv = results["checkers"]["convergence"]
    assert conv["verdict"] == "invalid", conv
    assert conv["counts"]["under_replicated_keys"] > 5
    assert all(a["kind"] == "under-replicated" and "n3 hold nothing" in a["description"]
               for a in conv["anomalies"] if a["kind"] == "under-replicated")
    assert results["verdict"] == "invalid"
    stored = next(tmp_path.glob("wipe-no-ae/*/replicas.json"))
    snapshot = json.loads(stored.read_text())
    assert snapshot["taken"] is True and snapshot["agreed_after_s"] is None and snapshot["rounds"] > 1
    again = check_run(stored.parent, write=False)["checkers"]["convergence"]     # `dynharness check`
    assert again["verdict"] == "invalid" and again["counts"] == conv["counts"]


def test_a_wiped_replica_refilled_by_anti_entropy_converges(tmp_path: Path) -> None:
    results = wipe_run(tmp_path, "wipe-ae", ae_interval=1.0)
    conv = results["checkers"]["convergence"]
    assert conv["verdict"] == "valid", conv
    assert conv["counts"]["converged_after_s"] is not None and conv["counts"]["keys"] == 200
