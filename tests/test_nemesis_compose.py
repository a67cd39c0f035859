"""Composition and refusal logic, without a cluster: routing, heal reaching every part, capability errors."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from harness.backends.base import Node
from harness.errors import CapabilityError
from nemeses import fault_kind, firewall, registry
from nemeses.base import NemesisContext, NemesisOp, Outcome, Probe
from nemeses.compose import HealError
from targets.dynamo.admin import DynamoAdmin
from targets.dynamo.target import DynamoTarget

NODES = [Node(f"n{i}", f"127.0.0.{10 + i}", 7000, f"/tmp/n{i}", None) for i in range(1, 4)]


@dataclass
class FakeBackend:
    """Offers capabilities and nothing else: enough for setup-time refusals."""

    capabilities: frozenset[str]
    name: str = "fake"
    firewall_chain: str = ""


@dataclass
class Recorder:
    """A nemesis part that records calls; heal can be made to fail."""

    name: str
    fs: frozenset[str]
    calls: list[str] = field(default_factory=list)
    heal_fails: bool = False
    heal_rank: int = 100

    def setup(self, ctx: NemesisContext) -> None:
        self.calls.append("setup")

    def invoke(self, op: NemesisOp) -> Outcome:
        self.calls.append(op.f)
        if op.f == "explode":
            raise OSError("backend went away")
        return Outcome(done={"n1": op.value}, probe=Probe(True, "done"), mechanism=self.name)

    def heal(self) -> None:
        self.calls.append("heal")
        if self.heal_fails:
            raise RuntimeError(f"{self.name} heal: could not undo")


def composed(*parts):
    from nemeses.compose import ComposedNemesis
    return ComposedNemesis(list(parts))


def test_ops_route_by_f_and_unknown_ops_fail_their_probe() -> None:
    a, b = Recorder("partition", frozenset({"start-partition"})), Recorder("pause", frozenset({"pause", "explode"}))
    nem = composed(a, b)
    nem.setup(NemesisContext(FakeBackend(frozenset()), NODES, 0, DynamoTarget()))
    assert nem.invoke(NemesisOp("start-partition", 1)).mechanism == "partition"
    assert nem.invoke(NemesisOp("pause", 2)).done == {"n1": 2}
    assert a.calls == ["setup", "start-partition"] and b.calls == ["setup", "pause"]
    out = nem.invoke(NemesisOp("meteor"))
    assert not out.probe.ok and "no nemesis handles 'meteor'" in out.probe.detail
    out = nem.invoke(NemesisOp("explode"))
    assert not out.probe.ok and "backend went away" in out.probe.detail


def test_built_in_parts_heal_paused_first_then_crashed_then_clocks_links_partitions() -> None:
    nem = registry.build_for(fault_kind.names())
    # nodes down (crashed or without power) come back before clocks, links and partitions are undone
    assert [p.name for p in nem.parts] == ["pause", "crash", "power", "clock", "link", "partition"]


def test_heal_reaches_every_part_in_order_and_reports_every_failure() -> None:
    parts = [Recorder("partition", frozenset({"a"}), heal_fails=True, heal_rank=50),
             Recorder("clock", frozenset({"b"}), heal_rank=30),
             Recorder("crash", frozenset({"c"}), heal_fails=True, heal_rank=20),
             Recorder("pause", frozenset({"d"}), heal_rank=10)]
    nem = composed(*parts)
    order: list[str] = []
    for p in parts:
        original = p.heal

        def traced(p=p, original=original) -> None:
            order.append(p.name)
            original()
        p.heal = traced  # type: ignore[method-assign]
    with pytest.raises(HealError) as e:
        nem.heal()
    assert order == ["pause", "crash", "clock", "partition"], "resume first, restart next, then the rest"
    assert len(e.value.errors) == 2 and "partition heal" in str(e.value) and "crash heal" in str(e.value)
    out = nem.invoke(NemesisOp("heal"))
    assert not out.probe.ok and out.done["clock"] == "healed" and "could not undo" in out.done["crash"]


def test_two_parts_claiming_one_op_is_a_bug() -> None:
    with pytest.raises(ValueError, match="two nemeses handle"):
        composed(Recorder("a", frozenset({"x"})), Recorder("b", frozenset({"x"})))


def test_clock_refuses_without_libfaketime_and_says_why() -> None:
    nem = registry.build_for(["clock", "pause"])
    with pytest.raises(CapabilityError, match="libfaketime is not installed.*refusing the clock nemesis"):
        nem.setup(NemesisContext(FakeBackend(frozenset({"signals"})), NODES, 0, DynamoTarget()))


@dataclass
class StoreWithout:
    """A target that lacks some of the reference store's capabilities (as etcd lacks them)."""

    missing: frozenset
    name: str = "plain"
    admin: object = field(default_factory=DynamoAdmin)

    @property
    def capabilities(self) -> frozenset:
        return DynamoTarget.capabilities - self.missing


