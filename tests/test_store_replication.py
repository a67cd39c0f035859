"""Integration tests of replication on real local clusters: siblings per mode, hinted handoff,
read repair, anti-entropy and in-process transport faults."""
from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from targets.dynamo.client import DynamoClient
from targets.dynamo.launcher import local_cluster
from tests.test_store_cluster import http

pytestmark = pytest.mark.cluster


def clients_for(cluster):
    return {name: DynamoClient(name, node.url, 5) for name, node in cluster.nodes.items()}


async def close_all(clients):
    for c in clients.values():
        await c.close()


def with_clients(cluster, fn):
    """``fn(clients)`` (a coroutine function) run with a fresh client per node, closed afterwards."""
    async def go():
        cs = clients_for(cluster)
        try:
            return await fn(cs)
        finally:
            await close_all(cs)
    return asyncio.run(go())


def eventually(check, timeout: float = 15.0, every: float = 0.2):
    """Poll ``check()`` until truthy (bounded); return its last value."""
    value = None
    for _ in range(int(timeout / every) + 1):
        value = check()
        if value:
            return value
        time.sleep(every)
    return value


def local(cluster, node: str, key: str) -> dict:
    return http("GET", cluster.nodes[node].url + "/admin/local/" + key)[1]


def wipe_key(cluster, node: str, key: str) -> None:
    """Kill the node, delete the key from its SQLite file, restart it."""
    cluster.kill(node)
    db = sqlite3.connect(Path(cluster.nodes[node].data_dir) / "store.sqlite3")
    with db:
        assert db.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount == 1
    db.close()
    cluster.start(node)


def sibling_workload(cluster, rounds: int) -> tuple[int, int]:
    """(siblings after 5 concurrent blind writes, siblings after 2 writers x rounds stale-context writes)."""
    async def go():
        cs = clients_for(cluster)
        try:
            await asyncio.gather(*(cs[f"n{1 + i % 3}"].put("blind", f"b{i}") for i in range(5)))
            blind = len((await cs["n1"].get("blind", r=3)).values)
            # two writers, each chaining only its own last context (never reading): the true
            # concurrency is 2, but each context misses the other writer's latest write
            ctx = {"x": None, "y": None}
            for i in range(rounds):
                for writer in ("x", "y"):
                    ctx[writer] = (await cs["n1"].put("rmw", f"{writer}{i}", ctx[writer], w=3)).context
            rmw = len((await cs["n2"].get("rmw", r=3)).values)
            return blind, rmw
        finally:
            await close_all(cs)
    return asyncio.run(go())


def test_vclock_blind_and_stale_writes_make_siblings_grow(tmp_path):
    with local_cluster(3, tmp_path, mode="vclock", ae_interval=60, request_timeout=5.0) as c:
        blind, rmw = sibling_workload(c, rounds=6)
    assert blind == 5
    assert rmw > 2 * 3          # false concurrency: siblings grow with every stale write


def test_dvv_siblings_stay_at_true_concurrency(tmp_path):
    with local_cluster(3, tmp_path, mode="dvv", ae_interval=60, request_timeout=5.0) as c:
        blind, rmw = sibling_workload(c, rounds=6)
    assert blind == 5           # 5 truly concurrent blind writes
    assert rmw == 2             # one live version per writer, however many writes


def find_key(cluster, primaries_include: str, excludes: str) -> tuple[str, list[str]]:
    """A key whose primaries include one node and not another (asks the node's /admin/preflist)."""
    for i in range(500):
        key = f"h{i}"
        pref = http("GET", cluster.nodes["n1"].url + "/admin/preflist/" + key)[1]
        if primaries_include in pref["primaries"] and excludes not in pref["primaries"]:
            return key, pref["primaries"]
    raise AssertionError("no such key in 500 tries")


