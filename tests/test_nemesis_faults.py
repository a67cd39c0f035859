"""Each fault on a real 5-node local cluster: it takes effect (checked independently of the
nemesis's own probe), it is recorded as done with its probe, and it is healed."""
from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import ClusterConfig
from harness.backends.local import LIBFAKETIME, LocalBackend, iptables_usable
from harness.workers import converge
from harness.spec import target_defaults
from nemeses import firewall, registry
from nemeses.base import NemesisContext, NemesisOp
from targets.dynamo.client import DynamoClient
from tests.conftest import require
from targets.dynamo.target import DynamoTarget

pytestmark = pytest.mark.cluster
NAMES = ("n1", "n2", "n3", "n4", "n5")
RIAK = {"n1": ["n3", "n4", "n5"], "n2": ["n3", "n4", "n5"], "n3": ["n1", "n2"], "n4": ["n1", "n2"], "n5": ["n1", "n2"]}


class WithoutIptables:
    """The same backend, minus the iptables capability: forces the in-process fallbacks."""

    def __init__(self, backend: LocalBackend):
        self._backend = backend
        self.capabilities = backend.capabilities - {"iptables"}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("nemesis-cluster")
    backend = LocalBackend()
    try:
        nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=NAMES, settings=target_defaults(), run_dir=run_dir))
        SECRET["value"] = nodes[0].secret
        # as the runner does: wait until every node's gossip sees every peer up, or a write made
        # right after start-up may go to hinted fallbacks (which a partition then cuts off too)
        converged = asyncio.run(wait_converged(nodes))
        assert converged["converged"], f"cluster never converged: {converged}"
        yield backend, {n.name: n for n in nodes}
    finally:
        backend.teardown()


def backend_for(cluster, mechanism: str):
    """The cluster's backend as a nemesis should see it to use ``mechanism`` for dropping packets."""
    backend, nodes = cluster
    if mechanism == "iptables":
        require(os.geteuid() == 0 and iptables_usable(), "iptables rules need root and a working iptables")
        return backend, nodes
    return WithoutIptables(backend), nodes


def nemesis_for(backend: Any, nodes: dict, *faults: str):
    nem = registry.build_for(faults)
    nem.setup(NemesisContext(backend, list(nodes.values()), 1, DynamoTarget()))
    return nem


#: The cluster's secret, for the admin endpoints the checks below read (set by the fixture).
SECRET: dict[str, str] = {}