@pytest.mark.parametrize("fault, caps, missing, msg", [
    ("partition", {"signals"}, {"transport-faults"}, "no iptables.*plain target has no in-process transport faults"),
    ("loss", {"signals"}, {"transport-faults"}, "refusing the loss nemesis"),
    ("latency", {"iptables"}, {"transport-faults"}, "plain target has no in-process transport delay .*refusing the "
                                                    "latency nemesis rather than pretending$"),
    ("pause", {"iptables"}, set(), "cannot signal"),
    ("crash", set(), set(), "cannot signal"),
    ("wipe", {"signals"}, set(), "cannot wipe"),
    ("wipe", {"signals", "wipe"}, {"wipe"}, "plain target has no way for a node restarted with an empty disk"),
    ("clock", {"signals", "faketime"}, {"clock"}, "cannot report its nodes' own clocks"),
    ("partition", {"iptables", "shared-host"}, {"transport-faults", "peer-source-address"},
     "do not leave from each node's own address"),
])
def test_faults_refuse_what_the_backend_or_the_target_cannot_do(fault: str, caps: set, missing: set, msg: str) -> None:
    with pytest.raises(CapabilityError, match=msg):
        registry.build_for([fault]).setup(NemesisContext(FakeBackend(frozenset(caps)), NODES, 0,
                                                         StoreWithout(frozenset(missing))))


def test_setup_refuses_what_the_target_lacks_in_the_words_of_the_spec_check(monkeypatch) -> None:
    """One decision (the record's target_needs, read by fault_kind.target_refusals): a spec the harness
    never validated (run_test from Python) is refused at setup with the spec check's lines, before any
    part is set up, and a plug-in kind's needs are honoured like a built-in's."""
    from harness import plugins
    from nemeses.compose import ComposedNemesis

    monkeypatch.setitem(plugins._entry_points("nemeses"), "freeze", "tests.test_nemesis_compose:FREEZE")
    target = StoreWithout(frozenset({"clock", "snapshots"}))
    lines = fault_kind.target_refusals(["clock", "freeze", "pause"], target)
    assert lines == ["the plain target cannot report its nodes' own clocks, so a skew could not be verified: "
                     "refusing the clock nemesis rather than pretending",
                     "the plain target cannot freeze a replica without snapshots: refusing the freeze nemesis "
                     "rather than pretending"]
    ctx = NemesisContext(FakeBackend(frozenset({"signals", "faketime"})), NODES, 0, target)
    with pytest.raises(CapabilityError) as e:
        registry.build_for(["clock", "pause"]).setup(ctx)
    assert str(e.value) == lines[0]
    part = Recorder("freeze", frozenset({"freeze", "thaw"}))
    with pytest.raises(CapabilityError) as e:
        ComposedNemesis([part], faults=["freeze", "clock"]).setup(ctx)
    assert str(e.value) == "; ".join(lines) and part.calls == []
    ComposedNemesis([part], faults=["pause"]).setup(ctx)
    assert part.calls == ["setup"]


FREEZE = fault_kind.FaultKind("freeze", "freeze", "thaw", "freeze", lambda kinds, shared: None,
                              lambda spec, nodes, rng: (NemesisOp("freeze", None), NemesisOp("thaw", None)),
                              target_needs={"snapshots": "cannot freeze a replica without snapshots"})


@pytest.mark.parametrize("backend_caps, missing, mechanism", [
    ({"iptables"}, set(), firewall.IPTABLES),                                        # own network per node
    ({"iptables"}, {"peer-source-address"}, firewall.IPTABLES),                     # docker/ssh: any store
    ({"iptables", "shared-host"}, set(), firewall.IPTABLES),                        # local, Dynamo binds its source
    ({"iptables", "shared-host"}, {"peer-source-address"}, firewall.IN_PROCESS),    # local, a store that does not
    ({"signals"}, set(), firewall.IN_PROCESS),                                      # no iptables (not root)
])
def test_drops_use_iptables_only_where_the_rules_can_cut_the_stores_traffic(backend_caps, missing, mechanism) -> None:
    chosen = firewall.drop_mechanism(FakeBackend(frozenset(backend_caps)), StoreWithout(frozenset(missing)), "partition")
    assert chosen == mechanism
    nem = registry.build_for(["partition"])
    nem.setup(NemesisContext(FakeBackend(frozenset(backend_caps)), NODES, 0, StoreWithout(frozenset(missing))))
    assert nem.parts[0].mechanism == mechanism


def test_every_fault_builds_and_handles_its_ops() -> None:
    for fault in fault_kind.names():
        assert registry.build_for([fault]).fs > {"heal"}