def test_write_during_absence_is_handed_off_after_restart(tmp_path):
    with local_cluster(4, tmp_path, n=3, r=2, w=3, request_timeout=5.0, ae_interval=600) as c:
        key, primaries = find_key(c, primaries_include="n4", excludes="n1")
        fallback = "n1"                                   # the only non-primary: the stand-in
        # n1 is not a replica of the key: it forwards the write to one that is
        status, body = http("PUT", c.nodes["n1"].url + f"/kv/{key}?w=3", b'{"value": "forwarded"}')
        assert status == 200 and body["context"]
        assert http("GET", c.nodes["n1"].url + "/admin/stats")[1]["counters"]["forwarded"] == 1
        assert local(c, "n1", key)["found"] is False and local(c, "n4", key)["siblings"] == ["forwarded"]
        c.kill("n4")

        async def write():
            cs = clients_for(c)
            try:
                return await cs[primaries[0]].put(key, "during-absence", w=3)   # needs the fallback
            finally:
                await close_all(cs)
        asyncio.run(write())
        # strict quorum: the fallback's copy does not count towards pw
        status, body = http("PUT", c.nodes[primaries[0]].url + f"/kv/{key}?w=3&pw=3",
                            b'{"value": "strict"}')
        assert status == 503 and body["stored"] == 3 and body["needed_primary"] == 3, body
        hints = http("GET", c.nodes[fallback].url + "/admin/hints")[1]
        assert hints["queues"]["n4"]["keys"] == [key]
        assert sorted(local(c, fallback, key)["siblings"]) == ["during-absence", "forwarded", "strict"]
        c.start("n4")
        assert eventually(lambda: sorted(local(c, "n4", key).get("siblings", [])) == ["during-absence", "forwarded",
                                                                                   "strict"])
        assert eventually(lambda: http("GET", c.nodes[fallback].url + "/admin/hints")[1]["total"] == 0)
        assert eventually(lambda: local(c, fallback, key)["found"] is False)   # copy dropped after handoff


def test_wiped_replica_is_repaired_by_a_read(tmp_path):
    with local_cluster(3, tmp_path, ae_interval=600, request_timeout=5.0) as c:
        async def write():
            cs = clients_for(c)
            try:
                await cs["n1"].put("rr", "v", w=3)
            finally:
                await close_all(cs)
        asyncio.run(write())
        wipe_key(c, "n3", "rr")
        assert local(c, "n3", "rr")["found"] is False
        time.sleep(1.0)
        assert local(c, "n3", "rr")["found"] is False        # nothing else repairs it (AE off)

        async def read():
            cs = clients_for(c)
            try:
                return await cs["n1"].get("rr", r=3)
            finally:
                await close_all(cs)
        assert asyncio.run(read()).values == ("v",)
        assert eventually(lambda: local(c, "n3", "rr").get("siblings") == ["v"])
        assert http("GET", c.nodes["n1"].url + "/admin/stats")[1]["counters"]["read_repairs"] >= 1


def test_wiped_replica_is_repaired_by_anti_entropy_without_reads(tmp_path):
    with local_cluster(3, tmp_path, ae_interval=0.5, request_timeout=5.0) as c:
        async def write():
            cs = clients_for(c)
            try:
                for i in range(20):
                    await cs["n1"].put(f"ae{i}", i, w=3)
            finally:
                await close_all(cs)
        asyncio.run(write())
        wipe_key(c, "n2", "ae7")
        assert eventually(lambda: local(c, "n2", "ae7").get("siblings") == [7])
        status = [http("GET", n.url + "/admin/antientropy")[1] for n in c.nodes.values()]
        assert sum(s["keys_sent"] + s["keys_received"] for s in status) >= 1
        assert http("GET", c.nodes["n2"].url + "/admin/stats")[1]["counters"].get("read_repairs", 0) == 0


def test_transport_faults_cut_both_directions(tmp_path):
    with local_cluster(3, tmp_path, request_timeout=2.0, ae_interval=600) as c:
        status, body = http("POST", c.nodes["n1"].url + "/admin/faults", b'{"drop": ["n2"]}')
        assert status == 200 and body["drop"] == ["n2"]
        assert http("GET", c.nodes["n1"].url + "/admin/faults")[1]["drop"] == ["n2"]
        status, _ = http("PUT", c.nodes["n1"].url + "/kv/f1", b'{"value": 1}')
        assert status == 200                                   # n1 + n3 make W=2
        time.sleep(0.3)
        assert local(c, "n2", "f1")["found"] is False          # outgoing n1 -> n2 cut
        status, body = http("PUT", c.nodes["n2"].url + "/kv/f2?w=3", b'{"value": 2}')
        assert status == 503 and body["stored"] == 2           # incoming n2 -> n1 rejected
        assert local(c, "n1", "f2")["found"] is False
        assert http("GET", c.nodes["n1"].url + "/admin/members")[1]["members"]["n2"]["up"] is False
        assert http("POST", c.nodes["n1"].url + "/admin/faults", b'{"drop": ["n7"]}')[0] == 400
        http("DELETE", c.nodes["n1"].url + "/admin/faults")
        status, _ = http("PUT", c.nodes["n2"].url + "/kv/f3?w=3", b'{"value": 3}')
        assert eventually(lambda: http("PUT", c.nodes["n2"].url + "/kv/f3?w=3", b'{"value": 3}')[0] == 200)


