"""Ring: strategy-3 partitioning, preference lists, fallback walk, anti-entropy scope."""
from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from targets.adapter import TargetError as UserError
from targets.dynamo.ring import Ring, RingError

node_sets = st.integers(min_value=3, max_value=7).map(lambda s: [f"n{i}" for i in range(1, s + 1)])
partition_counts = st.integers(min_value=32, max_value=256)
keys = st.text(min_size=0, max_size=40)


@settings(max_examples=40, deadline=None)
@given(nodes=node_sets, q=partition_counts)
def test_every_node_holds_about_q_over_s_partitions(nodes, q):
    ring = Ring(nodes, q)
    counts = {n: 0 for n in nodes}
    for p in range(q):
        counts[ring.owner(p)] += 1
    assert sum(counts.values()) == q
    assert all(q // len(nodes) <= c <= -(-q // len(nodes)) for c in counts.values()), counts
    assert ring.to_json()["partitions_per_node"] == counts


@settings(max_examples=40, deadline=None)
@given(nodes=node_sets, q=partition_counts, n=st.integers(1, 3))
def test_replica_load_is_balanced(nodes, q, n):
    """Each node replicates about N*Q/S partitions (only the wrap-around seam may add one)."""
    ring = Ring(nodes, q)
    loads = [len(ring.partitions_replicated_by(node, n)) for node in nodes]
    assert sum(loads) == q * n
    ideal = q * n / len(nodes)
    assert all(abs(load - ideal) <= n for load in loads), loads


@settings(max_examples=50, deadline=None)
@given(nodes=node_sets, q=partition_counts, key=keys, n=st.integers(1, 7))
def test_preference_list_is_n_distinct_nodes_clockwise(nodes, q, key, n):
    ring = Ring(nodes, q)
    pref = ring.preference_list(key, n)
    assert len(pref) == min(n, len(nodes))
    assert len(set(pref)) == len(pref)
    p = ring.partition_of(key)
    assert pref[0] == ring.owner(p)
    # clockwise: the nodes appear in the order of the partitions following the key's
    expected: list[str] = []
    step = 0
    while len(expected) < len(pref):
        owner = ring.owner((p + step) % q)
        if owner not in expected:
            expected.append(owner)
        step += 1
    assert pref == expected
    assert pref == ring.replicas_of_partition(p, n)


@settings(max_examples=50, deadline=None)
@given(nodes=node_sets, q=partition_counts, key=keys)
def test_walk_starts_with_primaries_and_covers_every_node(nodes, q, key):
    ring = Ring(nodes, q)
    walk = ring.walk(key)
    assert sorted(walk) == sorted(nodes)
    for n in range(1, len(nodes) + 1):
        assert walk[:n] == ring.preference_list(key, n)


@settings(max_examples=30, deadline=None)
@given(nodes=node_sets, q=partition_counts, key=keys, seed=st.integers(0, 2**32))
def test_ring_is_deterministic_from_membership_alone(nodes, q, key, seed):
    shuffled = list(nodes)
    random.Random(seed).shuffle(shuffled)
    a, b = Ring(nodes, q), Ring(shuffled, q)
    assert a == b and a.nodes == tuple(sorted(nodes))
    assert a.to_json() == b.to_json()
    assert a.preference_list(key, 3) == b.preference_list(key, 3)
    assert Ring.from_json(a.to_json()) == a


def test_partition_is_md5_position_scaled_to_q():
    ring = Ring(["a", "b", "c"], 64)
    for key in ["", "x", "cart-3", "s1-k2", "ключ"]:
        position = int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16)
        assert ring.partition_of(key) == position * 64 // 2**128
        assert 0 <= ring.partition_of(key) < 64


def test_keys_spread_over_every_partition():
    ring = Ring(["a", "b", "c", "d", "e"], 64)
    hits = [0] * 64
    for i in range(6400):
        hits[ring.partition_of(f"key-{i}")] += 1
    assert min(hits) > 40 and max(hits) < 170, (min(hits), max(hits))


@settings(max_examples=40, deadline=None)
@given(nodes=node_sets, q=partition_counts, key=keys, n=st.integers(1, 5))
def test_anti_entropy_scope_matches_preference_lists(nodes, q, key, n):
    ring = Ring(nodes, q)
    p = ring.partition_of(key)
    for node in nodes:
        in_scope = p in ring.partitions_replicated_by(node, n)
        assert in_scope == (node in ring.preference_list(key, n))


@pytest.mark.parametrize("nodes, q, message", [
    ([], 64, "at least one node"),
    (["a", "a", "b"], 64, "duplicate"),
    (["a", "b", "c"], 2, "at least the number of nodes"),
    (["a"], 0, "positive integer"),
    (["a", ""], 8, "non-empty"),
])
def test_bad_rings_are_user_errors(nodes, q, message):
    with pytest.raises(RingError, match=message) as info:
        Ring(nodes, q)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


def test_bad_partition_and_n_are_rejected():
    ring = Ring(["a", "b", "c"], 8)
    with pytest.raises(ValueError):
        ring.owner(8)
    with pytest.raises(ValueError):
        ring.owner(-1)
    with pytest.raises(ValueError):
        ring.preference_list("k", 0)
    with pytest.raises(ValueError):
        ring.partitions_replicated_by("a", 0)
    assert ring.partitions_replicated_by("zz", 3) == []
