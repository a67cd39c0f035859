"""Merkle trees: diffs name exactly the changed buckets; state survives a JSON round trip."""
from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from targets.dynamo.merkle import MerkleTree


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def tree_of(items: dict[str, str], leaves: int = 64) -> MerkleTree:
    tree = MerkleTree(leaves)
    for key, value in items.items():
        tree.update(key, digest(value))
    return tree


contents = st.dictionaries(st.text(max_size=12), st.sampled_from(["a", "b", "c"]), max_size=60)


@settings(max_examples=40, deadline=None)
@given(a=contents, b=contents, leaves=st.sampled_from([1, 2, 16, 64]))
def test_diff_names_exactly_the_buckets_whose_keys_differ(a, b, leaves):
    ta, tb = tree_of(a, leaves), tree_of(b, leaves)
    changed = {ta.bucket_of(k) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    found = MerkleTree.diff(ta.levels(), tb.levels())
    assert found == sorted(changed)
    assert (ta.root() == tb.root()) == (not changed)
    for bucket in found:
        assert ta.keys_in(bucket) != tb.keys_in(bucket)


def test_diff_descends_only_into_differing_subtrees():
    base = {f"k{i}": "a" for i in range(500)}
    ta, tb = tree_of(base, 256), tree_of(base, 256)
    tb.update("k7", digest("b"))
    la, lb = ta.levels(), tb.levels()
    differing_per_level = [sum(x != y for x, y in zip(la[d], lb[d])) for d in range(len(la))]
    assert differing_per_level == [1] * len(la)          # one path from root to one leaf
    assert MerkleTree.diff(la, lb) == [ta.bucket_of("k7")]


def test_update_is_incremental_and_removal_restores_the_root():
    tree = tree_of({"x": "a", "y": "b"})
    before = tree.root()
    tree.update("z", digest("c"))
    assert tree.root() != before
    tree.update("z", None)
    assert tree.root() == before
    tree.update("never-there", None)
    assert tree.root() == before and len(tree) == 2
    assert tree.root() == tree_of({"y": "b", "x": "a"}).root()     # insertion order irrelevant


def test_keys_in_returns_the_bucket_contents():
    tree = tree_of({"x": "a", "y": "b"}, leaves=1)
    assert tree.keys_in(0) == {"x": digest("a"), "y": digest("b")}
    with pytest.raises(ValueError):
        tree.keys_in(1)


@settings(max_examples=40, deadline=None)
@given(items=contents)
def test_json_round_trip_keeps_the_tree(items):
    tree = tree_of(items, 32)
    back = MerkleTree.from_json(json.loads(json.dumps(tree.to_json())))
    assert back.levels() == tree.levels() and back.root() == tree.root()
    assert all(back.keys_in(b) == tree.keys_in(b) for b in range(32))


def test_levels_are_json_hex_root_first():
    levels = tree_of({"k": "a"}, 8).levels()
    assert [len(level) for level in levels] == [1, 2, 4, 8]
    assert all(isinstance(h, str) and bytes.fromhex(h) for level in levels for h in level)
    json.dumps(levels)


@pytest.mark.parametrize("leaves", [0, 3, 100, -4, True])
def test_leaf_count_must_be_a_power_of_two(leaves):
    with pytest.raises(ValueError):
        MerkleTree(leaves)


@pytest.mark.parametrize("a, b", [
    ([["00"]], [["00"], ["00", "00"]]),
    ([["00"], ["00"]], [["00"], ["00"]]),
    ([], []),
    ("x", "x"),
])
def test_diff_rejects_mismatched_or_malformed_levels(a, b):
    with pytest.raises(ValueError):
        MerkleTree.diff(a, b)


@pytest.mark.parametrize("bad", [{}, {"leaves": 4}, {"leaves": 4, "keys": {"k": "zz"}},
                                 {"leaves": 3, "keys": {}}, None])
def test_from_json_rejects_malformed_state(bad):
    with pytest.raises(ValueError):
        MerkleTree.from_json(bad)
