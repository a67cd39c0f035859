"""Fault windows start when a fault took effect, not when its probe confirmed it.

Hand-built histories (with the completion's ``effective`` and without it, as in imported
histories), probes that must run side by side (a fake slow check per node: the whole probe takes
about one check, not one per node), and one partition on a real local cluster whose recorded
effect time lies between its invoke and its probe-confirmed completion.
"""
from __future__ import annotations

import json
import os
import shlex
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from checkers.base import CheckContext
from checkers.fault_windows import fault_windows
from checkers.perf import PerfChecker
from harness.backends.base import ClusterConfig, CommandResult, Node
from harness.history import HistoryJournal, read_history
from harness.spec import target_defaults
from harness.workers import NemesisWorker
from nemeses import registry
from nemeses.base import NemesisContext, NemesisOp
from nemeses.fanout import in_parallel
from nemeses.partition import PartitionNemesis
from nemeses.pause import PauseNemesis
from targets.dynamo.target import DynamoTarget
from tests.checker_support import HistoryBuilder
from tests.conftest import require

MS = 1_000_000


# -- windows from hand-built histories ---------------------------------------------------------

def test_windows_open_and_close_at_the_effect_times() -> None:
    b = HistoryBuilder()
    b.nemesis("start-partition", 100, 4600, effective_ms=160)     # rules in at 160 ms, probe done at 4.6 s
    b.nemesis("stop-partition", 9000, 9800, effective_ms=9050)
    b.nemesis("pause", 12000, 13100, effective_ms=12070)          # silence confirms it 1 s after SIGSTOP
    b.nemesis("heal", 15000, 16000, effective_ms=15500)
    (w1, w2) = fault_windows(b.build())
    assert (w1.start, w1.end, w1.requested, w1.confirmed) == (160 * MS, 9050 * MS, 100 * MS, 4600 * MS)
    assert (w2.kind, w2.start, w2.end) == ("pause", 12070 * MS, 15500 * MS)
    assert w1.to_json()["requested"] == 100 * MS and w1.to_json()["confirmed"] == 4600 * MS


def test_without_effect_times_windows_span_invoke_to_completion() -> None:
    b = HistoryBuilder()
    b.nemesis("start-partition", 100, 4600).nemesis("stop-partition", 9000, 9800)
    b.nemesis("kill", 10000, 10100, effective_ms=10020).nemesis("start", 11000, 13000)  # mixed: each falls back alone
    (part, kill) = fault_windows(b.build())
    assert (part.start, part.end) == (100 * MS, 9800 * MS)
    assert (kill.start, kill.end) == (10020 * MS, 13000 * MS)


def test_effect_times_outside_their_op_are_kept_inside_it() -> None:
    b = HistoryBuilder()
    b.nemesis("start-clock", 100, 200, effective_ms=50)            # a hand-edited or skewed record
    b.nemesis("stop-clock", 300, 400, effective_ms=900)
    (w,) = fault_windows(b.build())
    assert (w.start, w.end) == (100 * MS, 400 * MS)


