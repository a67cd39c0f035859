"""Real deletes on real local clusters of the reference store.

* Scripted, through the runner's own op and final-read code: a bin cart filled on 3 replicas, one
  replica killed, the cart deleted on the other two, the replica restarted, a final read at r = 3.
  With a tombstone grace longer than the outage the tombstone wins and the run is valid; with the
  tombstones reaped at once (grace 0) the restarted replica's copy comes back, and the
  resurrections checker must call it a resurrected delete (invalid), lost-writes nothing lost.
* The example scenario (``examples/cart-deletes.toml``, shortened): deletes in the cart mix under
  partitions with a 12 s grace: deletes are judged, none resurrected, the run valid.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from harness.generators import OpRequest
from harness.history import HistoryJournal, read_history
from harness.runner import run_test
from harness.runs import check_history
from harness.spec import load_spec
from harness.workers import final_reads, run_op
from harness.workloads import build
from targets.dynamo.client import DynamoClient
from targets.dynamo.launcher import local_cluster
from tests.test_store_replication import eventually, local

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[1]
KEY = "cart-w0-0"


def scripted_delete(tmp_path: Path, grace: float) -> dict:
    """The scripted run above; returns the results of lost-writes and resurrections on its history."""
    spec = load_spec(None, {"workload.mix": {"delete": 1.0}})
    workload = build(spec.workload, 1, ("n1", "n2", "n3"))
    workload.bins.add(KEY)
    path = tmp_path / "history.jsonl"
    with local_cluster(3, tmp_path / "nodes", tombstone_grace=grace, ae_interval=600, request_timeout=5.0) as c:
        async def script() -> None:
            clients = {n: DynamoClient(n, node.url, 5.0) for n, node in c.nodes.items()}
            state: dict = {"id": 0}
            try:
                with HistoryJournal(path) as journal:
                    for item in (1, 2, 3):
                        await run_op(journal, workload, clients["n1"], 0, OpRequest("add", KEY, item), state, 5.0)
                    assert eventually(lambda: local(c, "n3", KEY).get("siblings") == [[1, 2, 3]])
                    c.kill("n3")                                   # n3 keeps the full cart
                    done = await run_op(journal, workload, clients["n1"], 0, OpRequest("delete", KEY), state, 5.0)
                    assert (done.type, done.value) == ("ok", [1, 2, 3])
                    await asyncio.sleep(2.5)                       # the reaper runs every second
                    c.start("n3")
                    missing = await final_reads(journal, workload, clients, [KEY], 1, 20.0, 5.0, read_all=3)
                    assert missing == []
            finally:
                await asyncio.gather(*(cl.close() for cl in clients.values()))
        asyncio.run(script())
    return check_history(read_history(path), "cart", {"mode": "vclock"}, {}, names=["lost-writes", "resurrections"])


def test_a_tombstone_that_outlives_the_outage_keeps_the_cart_deleted(tmp_path: Path) -> None:
    results = scripted_delete(tmp_path, grace=60.0)
    res = results["checkers"]["resurrections"]
    assert results["verdict"] == "valid", results
    assert res["counts"]["acked_deletes"] == 1 and res["counts"]["deletes_judged"] == 1
    assert res["counts"]["resurrected_deletes"] == 0
    assert results["checkers"]["lost-writes"]["counts"]["removed"] == 3


def test_a_tombstone_reaped_before_the_replica_returned_is_a_resurrected_delete(tmp_path: Path) -> None:
    results = scripted_delete(tmp_path, grace=0.0)
    res = results["checkers"]["resurrections"]
    assert res["verdict"] == "invalid" and res["counts"]["resurrected_deletes"] == 3, res
    assert {a["kind"] for a in res["anomalies"]} == {"resurrected-delete"}
    assert all(a["key"] == KEY for a in res["anomalies"])
    assert results["checkers"]["lost-writes"]["verdict"] == "valid"   # back, not lost


def test_the_deletes_scenario_under_partitions_is_valid_on_the_correct_store(tmp_path: Path) -> None:
    spec = load_spec(ROOT / "examples" / "cart-deletes.toml", {
        "histories": str(tmp_path), "duration": 14, "nodes": 5, "rate": 120, "concurrency": 6, "seed": 4,
        "recovery": 2, "final_read_timeout": 15, "target.fsync": "never", "nemesis.start_at": 2})
    out = run_test(spec)
    assert out.error is None, out.error
    res = out.results["checkers"]["resurrections"]
    assert res["counts"]["acked_deletes"] > 5 and res["counts"]["deletes_judged"] > 0, res["counts"]
    assert res["counts"]["resurrected_deletes"] == 0, res["anomalies"][:3]
    assert any(r["f"] == "start-partition" and r["type"] == "info" for r in out.results["faults"])
    assert out.verdict == "valid", {n: (c["verdict"], c["reason"]) for n, c in out.results["checkers"].items()}