def get(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {SECRET['value']}"} if SECRET else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def put(url: str, body: dict, timeout: float = 5.0) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def key_on(nodes: dict, replicas: set[str]) -> str:
    """A fresh key (never used before in this cluster) whose preference list is exactly ``replicas``."""
    for i in range(5000):
        key = f"nemesis-test-{time.monotonic_ns()}-{i}"
        _, pl = get(f"{nodes['n1'].url}/admin/preflist/{key}")
        if set(pl["primaries"]) == replicas:
            return key
    raise AssertionError(f"no key on {replicas}")


def stored_on(node, key: str) -> bool:
    return get(f"{node.url}/admin/local/{key}")[0] == 200


async def wait_converged(nodes) -> dict[str, Any]:
    clients = {n.name: DynamoClient(n.name, n.url, secret=n.secret) for n in nodes}
    try:
        return await converge(clients, timeout=20)
    finally:
        for client in clients.values():
            await client.close()


def wait_until(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def assert_clean(backend, nodes) -> None:
    nem = registry.build_for(())
    nem.setup(NemesisContext(backend, list(nodes.values()), 1, DynamoTarget()))
    out = nem.invoke(NemesisOp("heal"))
    assert out.probe.ok, out.probe.detail


@pytest.mark.parametrize("mechanism", ["iptables", "in-process transport"])
def test_partitioned_pair_cannot_exchange_data_while_others_can(cluster, mechanism: str) -> None:
    backend, nodes = backend_for(cluster, mechanism)
    nem = nemesis_for(backend, nodes, "partition")
    key = key_on(nodes, {"n1", "n2", "n3"})
    try:
        out = nem.invoke(NemesisOp("start-partition", {"topology": "riak", "grudge": RIAK}))
        assert out.probe.ok, out.probe.detail
        assert out.mechanism == mechanism
        assert out.done["n1"]["cut_from"] == ["n3", "n4", "n5"]
        # a client pinned to the minority keeps talking to its node; the write reaches n2 but never n3
        status, _ = put(f"{nodes['n1'].url}/kv/{key}?w=2", {"value": 1, "context": None})
        assert status == 200, _
        assert wait_until(lambda: stored_on(nodes["n2"], key))
        time.sleep(1.0)
        assert not stored_on(nodes["n3"], key), "n3 got data from n1 across the partition"
        if mechanism == "iptables":
            assert len([r for r in firewall.list_rules(backend, "n1") if firewall.TAG in r]) == 12
        out = nem.invoke(NemesisOp("stop-partition"))
        assert out.probe.ok, out.probe.detail
        # healed: data from n1 reaches n3 again (directly once gossip sees n3 up, or by hinted handoff)
        key2 = key_on(nodes, {"n1", "n3", "n4"})
        assert put(f"{nodes['n1'].url}/kv/{key2}?w=2", {"value": 2, "context": None})[0] == 200
        assert wait_until(lambda: stored_on(nodes["n3"], key2), timeout=20)
    finally:
        nem.heal()
    assert_clean(cluster[0], nodes)


def test_paused_node_stops_answering_and_comes_back(cluster) -> None:
    backend, nodes = cluster
    nem = nemesis_for(backend, nodes, "pause")
    pid = backend._pids["n3"]
    try:
        out = nem.invoke(NemesisOp("pause", {"nodes": ["n3"]}))
        assert out.probe.ok and out.mechanism == "SIGSTOP", out.probe.detail
        assert process_state(pid) == "T"
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            get(f"{nodes['n3'].url}/admin/health", timeout=0.5)
        assert get(f"{nodes['n2'].url}/admin/health")[0] == 200
        out = nem.invoke(NemesisOp("resume", {"nodes": ["n3"]}))
        assert out.probe.ok, out.probe.detail
        assert process_state(pid) != "T"
        assert get(f"{nodes['n3'].url}/admin/health")[1]["ok"]
        # heal resumes a node left paused
        assert nem.invoke(NemesisOp("pause", {"nodes": ["n4"]})).probe.ok
    finally:
        nem.heal()
    assert process_state(backend._pids["n4"]) != "T"
    assert_clean(backend, nodes)


def test_skewed_node_reports_the_skewed_time_and_is_reset(cluster) -> None:
    require(os.path.exists(LIBFAKETIME), "the clock nemesis needs libfaketime")
    backend, nodes = cluster
    nem = nemesis_for(backend, nodes, "clock")
    try:
        out = nem.invoke(NemesisOp("start-clock", {"mode": "bump", "nodes": ["n2"], "offset_ms": -90000}))
        assert out.probe.ok and out.mechanism == "libfaketime", out.probe.detail
        skew = get(f"{nodes['n2'].url}/admin/clock")[1]["time"] - time.time()
        assert -91 < skew < -89
        assert abs(get(f"{nodes['n1'].url}/admin/clock")[1]["time"] - time.time()) < 1
        assert Path(nodes["n2"].clock_file).read_text().strip() == "-90.000s"
        out = nem.invoke(NemesisOp("start-clock", {"mode": "strobe", "nodes": ["n1"], "offset_ms": 4000,
                                                   "period": 0.3}))
        assert out.probe.ok, out.probe.detail
        seen = set()
        for _ in range(20):
            seen.add(round(get(f"{nodes['n1'].url}/admin/clock")[1]["time"] - time.time()))
            time.sleep(0.05)
        assert {0, 4} <= seen, seen
        out = nem.invoke(NemesisOp("start-clock", {"mode": "drift", "nodes": ["n5"], "rate": 0.5}))
        assert out.probe.ok, out.probe.detail
        first = get(f"{nodes['n5'].url}/admin/clock")[1]["time"] - time.time()
        time.sleep(0.6)
        assert get(f"{nodes['n5'].url}/admin/clock")[1]["time"] - time.time() > first + 0.1
        assert nem.invoke(NemesisOp("stop-clock", {"nodes": ["n2"]})).probe.ok
        assert abs(get(f"{nodes['n2'].url}/admin/clock")[1]["time"] - time.time()) < 1
    finally:
        nem.heal()
    for name in NAMES:
        assert Path(nodes[name].clock_file).read_text().strip() == "+0"
        assert abs(get(f"{nodes[name].url}/admin/clock")[1]["time"] - time.time()) < 1
    assert_clean(backend, nodes)


def test_tiny_skew_is_reported_unverified_not_done(cluster) -> None:
    require(os.path.exists(LIBFAKETIME), "the clock nemesis needs libfaketime")
    backend, nodes = cluster
    nem = nemesis_for(backend, nodes, "clock")
    try:
        out = nem.invoke(NemesisOp("start-clock", {"mode": "bump", "nodes": ["n1"], "offset_ms": 1}))
        assert not out.probe.ok and "not verified" in out.probe.detail
    finally:
        nem.heal()


def test_killed_node_is_gone_and_comes_back_and_wipe_loses_data(cluster) -> None:
    backend, nodes = cluster
    nem = nemesis_for(backend, nodes, "crash", "wipe")
    key = key_on(nodes, {"n1", "n2", "n4"})
    assert put(f"{nodes['n1'].url}/kv/{key}?w=3", {"value": 7, "context": None})[0] == 200
    try:
        pid = backend._pids["n4"]
        out = nem.invoke(NemesisOp("kill", {"nodes": ["n4"]}))
        assert out.probe.ok and out.mechanism == "SIGKILL", out.probe.detail
        assert not Path(f"/proc/{pid}").exists() or process_state(pid) == "Z"
        with pytest.raises(urllib.error.URLError):
            get(f"{nodes['n4'].url}/admin/health", timeout=0.5)
        out = nem.invoke(NemesisOp("start", {"nodes": ["n4"]}))
        assert out.probe.ok, out.probe.detail
        assert backend._pids["n4"] != pid
        assert stored_on(nodes["n4"], key), "a restarted node keeps its data"
        out = nem.invoke(NemesisOp("wipe", {"nodes": ["n4"]}))
        assert out.probe.ok and out.done["n4"]["data_dir_empty"] is True, out.probe.detail
        assert not any(Path(nodes["n4"].data_dir).iterdir())
        nem.invoke(NemesisOp("kill", {"nodes": ["n5"]}))   # left down: heal must start it
    finally:
        nem.heal()
    assert backend.is_running("n4") and backend.is_running("n5")
    assert_clean(backend, nodes)


@pytest.mark.parametrize("mechanism", ["iptables", "in-process transport"])
def test_loss_is_measured(cluster, mechanism: str) -> None:
    backend, nodes = backend_for(cluster, mechanism)
    nem = nemesis_for(backend, nodes, "loss")
    try:
        out = nem.invoke(NemesisOp("start-link", {"kind": "loss", "nodes": ["n1"], "probability": 0.5}))
        assert out.probe.ok and out.mechanism == mechanism, out.probe.detail
        m = out.probe.measurements
        assert m["attempts"] >= 40 and 0 < m["lost"] < m["attempts"]
        out = nem.invoke(NemesisOp("stop-link", {"kind": "loss"}))
        assert out.probe.ok and out.probe.measurements["lost"] == 0, out.probe.detail
    finally:
        nem.heal()
    assert_clean(cluster[0], nodes)


def test_latency_is_measured_and_removed(cluster) -> None:
    backend, nodes = cluster
    nem = nemesis_for(backend, nodes, "latency")
    try:
        out = nem.invoke(NemesisOp("start-link", {"kind": "latency", "nodes": ["n2"], "delay_ms": 150,
                                                  "jitter_ms": 10}))
        assert out.probe.ok and out.mechanism == "in-process transport", out.probe.detail
        assert all(100 < v < 220 for v in out.probe.measurements["added_ms"].values())
        faults = get(f"{nodes['n2'].url}/admin/faults")[1]
        assert faults["delay_ms"] == 150 and sorted(faults["peers"]) == ["n1", "n3", "n4", "n5"]
        out = nem.invoke(NemesisOp("stop-link", {"kind": "latency"}))
        assert out.probe.ok, out.probe.detail
        assert all(v < 60 for v in out.probe.measurements["added_ms"].values())
    finally:
        nem.heal()
    assert_clean(backend, nodes)


def test_overlapping_faults_all_heal_with_one_heal_op(cluster) -> None:
    backend, nodes = cluster
    require(os.geteuid() == 0 and iptables_usable() and os.path.exists(LIBFAKETIME), "needs root and libfaketime")
    nem = nemesis_for(backend, nodes, "partition", "clock", "pause", "loss", "latency", "crash")
    ops = [NemesisOp("start-partition", {"topology": "riak", "grudge": RIAK}),
           NemesisOp("start-link", {"kind": "loss", "nodes": ["n3"], "probability": 0.3}),
           NemesisOp("start-link", {"kind": "latency", "nodes": ["n4"], "delay_ms": 50, "jitter_ms": 0}),
           NemesisOp("start-clock", {"mode": "drift", "nodes": ["n1", "n5"], "rate": -0.2}),
           NemesisOp("pause", {"nodes": ["n2"]}),
           NemesisOp("kill", {"nodes": ["n5"]})]
    for op in ops:
        out = nem.invoke(op)
        assert out.probe.ok, f"{op.f}: {out.probe.detail}"
    out = nem.invoke(NemesisOp("heal"))
    assert out.probe.ok, out.probe.detail
    assert out.probe.measurements["iptables_rules_left"] == 0
    assert process_state(backend._pids["n2"]) != "T" and backend.is_running("n5")
    assert all(Path(n.clock_file).read_text().strip() == "+0" for n in nodes.values())


def test_clock_nemesis_refuses_without_libfaketime(cluster) -> None:
    backend, nodes = cluster

    class NoFaketime(WithoutIptables):
        def __init__(self, b):
            super().__init__(b)
            self.capabilities = b.capabilities - {"faketime"}

    from harness.errors import CapabilityError
    with pytest.raises(CapabilityError, match="libfaketime is not installed.*refusing the clock nemesis"):
        nemesis_for(NoFaketime(backend), nodes, "clock", "pause")