def test_a_node_down_band_lasts_until_that_node_answers_again() -> None:
    """wipe / crash / power-loss windows end at the restart that brought their own node back:
    a restart that failed (the node never answered) ends nothing, and overlapping faults on
    different nodes end at their own node's restart."""
    b = HistoryBuilder()
    b.nemesis("wipe", 1000, 1020, value={"nodes": ["n2"]}, effective_ms=1010)
    b.nemesis("kill", 1500, 1510, value={"nodes": ["n1"]}, effective_ms=1505)
    b.nemesis("start", 2000, 2300, value={"nodes": ["n1"]}, effective_ms=2290)           # n1 back, not n2
    b.nemesis("start", 3000, 33000, outcome="fail", value={"nodes": ["n2"]})             # n2 never answered
    b.nemesis("start", 34000, 34300, value={"nodes": ["n2"]}, effective_ms=34280)        # now it does
    b.nemesis("power-off", 40000, 40050, value={"nodes": ["n3"]}, effective_ms=40040)
    b.nemesis("power-on", 45000, 45400, value={"nodes": ["n3"]}, effective_ms=45390)
    got = [(w.kind, w.start // MS, w.end // MS) for w in fault_windows(b.build())]
    assert got == [("wipe", 1010, 34280), ("kill", 1505, 2290), ("power-off", 40040, 45390)]


def test_a_failed_heal_ends_only_the_parts_it_healed() -> None:
    b = HistoryBuilder()
    b.nemesis("start-partition", 100, 200, effective_ms=150)
    b.nemesis("kill", 300, 400, value={"nodes": ["n1"]}, effective_ms=350)
    b.nemesis("heal", 1000, 1500, outcome="fail", effective_ms=1400,
              value={"partition": "healed", "crash": "crash heal: n1: no health answer"})
    b.nemesis("heal", 5000, 5600, effective_ms=5500)
    got = [(w.kind, w.start // MS, w.end // MS) for w in fault_windows(b.build())]
    assert got == [("start-partition", 150, 1400), ("kill", 350, 5500)]


def test_a_failed_start_is_listed_from_its_effect_and_opens_nothing() -> None:
    b = HistoryBuilder()
    b.nemesis("start-partition", 100, 1100, outcome="fail", effective_ms=150)   # rules in, probe said no
    b.nemesis("stop-partition", 2000, 2100, effective_ms=2010)
    (w,) = fault_windows(b.build())
    assert w.failed and (w.start, w.end) == (150 * MS, 1100 * MS)


def test_the_perf_split_counts_ops_by_the_effect_window() -> None:
    """An op between the request and the effect is outside the partition's window, one failing
    before the probe confirmed it is inside."""
    b = HistoryBuilder()
    b.nemesis("start-partition", 1000, 5000, effective_ms=1060).nemesis("stop-partition", 8000, 9000,
                                                                         effective_ms=8040)
    b.op(1, "read", "k", None, 500, 510, result=None)                   # before: ok
    b.op(1, "read", "k", None, 1010, 1020, result=None)                 # requested, not in effect yet: ok
    b.op(2, "read", "k", None, 1500, 2500, outcome="fail")              # cut, not yet confirmed: in the window
    b.op(2, "read", "k", None, 8500, 8510, result=None)                 # healed, heal not yet confirmed: outside
    res = PerfChecker().check(b.build(), CheckContext())
    window = res.details["windows"][0]
    assert window["start"] == 1060 * MS and window["requested"] == 1000 * MS
    assert (window["ops"], window["availability"]) == (1, 0.0)         # the window itself: effect to effect
    # the in/outside split judging fault-free availability is wider on purpose (perf: from the request
    # to the end plus the grace), so the ops at 1010 and 8500 count as in faults there
    assert res.counts["availability_in_faults"] == pytest.approx(2 / 3)
    assert res.counts["availability_outside_faults"] == 1.0


# -- probes run side by side -------------------------------------------------------------------

def test_in_parallel_keeps_order_and_bounds_its_threads() -> None:
    live, peak, lock = [0], [0], threading.Lock()

    def slow(x: int) -> int:
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.05)
        with lock:
            live[0] -= 1
        return x * x

    assert in_parallel(slow, list(range(20)), limit=4) == [x * x for x in range(20)]
    assert 1 < peak[0] <= 4


#: Node addresses this host does not own: binding one fails at once (EADDRNOTAVAIL) without a
#: packet sent, so the probe runs "on the node", here the fake backend below.
def _remote_nodes(n: int) -> dict[str, Node]:
    return {f"n{i}": Node(f"n{i}", f"198.51.100.{i}", 7000, "/d") for i in range(1, n + 1)}


@dataclass
class SlowProbeBackend:
    """A backend whose nodes cannot be reached from here: iptables calls record rules; the TCP
    probe script run on a node takes ``delay`` seconds (a cut link's connect timing out)."""

    nodes: dict[str, Node]
    delay: float
    name: str = "fake"
    capabilities: frozenset = frozenset({"iptables"})
    firewall_chain: str = "DH-test"
    rules: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, node: str, argv: list[str], timeout: float = 10.0) -> CommandResult:
        if argv[0] == "python3":                       # probes.connect_all's script: src, timeout, host:port...
            time.sleep(self.delay)
            src = argv[3]
            out = ["timeout" if (src, t.rsplit(":", 1)[0]) in self.rules else "connected" for t in argv[5:]]
            return CommandResult(tuple(argv), 0, json.dumps(out) + "\n", "")
        words = shlex.split(argv[-1].replace("&&", ";"))
        with self.lock:
            for i, w in enumerate(words):
                if w in ("-A", "-D"):
                    pair = (words[i + 3], words[i + 5])         # -A CHAIN -s SRC -d DST
                    (self.rules.add if w == "-A" else self.rules.discard)(pair)
        listed = "\n".join(f"-A {self.firewall_chain} -s {s}/32 -d {d}/32 -m comment --comment dynharness-nemesis "
                           f"-j DROP" for s, d in sorted(self.rules) if d == self.nodes[node].host)
        return CommandResult(tuple(argv), 0, listed + "\n", "")


def test_a_partition_probe_checks_every_source_node_at_once() -> None:
    nodes = _remote_nodes(6)
    backend = SlowProbeBackend(nodes, delay=0.5)
    nem = PartitionNemesis()
    nem.setup(NemesisContext(backend, list(nodes.values()), 0, DynamoTarget()))
    halves = {n: (["n4", "n5", "n6"] if n in ("n1", "n2", "n3") else ["n1", "n2", "n3"]) for n in nodes}
    t0 = time.monotonic_ns()
    out = nem.invoke(NemesisOp("start-partition", {"grudge": halves}))
    took = (time.monotonic_ns() - t0) / 1e9
    assert out.probe.ok, out.probe.detail
    assert took < 6 * 0.5 / 2, f"6 source nodes probed one after another ({took:.2f} s)"  # ~0.5 s at once
    assert t0 <= out.effective_ns and (out.effective_ns - t0) / 1e9 < 0.4, "effect is when the rules went in"
    stop = nem.invoke(NemesisOp("stop-partition"))
    assert stop.probe.ok and not backend.rules


class SilentAdmin:
    """Every health request gets no answer for ``delay`` seconds: a paused node's silence."""

    def __init__(self, delay: float):
        self.delay = delay

    def health(self, node: Node, timeout: float = 1.0) -> tuple[bool, str]:
        time.sleep(min(self.delay, timeout))
        return False, "timed out"


class SilentTarget:
    name, capabilities = "silent", frozenset()

    def __init__(self, delay: float):
        self.admin = SilentAdmin(delay)


class SignalBackend:
    name, capabilities = "fake", frozenset({"signals"})

    def __init__(self) -> None:
        self.stopped: list[str] = []

    def pause(self, node: str) -> None:
        self.stopped.append(node)

    def is_running(self, node: str) -> bool:
        return True


def test_a_pause_probe_waits_one_silence_for_all_nodes() -> None:
    nodes = _remote_nodes(6)
    nem = PauseNemesis(health_timeout=0.5)
    nem.setup(NemesisContext(SignalBackend(), list(nodes.values()), 0, SilentTarget(0.5)))
    t0 = time.monotonic_ns()
    out = nem.invoke(NemesisOp("pause", {"nodes": list(nodes)}))
    took = (time.monotonic_ns() - t0) / 1e9
    assert out.probe.ok and "only that silence confirms a pause" in out.probe.detail
    assert took < 6 * 0.5 / 2, f"6 paused nodes probed one after another ({took:.2f} s)"
    assert (out.effective_ns - t0) / 1e9 < 0.4, "in effect at SIGSTOP, not after the silence"
    assert all("effective_ns" not in d for d in out.done.values()), "the monotonic reading stays out of the record"


# -- end to end: a real partition on the local backend -----------------------------------------

@pytest.mark.cluster
def test_a_local_partition_records_its_effect_before_its_confirmation(tmp_path) -> None:
    from harness.backends.local import LocalBackend, iptables_usable
    require(os.geteuid() == 0 and iptables_usable(), "iptables rules need root and a working iptables")
    backend = LocalBackend()
    names = ("n1", "n2", "n3")
    try:
        nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=names, settings=target_defaults(),
                                            run_dir=tmp_path / "cluster", faketime=False))
        nem = registry.build_for(["partition"])
        nem.setup(NemesisContext(backend, nodes, 0, DynamoTarget()))
        with HistoryJournal(tmp_path / "history.jsonl") as journal:
            worker = NemesisWorker(journal, nem, [])
            try:
                worker.invoke(NemesisOp("start-partition", {"grudge": {"n1": ["n2", "n3"], "n2": ["n1"], "n3": ["n1"]}}))
                worker.invoke(NemesisOp("stop-partition"))
            finally:
                nem.heal()
    finally:
        backend.teardown()
    history = read_history(tmp_path / "history.jsonl")
    ops = history.nemesis_ops()
    assert [o.type for o in ops] == ["invoke", "info", "invoke", "info"], [o.to_json() for o in ops]
    start_inv, start_done, stop_inv, stop_done = ops
    eff = start_done.get("effective")
    assert start_inv.time < eff < start_done.time, "in effect after the request, before the probe confirmed it"
    assert eff - start_inv.time < 1.0e9, f"rules in place {(eff - start_inv.time) / 1e9:.2f} s after the request"
    assert start_done.get("probe")["measurements"]["mechanism_s"] <= start_done.get("probe")["measurements"]["effect_s"]
    assert stop_inv.time < stop_done.get("effective") < stop_done.time
    (w,) = fault_windows(history)
    assert (w.start, w.end, w.requested, w.confirmed) == (eff, stop_done.get("effective"), start_inv.time,
                                                         start_done.time)
