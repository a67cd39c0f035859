"""``nemesis.targets = "replicas"``: every replica of one key the workload uses, at once.

The target says where a key's replicas are (``preference-list``: the reference store's ring,
checked here against a ring worked out by hand); the schedule picks one key's replicas per fault
occurrence, from a stream of its own, so which faults run when is the same as with ``all``; a
target that cannot say is refused in one line.
"""
from __future__ import annotations

import hashlib

import pytest

from harness.errors import UserError
from harness.runner import plan_nemesis
from harness.spec import load_spec
from harness.workloads import build as build_workload
from nemeses.schedule import NemesisSpec, build_schedule
from targets.dynamo.target import DynamoTarget

RING_NODES = ["n1", "n2", "n3", "n4"]


def hand_ring_replicas(key: str) -> tuple[str, ...]:
    """4 partitions owned n1, n2, n3, n4 in turn; a key's partition is its md5 (big-endian) times 4
    over 2**128; its 3 replicas are that partition's owner and the next two clockwise."""
    partition = (int.from_bytes(hashlib.md5(key.encode()).digest(), "big") * 4) >> 128
    return tuple(RING_NODES[(partition + i) % 4] for i in range(3))


def test_the_reference_store_places_a_keys_replicas_on_its_ring() -> None:
    keys = [f"cart-{i}" for i in range(12)]
    placed = {k: DynamoTarget().preference_list(k, ["n4", "n2", "n3", "n1"], {"n": 3, "partitions": 4}) for k in keys}
    assert placed == {k: hand_ring_replicas(k) for k in keys}
    assert len(set(placed.values())) > 1                  # the keys do not all sit on the same nodes


def test_each_fault_takes_every_replica_of_one_key_and_runs_when_all_would() -> None:
    sets = [hand_ring_replicas(f"cart-{i}") for i in range(12)]
    spec = NemesisSpec.from_mapping({"faults": ["power-loss", "partition"], "targets": "replicas", "interval": 2})
    schedule = build_schedule(spec, RING_NODES, 3, 120, sets)
    offs = [a.op.value["nodes"] for a in schedule if a.op.f == "power-off"]
    assert len(offs) > 10 and all(tuple(nodes) in sets for nodes in offs)
    assert len({tuple(nodes) for nodes in offs}) > 1     # a different key's replicas from time to time
    as_all = build_schedule(NemesisSpec.from_mapping({**spec.to_json(), "targets": "all"}), RING_NODES, 3, 120)
    assert [(a.at, a.op.f) for a in schedule] == [(a.at, a.op.f) for a in as_all]
    assert build_schedule(spec, RING_NODES, 3, 120, sets) == schedule       # deterministic from the seed


def test_a_run_plans_its_power_losses_on_the_replicas_of_its_own_keys() -> None:
    spec = load_spec(None, {"nodes": 5, "duration": 60, "workload.keys": 4, "nemesis.faults": ["power-loss"],
                            "nemesis.targets": "replicas", "nemesis.interval": 5})
    keys = build_workload(spec.workload, spec.concurrency, spec.node_names).final_keys()
    plan = plan_nemesis(spec, DynamoTarget(), keys)
    placed = {tuple(DynamoTarget().preference_list(k, spec.node_names, spec.target_settings)) for k in keys}
    offs = [tuple(a.op.value["nodes"]) for a in plan.schedule if a.op.f == "power-off"]
    assert offs and set(offs) <= placed and all(len(nodes) == 3 for nodes in offs)


def test_replicas_are_refused_in_one_line_where_nobody_can_say_where_they_are() -> None:
    with pytest.raises(UserError, match=r"^nemesis targets replicas: the etcd target cannot say which nodes hold "
                                        r"a key's replicas \(no preference-list capability\)$"):
        load_spec(None, {"target.kind": "etcd", "workload.name": "register", "nemesis.faults": ["crash"],
                         "nemesis.targets": "replicas", "duration": 60})
    spec = NemesisSpec.from_mapping({"faults": ["crash"], "targets": "replicas"})
    with pytest.raises(UserError, match=r"^nemesis targets replicas: no key's replicas to pick from"):
        build_schedule(spec, RING_NODES, 1, 60)
