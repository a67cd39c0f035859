"""Every fault op says what it did to whom: nodes, partition sides, offsets, loss rates.

The CLI fault table, the live line and the report's fault windows all read the one description
per fault kind (``FaultKind.describe``), so these check it once, plus the generic fallback a
plug-in kind without a describer gets.
"""
from __future__ import annotations

import random

from harness.history import History
from harness.ops import INFO, INVOKE, NEMESIS, Op
from harness.runs import fault_rows
from nemeses import fault_kind, topology
from nemeses.base import NemesisOp

KINDS = fault_kind.registered()
NODES = ["n1", "n2", "n3", "n4", "n5"]


def said(f, value, done=None) -> str:
    return fault_kind.describe_op(f, value, done, KINDS)


def test_partition_sides_and_the_shapes_without_sides() -> None:
    assert topology.describe_grudge(topology.parse_split(NODES, "n1,n2|n3,n4,n5")) == "{n1,n2} | {n3,n4,n5}"
    assert topology.describe_grudge(topology.compute("isolate-one", NODES, random.Random(1))) == "{n1,n3,n4,n5} | {n2}"
    bridge = topology.describe_grudge(topology.compute("bridge", NODES, random.Random(1)))
    assert "|" not in bridge and "cut from" in bridge
    start, _ = KINDS["partition"].draw(_spec(), NODES, random.Random(3))
    assert said(start.f, start.value).count("|") == 1 and "(random-halves)" in said(start.f, start.value)
    done = {"n1": {"cut_from": ["n3"]}, "n2": {"cut_from": ["n3"]}, "n3": {"cut_from": ["n1", "n2"]}}
    assert said("start-partition", None, done) == "partition {n1,n2} | {n3}"


def test_each_builtin_kind_names_its_nodes_and_amounts() -> None:
    assert said("kill", {"nodes": ["n2"]}) == "n2 killed"
    assert said("wipe", {"nodes": ["n10", "n2"]}) == "n2, n10 killed, data wiped"
    assert said("start", {"nodes": ["n2"]}) == "n2 restarted"
    assert said("pause", None, {"n4": {"signal": "STOP"}}) == "n4 paused"
    assert said("start-clock", {"mode": "bump", "nodes": ["n5"], "offset_ms": -5000.0}) == "n5 clock bumped -5000 ms"
    assert said("start-clock", {"mode": "drift", "nodes": ["n1"], "rate": 0.5}) == "n1 clock drifting at rate +0.5"
    assert said("stop-clock", {"nodes": ["n5"]}) == "n5 clock reset"
    assert said("start-link", {"kind": "loss", "nodes": ["n1"], "probability": 0.2}) == "20% packet loss on the links of n1"
    assert said("start-link", {"kind": "latency", "nodes": ["n1"], "delay_ms": 100, "jitter_ms": 20}) \
        == "100 ± 20 ms delay on the links of n1"
    assert said("stop-link", {"kind": "loss"}) == "loss removed from every link"
    assert said("heal", None) == "every fault undone"


def test_plugin_kinds_and_odd_values_get_the_generic_text() -> None:
    assert said("zap", {"nodes": ["n1", "n3"], "volts": 3}) == "zap: n1, n3, volts=3"
    assert said("zap", None, {"n1": {"ok": True}}) == "zap: n1"
    assert said("zap", None) == "zap"
    assert "bump" in said("start-clock", {"mode": "bump"})  # malformed: falls back, never raises
    assert len(said("zap", {"x": list(range(100))})) <= 105
    assert fault_kind.generic_description({"nodes": ["n1"], "volts": 3}) == "n1, volts=3"


def test_results_fault_rows_say_what_each_op_did() -> None:
    ops = [Op(0, 10, NEMESIS, INVOKE, "kill", value={"nodes": ["n3"]}),
           Op(1, 20, NEMESIS, INFO, "kill", value={"n3": {"ok": True}}),
           Op(2, 30, NEMESIS, INVOKE, "start", value={"nodes": ["n3"]}),
           Op(3, 40, NEMESIS, INFO, "start", value={"n3": {"ok": True}})]
    assert [r["did"] for r in fault_rows(History(ops))] == ["n3 killed", "n3 restarted"]


def _spec():
    from nemeses.schedule import NemesisSpec
    return NemesisSpec(faults=("partition",))


def test_draw_values_are_described_for_every_builtin_kind() -> None:
    from nemeses.schedule import NemesisSpec
    spec = NemesisSpec(faults=tuple(KINDS))
    for name, kind in KINDS.items():
        start, stop = kind.draw(spec, NODES, random.Random(7))
        for op in (start, stop):
            text = kind.describe(op.f, op.value)
            assert text and not text.startswith("{\""), (name, op, text)
            assert isinstance(op, NemesisOp)


def test_the_live_line_names_what_each_active_fault_does(tmp_path) -> None:
    from harness.history import HistoryJournal
    from harness.live import LiveDisplay

    with HistoryJournal(tmp_path / "h.jsonl") as j:
        d = LiveDisplay(j, duration=10, node_names=["n1"], is_running=lambda n: True, rich_panel=False,
                        active_faults=lambda: {"partition": {"what": "partition {n1} | {n2,n3}", "mechanism": "iptables"},
                                               "crash": {"what": "n2 killed", "mechanism": "SIGKILL"}})
        line = d.line()
    assert "faults: n2 killed (SIGKILL), partition {n1} | {n2,n3} (iptables)" in line
