"""Clock tests under real libfaketime: the node's timers survive wall/monotonic jumps both ways,
/admin/clock reports the skew, and LWW keeps the later timestamp (so skew loses acked writes)."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from targets.dynamo.client import DynamoClient
from targets.dynamo.launcher import LIBFAKETIME, local_cluster
from tests.conftest import require
from tests.test_store_cluster import http
from tests.test_store_replication import eventually

pytestmark = pytest.mark.cluster


def members(cluster, node):
    return http("GET", cluster.nodes[node].url + "/admin/members")[1]


def skew(cluster, node) -> float:
    return http("GET", cluster.nodes[node].url + "/admin/clock")[1]["time"] - time.time()


def roundtrip(cluster, node, key, value):
    async def go():
        client = DynamoClient(node, cluster.nodes[node].url, 5)
        try:
            await client.put(key, value, w=3)
            return (await client.get(key, r=3)).values
        finally:
            await client.close()
    return asyncio.run(go())


def test_timers_and_requests_survive_clock_jumps_both_ways(tmp_path):
    require(os.path.exists(LIBFAKETIME), f"libfaketime not installed at {LIBFAKETIME}")
    with local_cluster(3, tmp_path, faketime=True, gossip_interval=0.5, request_timeout=5.0) as c:
        # libfaketime is loaded, so the node chose the loop whose timers it cannot fake (not uvloop)
        assert http("GET", c.nodes["n2"].url + "/admin/stats")[1]["event_loop"] == "asyncio-uptime"
        for offset, expected in (("-5m", -300), ("+5m", 300), ("+0", 0)):
            c.set_clock("n2", offset)
            assert abs(skew(c, "n2") - expected) < 10, f"skew {offset} did not take effect"
            rounds = members(c, "n2")["rounds"]
            beat = members(c, "n1")["members"]["n2"]["heartbeat"][1]
            # gossip keeps running on n2 (its rounds and heartbeat advance) and peers keep it up
            assert eventually(lambda r=rounds: members(c, "n2")["rounds"] >= r + 3, timeout=10)
            assert eventually(lambda b=beat: members(c, "n1")["members"]["n2"]["heartbeat"][1] > b, timeout=10)
            assert members(c, "n1")["members"]["n2"]["up"] and members(c, "n2")["members"]["n1"]["up"]
            # requests coordinated by the skewed node still complete (timeouts use the loop clock)
            assert roundtrip(c, "n2", f"k{offset}", offset) == (offset,)


def test_lww_keeps_the_later_timestamp_and_skew_loses_acked_writes(tmp_path):
    require(os.path.exists(LIBFAKETIME), f"libfaketime not installed at {LIBFAKETIME}")
    with local_cluster(3, tmp_path, faketime=True, mode="lww", ae_interval=60, request_timeout=5.0) as c:
        async def go():
            cs = {n: DynamoClient(n, c.nodes[n].url, 5) for n in c.nodes}
            try:
                await cs["n1"].put("plain", "first", w=3)
                await cs["n2"].put("plain", "second", w=3)       # blind, later in real time
                plain = (await cs["n3"].get("plain", r=3)).values
                c.set_clock("n1", "+2m")
                assert abs(skew(c, "n1") - 120) < 10
                await cs["n1"].put("skewed", "from-the-future", w=3)
                await cs["n2"].put("skewed", "acked-later", w=3)  # acked, yet older by timestamp
                skewed = (await cs["n3"].get("skewed", r=3)).values
                return plain, skewed
            finally:
                for cl in cs.values():
                    await cl.close()
        plain, skewed = asyncio.run(go())
    assert plain == ("second",)
    assert skewed == ("from-the-future",)
