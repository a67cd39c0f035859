"""Partition topologies: the shapes Jepsen uses, checked as graph properties."""
from __future__ import annotations

import random

import pytest

from harness.errors import UserError
from nemeses import topology

NODES5 = ["n1", "n2", "n3", "n4", "n5"]


def names(n: int) -> list[str]:
    return [f"n{i}" for i in range(1, n + 1)]


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 9])
@pytest.mark.parametrize("seed", range(5))
def test_majorities_ring_every_node_sees_a_distinct_majority(n: int, seed: int) -> None:
    grudge = topology.majorities_ring(names(n), random.Random(seed))
    seen = [topology.sees(grudge, a) for a in names(n)]
    assert all(len(s) >= topology.majority(n) for s in seen)
    assert len(set(seen)) == n, "two nodes see the same majority"
    assert all(a in topology.sees(grudge, a) for a in names(n))
    assert any(grudge.values()), "a ring that cuts nothing is no partition"


def test_majorities_ring_on_five_nodes_is_a_ring_of_threes() -> None:
    grudge = topology.majorities_ring(NODES5, random.Random(1))
    assert sorted(len(topology.sees(grudge, a)) for a in NODES5) == [3] * 5
    # symmetric: a link is cut both ways or not at all
    assert all((b in grudge[a]) == (a in grudge[b]) for a in NODES5 for b in NODES5 if a != b)


def test_majorities_ring_refuses_two_nodes() -> None:
    with pytest.raises(UserError, match="at least 3"):
        topology.majorities_ring(["n1", "n2"], random.Random(0))


@pytest.mark.parametrize("n", [2, 3, 5, 6])
def test_random_halves_cuts_the_cluster_in_two_halves(n: int) -> None:
    for seed in range(10):
        grudge = topology.random_halves(names(n), random.Random(seed))
        groups = {topology.sees(grudge, a) for a in names(n)}
        assert len(groups) == 2
        sizes = sorted(len(g) for g in groups)
        assert sizes == [n // 2, n - n // 2]
        big, small = sorted(groups, key=len, reverse=True)
        assert all(b in grudge[a] for a in big for b in small)


def test_random_halves_depends_on_the_seed_only() -> None:
    a = [topology.random_halves(NODES5, random.Random(s)) for s in range(20)]
    b = [topology.random_halves(NODES5, random.Random(s)) for s in range(20)]
    assert a == b
    assert len({tuple(sorted(topology.sees(g, "n1"))) for g in a}) > 1


def test_riak_split() -> None:
    grudge = topology.compute("riak", NODES5, random.Random(0))
    assert topology.sees(grudge, "n1") == {"n1", "n2"}
    assert topology.sees(grudge, "n4") == {"n3", "n4", "n5"}
    assert grudge["n1"] == {"n3", "n4", "n5"}


def test_fixed_split_and_unlisted_nodes_form_their_own_group() -> None:
    grudge = topology.compute("split:n1,n3|n2", NODES5, random.Random(0))
    assert topology.sees(grudge, "n1") == {"n1", "n3"}
    assert topology.sees(grudge, "n2") == {"n2"}
    assert topology.sees(grudge, "n4") == {"n4", "n5"}


def test_isolate_one() -> None:
    for seed in range(10):
        grudge = topology.isolate_one(NODES5, random.Random(seed))
        lone = [a for a in NODES5 if topology.sees(grudge, a) == {a}]
        assert len(lone) == 1
        others = [a for a in NODES5 if a not in lone]
        assert all(topology.sees(grudge, a) == set(others) for a in others)


@pytest.mark.parametrize("n", [3, 5, 6])
def test_bridge_one_node_sees_both_halves_that_cannot_see_each_other(n: int) -> None:
    grudge = topology.bridge(names(n), random.Random(3))
    everyone = set(names(n))
    bridges = [a for a in names(n) if topology.sees(grudge, a) == everyone]
    assert len(bridges) == 1
    mid = bridges[0]
    halves = {topology.sees(grudge, a) - {mid} for a in names(n) if a != mid}
    assert len(halves) == 2
    left, right = halves
    assert not left & right and left | right == everyone - {mid}


def test_explicit_grudge_is_directed_as_written() -> None:
    grudge = topology.compute("grudge:n1>n2,n3;n4>n5", NODES5, random.Random(0))
    assert grudge["n1"] == {"n2", "n3"} and grudge["n4"] == {"n5"} and grudge["n2"] == frozenset()
    assert topology.cut_pairs(grudge) == [("n1", "n2"), ("n1", "n3"), ("n4", "n5")]
    # TCP needs both directions: n2 cannot see n1 either
    assert "n1" not in topology.sees(grudge, "n2")


@pytest.mark.parametrize("bad, msg", [
    ("halves", "unknown partition topology"),
    ("split:n1", "expected groups"),
    ("split:n1,n9|n2", "unknown node"),
    ("split:n1,n2|n2", "names a node twice"),
    ("grudge:n1", "expected 'node>peer"),
    ("grudge:n1>n1", "against itself"),
    ("grudge:n1>n7", "unknown node"),
])
def test_bad_topologies_are_user_errors(bad: str, msg: str) -> None:
    with pytest.raises(UserError, match=msg):
        topology.compute(bad, NODES5, random.Random(0))


def test_grudge_json_round_trip_and_kept_pairs() -> None:
    grudge = topology.compute("riak", NODES5, random.Random(0))
    assert topology.grudge_from_json(topology.grudge_to_json(grudge)) == grudge
    assert topology.kept_pairs(grudge) == [("n1", "n2"), ("n3", "n4"), ("n3", "n5"), ("n4", "n5")]