def test_tombstones_are_reaped_after_the_grace_period(tmp_path):
    with local_cluster(3, tmp_path, tombstone_grace=1.0, ae_interval=600, request_timeout=5.0) as c:
        async def go():
            cs = clients_for(c)
            try:
                w = await cs["n1"].put("gone", 1, w=3)
                await cs["n1"].delete("gone", w.context, w=3)
            finally:
                await close_all(cs)
        asyncio.run(go())
        assert local(c, "n2", "gone")["deleted"] is True           # the tombstone is stored first
        assert eventually(lambda: all(local(c, n, "gone")["found"] is False for n in c.nodes), timeout=20)
        assert sum(http("GET", n.url + "/admin/stats")[1]["counters"].get("tombstones_reaped", 0)
                   for n in c.nodes.values()) == 3


def test_a_fallback_keeps_a_hinted_tombstone_past_the_grace_until_it_is_handed_off(tmp_path):
    """The delete reaches the primary that was down only through the fallback's hint: the fallback
    must not reap that tombstone while the hint is pending, or the primary's old copy comes back."""
    with local_cluster(4, tmp_path, n=3, r=2, w=3, tombstone_grace=1.0, request_timeout=5.0,
                       ae_interval=600) as c:
        key, primaries = find_key(c, primaries_include="n4", excludes="n1")
        coordinator = next(p for p in primaries if p != "n4")

        async def put(cs):
            return await cs[coordinator].put(key, "old", w=3)
        written = with_clients(c, put)
        assert local(c, "n4", key)["siblings"] == ["old"]
        c.kill("n4")                                          # n4 keeps "old" on disk

        async def delete(cs):
            await cs[coordinator].delete(key, written.context, w=3)   # needs the fallback n1
        with_clients(c, delete)
        assert http("GET", c.nodes["n1"].url + "/admin/hints")[1]["queues"]["n4"]["keys"] == [key]
        others = [p for p in primaries if p != "n4"]
        # the primaries reap their tombstones after the grace (1 s, swept every second) ...
        assert eventually(lambda: all(local(c, p, key)["found"] is False for p in others), timeout=20)
        time.sleep(2.5)                                       # ... and the fallback had sweeps too
        assert local(c, "n1", key).get("deleted") is True      # kept: its hint for n4 is pending
        c.start("n4")
        assert eventually(lambda: http("GET", c.nodes["n1"].url + "/admin/hints")[1]["total"] == 0)
        assert eventually(lambda: local(c, "n4", key).get("siblings", []) == [])   # "old" is superseded

        async def read(cs):
            return await cs["n4"].get(key, r=3)
        assert with_clients(c, read).values == ()


def test_a_replica_that_times_out_is_replaced_by_a_fallback_within_the_request(tmp_path):
    with local_cluster(4, tmp_path, n=3, r=2, w=3, request_timeout=5.0, ae_interval=600,
                       gossip_interval=5) as c:
        key, primaries = find_key(c, primaries_include="n4", excludes="n1")
        coordinator = next(p for p in primaries if p != "n4")
        # n4 stops answering; gossip (5 s rounds) has not noticed yet: calls to it time out
        http("POST", c.nodes["n4"].url + "/admin/faults", b'{"delay_ms": 10000}')
        status, body = http("PUT", c.nodes[coordinator].url + f"/kv/{key}?w=3", b'{"value": "slow-n4"}')
        assert status == 200, body                                  # the n4 call timed out at 1.5 s,
        hints = http("GET", c.nodes["n1"].url + "/admin/hints")[1]   # n1 stood in with a hint
        assert hints["queues"]["n4"]["keys"] == [key]


def test_a_coordinator_with_a_stale_copy_returns_the_newer_one_and_repairs_itself(tmp_path):
    """Digest reads: the coordinator's own (stale) digest differs, so the replicas ship their objects."""
    with local_cluster(3, tmp_path, ae_interval=600, request_timeout=5.0) as c:
        first = with_clients(c, lambda cs: cs["n1"].put("st", "v1", w=3))
        c.kill("n3")
        with_clients(c, lambda cs: cs["n1"].put("st", "v2", first.context, w=2))
        c.start("n3")
        assert local(c, "n3", "st")["siblings"] == ["v1"]              # stale, and nothing repaired it yet
        assert with_clients(c, lambda cs: cs["n3"].get("st", r=3)).values == ("v2",)
        assert eventually(lambda: local(c, "n3", "st").get("siblings") == ["v2"])
