"""Versioning modes: vclock sibling explosion and pruning, DVV exact concurrency, LWW,
tombstones and reaping, merge laws, opaque contexts."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from targets.dynamo.versioning import TOMBSTONE, ContextError, for_mode
from targets.dynamo.versioning.causal import Sibling, add_removed, build, ranges_contain

CAUSAL = ("vclock", "dvv")
ALL = ("vclock", "dvv", "lww")


def blind_writes(v, values, coordinators):
    """Each value written blind (no context) on its own fresh replica, then all merged."""
    merged = v.empty()
    for i, value in enumerate(values):
        merged = v.merge(merged, v.write(v.empty(), None, value, coordinators[i % len(coordinators)],
                                         100.0 + i))
    return merged


# ---------------------------------------------------------------- modes


def test_for_mode_builds_each_mode_and_rejects_others():
    for mode in ALL:
        assert for_mode(mode).mode == mode
    with pytest.raises(ValueError, match="unknown versioning mode"):
        for_mode("crdt")
    with pytest.raises(ValueError):
        for_mode("vclock", vclock_max=0)


# ---------------------------------------------------------------- siblings


@pytest.mark.parametrize("mode", CAUSAL)
@pytest.mark.parametrize("writers", [1, 2, 5, 17])
def test_concurrent_blind_writers_make_exactly_one_sibling_each(mode, writers):
    v = for_mode(mode)
    merged = blind_writes(v, list(range(writers)), ["n1", "n2", "n3"])
    assert v.sibling_count(merged) == writers
    assert sorted(v.values(merged)) == list(range(writers))


@pytest.mark.parametrize("mode", CAUSAL)
def test_blind_writes_through_one_coordinator_pile_up(mode):
    """100 blind writes on one node keep 100 siblings: none read anything, all are concurrent."""
    v = for_mode(mode)
    obj = v.empty()
    for i in range(100):
        obj = v.write(obj, None, i, "n1", 100.0 + i)
    assert v.sibling_count(obj) == 100
    assert v.values(obj) == list(range(100))


@pytest.mark.parametrize("mode", ALL)
def test_write_with_the_read_context_replaces_what_was_read(mode):
    v = for_mode(mode)
    obj = blind_writes(v, ["a", "b", "c"], ["n1", "n2"])
    obj = v.write(obj, v.context(obj), "abc", "n3", 200.0)
    assert v.values(obj) == ["abc"] and v.sibling_count(obj) == 1


def interleaved_read_modify_write(v, rounds):
    """Two clients on one coordinator; each writes back a context that the other just made stale."""
    obj = v.empty()
    stale = v.context(obj)
    counts = []
    for i in range(rounds):
        fresh = v.context(obj)
        obj = v.write(obj, stale, f"w{i}", "n1", 100.0 + i)
        stale = fresh
        counts.append(v.sibling_count(obj))
    return obj, counts


def test_vclock_stale_contexts_explode_siblings():
    v = for_mode("vclock")
    _, counts = interleaved_read_modify_write(v, 30)
    assert counts == list(range(1, 31))


def test_dvv_stale_contexts_keep_only_true_concurrency():
    v = for_mode("dvv")
    _, counts = interleaved_read_modify_write(v, 30)
    assert counts[0] == 1 and max(counts) == 2 and counts[-1] == 2


def test_dvv_writer_supersedes_exactly_what_it_read():
    v = for_mode("dvv")
    seen = blind_writes(v, ["a", "b"], ["n1", "n2"])
    ctx = v.context(seen)
    later = v.merge(seen, v.write(v.empty(), None, "c", "n3", 300.0))   # concurrent with the read
    obj = v.write(later, ctx, "ab+", "n1", 400.0)
    assert sorted(v.values(obj)) == ["ab+", "c"]
    # the same write applied on a replica that never saw a/b still supersedes them later
    elsewhere = v.write(v.empty(), ctx, "ab+", "n2", 400.0)
    assert sorted(v.values(v.merge(later, elsewhere))) == ["ab+", "c"]


def test_vclock_stale_writer_keeps_everything_it_read():
    """Riak pre-2.0: a context that does not descend the stored clock supersedes nothing here."""
    v = for_mode("vclock")
    seen = blind_writes(v, ["a", "b"], ["n1", "n2"])
    ctx = v.context(seen)
    later = v.merge(seen, v.write(v.empty(), None, "c", "n3", 300.0))
    obj = v.write(later, ctx, "ab+", "n1", 400.0)
    assert sorted(v.values(obj)) == ["a", "ab+", "b", "c"]


def test_vclock_stale_writer_still_supersedes_what_this_replica_lacks():
    """The stored object does not hold 'a', but the client read it: 'a' must not come back."""
    v = for_mode("vclock")
    a = v.write(v.empty(), None, "a", "n1", 100.0)
    b = v.write(v.empty(), None, "b", "n2", 101.0)
    obj = v.write(b, v.context(a), "a+", "n2", 102.0)   # context misses b: keep b, add a+
    assert sorted(v.values(obj)) == ["a+", "b"]
    assert sorted(v.values(v.merge(obj, a))) == ["a+", "b"]


# ---------------------------------------------------------------- ordering


@pytest.mark.parametrize("mode", CAUSAL)
def test_clock_of_a_write_descends_its_context(mode):
    v = for_mode(mode)
    first = v.write(v.empty(), None, 1, "n1", 100.0)
    second = v.write(first, v.context(first), 2, "n2", 101.0)
    c1, c2 = v.clock(first), v.clock(second)
    assert set(c1) == {"n1"} and set(c2) == {"n1", "n2"}
    assert c2["n1"] == c1["n1"] and c2["n2"].ts == 101.0
    # a replica still holding the older version takes the newer one whole, in either order
    assert v.merge(first, second) == second == v.merge(second, first)


@pytest.mark.parametrize("mode", CAUSAL)
def test_coordinator_counter_never_reuses_a_dot_seen_in_the_context(mode):
    v = for_mode(mode)
    obj = v.empty()
    for i in range(3):
        obj = v.write(obj, v.context(obj), i, "n1", 100.0 + i)
    # n1 lost its data (fresh replica) and its clock went back; the client's context names n1
    reborn = v.write(v.empty(), v.context(obj), "x", "n1", 50.0)
    assert v.clock(reborn)["n1"].counter > v.clock(obj)["n1"].counter
    assert v.values(v.merge(obj, reborn)) == ["x"]


@pytest.mark.parametrize("mode", CAUSAL)
def test_counters_are_strictly_increasing_even_when_the_clock_stands_still(mode):
    v = for_mode(mode)
    obj, counters = v.empty(), []
    for i in range(5):
        obj = v.write(obj, v.context(obj), i, "n1", 100.0)
        counters.append(v.clock(obj)["n1"].counter)
    assert counters == sorted(set(counters)) and v.values(obj) == [4]


@pytest.mark.parametrize("mode", CAUSAL)
def test_write_after_a_reap_survives_a_replica_that_still_holds_the_tombstone(mode):
    """Delete, grace passes, n1 reaps the key and takes a new blind write while n2 has not
    reaped yet: merging n2's tombstone state must not drop the new write."""
    v = for_mode(mode)
    obj = v.empty()
    for i in range(3):
        obj = v.write(obj, v.context(obj), i, "n1", 100.0 + i)
    tomb = v.write(obj, v.context(obj), TOMBSTONE, "n1", 110.0)
    assert v.reap(tomb, now=500.0, grace=60.0) is None                # n1 drops the key
    fresh = v.write(v.empty(), None, "again", "n1", 501.0)
    assert v.values(v.merge(fresh, tomb)) == ["again"]
    assert v.values(v.merge(tomb, fresh)) == ["again"]


@pytest.mark.parametrize("mode", CAUSAL)
def test_write_on_a_wiped_coordinator_survives_the_old_replicas(mode):
    v = for_mode(mode)
    old = v.empty()
    for i in range(20):
        old = v.write(old, v.context(old), i, "n1", 100.0 + i / 1000)   # many writes per ms
    fresh = v.write(v.empty(), None, "after-wipe", "n1", 101.0)
    assert sorted(v.values(v.merge(old, fresh)), key=str) == [19, "after-wipe"]


# ---------------------------------------------------------------- pruning


def sequential_writes_by_distinct_coordinators(v, count):
    """Writer i (coordinator c{i}) reads the previous version and writes over it."""
    states = []
    obj = v.empty()
    for i in range(count):
        obj = v.write(obj, v.context(obj), f"v{i}", f"c{i:02d}", 1000.0 + i)
        states.append(obj)
    return states


def test_vclock_truncation_turns_a_newer_version_into_a_false_conflict():
    pruned = for_mode("vclock", vclock_max=10)
    states = sequential_writes_by_distinct_coordinators(pruned, 11)
    first, last = states[0], states[-1]
    assert len(pruned.clock(states[9])) == 10
    assert len(pruned.clock(last)) == 10 and "c00" not in pruned.clock(last)
    # v10 causally follows v0, but the pruned clock forgot c00: a stale replica's v0 survives
    assert sorted(pruned.values(pruned.merge(first, last))) == ["v0", "v10"]
    # and a write carrying the pruned context no longer descends that replica's clock
    on_stale = pruned.write(first, pruned.context(last), "v11", "c00", 2000.0)
    assert sorted(pruned.values(on_stale)) == ["v0", "v11"]

    roomy = for_mode("vclock", vclock_max=20)
    states = sequential_writes_by_distinct_coordinators(roomy, 11)
    assert roomy.values(roomy.merge(states[0], states[-1])) == ["v10"]


def test_dvv_is_not_pruned():
    v = for_mode("dvv")
    states = sequential_writes_by_distinct_coordinators(v, 15)
    assert len(v.clock(states[-1])) == 15
    assert v.values(v.merge(states[0], states[-1])) == ["v14"]


def test_pruning_keeps_entries_of_live_siblings():
    v = for_mode("vclock", vclock_max=2)
    obj = blind_writes(v, ["a", "b", "c", "d"], ["n1", "n2", "n3", "n4"])
    obj = v.write(obj, None, "e", "n5", 500.0)
    assert v.sibling_count(obj) == 5 and len(v.clock(obj)) == 5


# ---------------------------------------------------------------- deletes


@pytest.mark.parametrize("mode", ALL)
def test_delete_with_context_leaves_a_tombstone(mode):
    v = for_mode(mode)
    obj = v.write(v.empty(), None, "item", "n1", 100.0)
    gone = v.write(obj, v.context(obj), TOMBSTONE, "n2", 101.0)
    assert v.is_deleted(gone) and v.values(gone) == [] and v.sibling_count(gone) == 1
    assert v.context(gone) is not None
    assert v.is_deleted(v.empty()) and v.context(v.empty()) is None


@pytest.mark.parametrize("mode", CAUSAL)
def test_add_concurrent_with_delete_resurrects(mode):
    v = for_mode(mode)
    base = v.write(v.empty(), None, ["x"], "n1", 100.0)
    deleted = v.write(base, v.context(base), TOMBSTONE, "n1", 101.0)
    re_added = v.write(base, v.context(base), ["x", "y"], "n2", 102.0)
    both = v.merge(deleted, re_added)
    assert v.values(both) == [["x", "y"]] and not v.is_deleted(both)
    assert v.sibling_count(both) == 2


@pytest.mark.parametrize("mode", ALL)
def test_tombstone_is_reaped_only_after_grace(mode):
    v = for_mode(mode)
    obj = v.write(v.empty(), None, 1, "n1", 100.0)
    gone = v.write(obj, v.context(obj), TOMBSTONE, "n1", 200.0)
    assert v.reap(gone, now=250.0, grace=60.0) == gone
    assert v.reap(gone, now=261.0, grace=60.0) is None
    assert v.reap(obj, now=10_000.0, grace=60.0) == obj
    assert v.reap(v.empty(), now=0.0, grace=60.0) is None


@pytest.mark.parametrize("mode", CAUSAL)
def test_reaping_a_tombstone_beside_a_live_value_keeps_it_dead(mode):
    v = for_mode(mode)
    base = v.write(v.empty(), None, 1, "n1", 100.0)
    deleted = v.write(base, v.context(base), TOMBSTONE, "n1", 101.0)
    both = v.merge(deleted, v.write(base, v.context(base), 2, "n2", 102.0))
    reaped = v.reap(both, now=500.0, grace=60.0)
    assert v.sibling_count(reaped) == 1 and v.values(reaped) == [2]
    assert v.merge(reaped, deleted) == reaped      # a replica still holding it cannot bring it back


# ---------------------------------------------------------------- LWW


def test_lww_later_timestamp_wins_in_any_order():
    v = for_mode("lww")
    early = v.write(v.empty(), None, "early", "n2", 100.0)
    late = v.write(v.empty(), None, "late", "n1", 101.0)
    assert v.values(v.merge(early, late)) == ["late"] == v.values(v.merge(late, early))


def test_lww_write_stamped_before_the_stored_version_is_silently_lost():
    v = for_mode("lww")
    stored = v.write(v.empty(), None, "from-fast-clock", "n1", 500.0)
    after = v.write(stored, v.context(stored), "from-slow-clock", "n2", 400.0)
    assert after == stored and v.values(after) == ["from-fast-clock"]


def test_lww_ties_break_deterministically_and_ignore_contexts():
    v = for_mode("lww")
    a = v.write(v.empty(), None, "a", "n1", 100.0)
    b = v.write(v.empty(), None, "b", "n2", 100.0)
    assert v.merge(a, b) == v.merge(b, a) == b
    c = v.write(v.empty(), None, "c", "n2", 100.0)
    assert v.merge(b, c) == v.merge(c, b) == c
    assert v.sibling_count(v.merge(a, b)) == 1
    with pytest.raises(ContextError):
        v.write(a, "garbage", "x", "n1", 200.0)
    with pytest.raises(ContextError):
        v.write(a, for_mode("dvv").context(for_mode("dvv").write(
            for_mode("dvv").empty(), None, 1, "n1", 1.0)), "x", "n1", 200.0)


def test_lww_delete_then_older_write_stays_deleted():
    v = for_mode("lww")
    gone = v.write(v.empty(), None, TOMBSTONE, "n1", 300.0)
    assert v.is_deleted(v.write(gone, None, "late-arrival", "n2", 299.0))


# ---------------------------------------------------------------- merge laws


@st.composite
def reachable_states(draw, mode, vclock_max=10):
    """States reached by a random run of writes (fresh or stale contexts) and replica merges."""
    v = for_mode(mode, vclock_max=vclock_max)
    replicas = {n: v.empty() for n in ("n1", "n2", "n3")}
    seen = [v.empty()]
    steps = draw(st.lists(st.tuples(st.sampled_from(sorted(replicas)), st.integers(0, 50),
                                    st.sampled_from(["write", "blind", "delete", "merge"]),
                                    st.sampled_from(sorted(replicas))),
                          min_size=1, max_size=16))
    for t, (node, pick, kind, other) in enumerate(steps):
        ctx = v.context(seen[pick % len(seen)])
        if kind == "merge":     # from a live replica, or a delayed state from the past
            source = replicas[other] if pick % 2 else seen[pick % len(seen)]
            replicas[node] = v.merge(replicas[node], source)
        else:
            value = TOMBSTONE if kind == "delete" else t
            replicas[node] = v.write(replicas[node], None if kind == "blind" else ctx, value,
                                     node, 1000.0 + t)
        seen.append(replicas[node])
    return v, seen


@pytest.mark.parametrize("mode, vclock_max", [("vclock", 10), ("vclock", 2), ("dvv", 10),
                                              ("lww", 10)])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_merge_is_commutative_associative_idempotent(mode, vclock_max, data):
    v, seen = data.draw(reachable_states(mode, vclock_max))
    a, b, c = (data.draw(st.sampled_from(seen)) for _ in range(3))
    assert v.merge(a, a) == a
    assert v.merge(a, b) == v.merge(b, a)
    assert v.merge(v.merge(a, b), c) == v.merge(a, v.merge(b, c))
    ab = v.merge(a, b)
    assert v.values(ab) == v.values(v.merge(b, a))
    assert v.digest(ab) == v.digest(v.merge(b, a))
    assert v.merge(ab, a) == ab                      # a merged state absorbs its inputs


@st.composite
def arbitrary_causal_states(draw, mode):
    """Any canonical dotted state, reachable or not (holes in removed ranges included)."""
    dots = st.tuples(st.sampled_from(["n1", "n2", "n3"]), st.integers(1, 6))
    sibs = [Sibling(node, k, float(k), draw(st.sampled_from([TOMBSTONE, 1, "x", [1, 2]])))
            for node, k in draw(st.lists(dots, max_size=5))]
    removed: dict = {}
    for node, k in draw(st.lists(dots, max_size=6)):
        add_removed(removed, node, ((k, k + draw(st.integers(0, 2))),), float(k))
    return build(mode, sibs, removed)


@pytest.mark.parametrize("mode", CAUSAL)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_causal_merge_is_a_join_on_any_state(mode, data):
    v = for_mode(mode)
    a, b, c = (data.draw(arbitrary_causal_states(mode)) for _ in range(3))
    assert v.merge(a, a) == a
    assert v.merge(a, b) == v.merge(b, a)
    assert v.merge(v.merge(a, b), c) == v.merge(a, v.merge(b, c))
    assert v.from_json(v.to_json(a)) == a


def test_vclock_stale_context_leaves_holes_that_merge_correctly():
    """A context covering b but not this replica's c removes b's dot yet keeps live a's."""
    v = for_mode("vclock")
    s1 = v.write(v.empty(), None, "a", "n1", 100.0)
    s2 = v.write(s1, None, "b", "n1", 101.0)                 # n1 holds a and b
    ry = v.write(v.merge(v.empty(), s1), None, "c", "n2", 102.0)   # n2 holds a and c
    obj = v.write(ry, v.context(s2), "new", "n2", 103.0)     # stale: misses c
    assert sorted(v.values(obj)) == ["a", "c", "new"]
    dot_a, dot_b = (v.clock(s)["n1"].counter for s in (s1, s2))
    [removed] = v.to_json(obj)["removed"]
    assert removed["node"] == "n1" and removed["ts"] == 101.0
    ranges = tuple(tuple(r) for r in removed["ranges"])
    assert not ranges_contain(ranges, dot_a) and ranges_contain(ranges, dot_b)
    assert sorted(v.values(v.merge(obj, s2))) == ["a", "c", "new"]   # b stays superseded
    for x in (s1, s2, ry):
        for y in (s1, s2, ry):
            assert v.merge(v.merge(obj, x), y) == v.merge(obj, v.merge(x, y))


client_runs = st.lists(st.tuples(st.sampled_from(["n1", "n2", "n3"]), st.integers(0, 50),
                                 st.sampled_from(["write", "blind", "delete", "merge"]),
                                 st.sampled_from(["n1", "n2", "n3"])), min_size=1, max_size=16)


def run_against_oracle(v, steps):
    """Replay ``steps`` on three replicas, tracking an independent set-based oracle.

    The oracle knows, for every state, which write events reached it (its history), and
    for every write the history of the state whose context it carried (what it supersedes).
    Truly concurrent versions of a state = events in its history superseded by none.
    Yields (state, truly concurrent write ids) pairs.
    """
    replicas = {n: (v.empty(), frozenset()) for n in ("n1", "n2", "n3")}
    seen = [(v.empty(), frozenset())]
    supersedes: dict[int, frozenset] = {}
    for t, (node, pick, kind, other) in enumerate(steps):
        obj, hist = replicas[node]
        if kind == "merge":
            src_obj, src_hist = replicas[other] if pick % 2 else seen[pick % len(seen)]
            replicas[node] = (v.merge(obj, src_obj), hist | src_hist)
        else:
            ctx_obj, ctx_hist = (v.empty(), frozenset()) if kind == "blind" else \
                seen[pick % len(seen)]
            supersedes[t] = ctx_hist
            value = TOMBSTONE if kind == "delete" else t
            replicas[node] = (v.write(obj, v.context(ctx_obj), value, node, 1000.0 + t),
                              hist | ctx_hist | {t})
        seen.append(replicas[node])
        state, hist = replicas[node]
        live = {e for e in hist if not any(e in supersedes[x] for x in hist)}
        yield state, live


def sibling_ids(obj):
    return {int(s.ts - 1000.0) for s in obj.siblings}


@settings(max_examples=50, deadline=None)
@given(steps=client_runs)
def test_dvv_siblings_are_exactly_the_truly_concurrent_writes(steps):
    for state, live in run_against_oracle(for_mode("dvv"), steps):
        assert sibling_ids(state) == live


@settings(max_examples=50, deadline=None)
@given(steps=client_runs)
def test_vclock_keeps_every_truly_concurrent_write_and_at_least_dvv_siblings(steps):
    vclock = run_against_oracle(for_mode("vclock", vclock_max=100), steps)
    dvv = run_against_oracle(for_mode("dvv"), steps)
    for (vc_state, live), (dvv_state, _) in zip(vclock, dvv):
        assert live <= sibling_ids(vc_state)
        assert sibling_ids(dvv_state) <= sibling_ids(vc_state)


@pytest.mark.parametrize("mode", ALL)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_json_round_trip_and_digest_identity(mode, data):
    v, seen = data.draw(reachable_states(mode))
    for obj in seen:
        back = v.from_json(json.loads(json.dumps(v.to_json(obj))))
        assert back == obj and v.digest(back) == v.digest(obj)
    for a in seen:
        for b in seen:
            assert (v.digest(a) == v.digest(b)) == (v.to_json(a) == v.to_json(b))


@pytest.mark.parametrize("mode", ALL)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_the_canonical_text_round_trips_and_is_kept_on_the_object(mode, data):
    """What storage writes and peers exchange: from_text(encode(x)) is x, with x's digest, and
    the decoded object keeps the text it came from (a replica does not encode it again)."""
    v, seen = data.draw(reachable_states(mode))
    for obj in seen:
        text, digest = v.encode(obj)
        assert v.encode(obj) is v.encode(obj)                  # computed once per object
        assert text == json.dumps(v.to_json(obj), sort_keys=True, separators=(",", ":"))
        back = v.from_text(text)
        assert back == obj and v.encode(back) == (text, digest)
        fresh = v.from_json(json.loads(text))                   # no remembered encoding
        assert v.encode(fresh) == (text, digest)


@pytest.mark.parametrize("mode", ALL)
@pytest.mark.parametrize("junk", [None, 3, {"mode": "vclock"}, b"{}", "", "{", "[1]", '{"mode":"other"}',
                                  '{"mode":"vclock","removed":[],"siblings":"nope"}', '"\u00e9"'])
def test_from_text_rejects_what_is_not_a_state_text(mode, junk):
    with pytest.raises(ValueError):
        for_mode(mode).from_text(junk)


@pytest.mark.parametrize("mode, vclock_max", [("vclock", 10), ("vclock", 2), ("dvv", 10), ("lww", 10)])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_merge_hands_back_an_input_that_equals_the_join(mode, vclock_max, data):
    """Identity, not just equality: a replica keeps the incoming object (and its encoding)."""
    v, seen = data.draw(reachable_states(mode, vclock_max))
    a, b = (data.draw(st.sampled_from(seen)) for _ in range(2))
    joined = v.merge(a, b)
    if joined == b:
        assert joined is b or joined is a
    if joined == a:
        assert joined is a or joined is b
    newer = v.write(joined, v.context(joined), "next", "n1", 5000.0)
    if vclock_max > 3:          # no pruning with three nodes: a write descends what it read
        assert v.merge(joined, newer) is newer and v.merge(newer, joined) is newer


@pytest.mark.parametrize("mode", ALL)
@pytest.mark.parametrize("junk", [None, 3, "x", [], {"mode": "other"},
                                  {"mode": "vclock", "siblings": [{"node": "n1"}], "removed": []},
                                  {"mode": "dvv", "siblings": [], "removed": [
                                      {"node": "n1", "ranges": [[3, 1]], "ts": 1.0}]},
                                  {"mode": "lww", "version": {"node": "", "ts": 1.0, "value": 1}}])
def test_from_json_rejects_malformed_objects(mode, junk):
    with pytest.raises(ValueError):
        for_mode(mode).from_json(junk)


@pytest.mark.parametrize("mode", ALL)
def test_state_equality_follows_json_not_python_equality(mode):
    """1, 1.0 and true are different values to a JSON client: objects and digests must agree."""
    v = for_mode(mode)
    states = [v.write(v.empty(), None, value, "n1", 100.0) for value in (1, 1.0, True)]
    for i, a in enumerate(states):
        for j, b in enumerate(states):
            assert (a == b) == (i == j) == (v.digest(a) == v.digest(b))


@pytest.mark.parametrize("mode", ALL)
def test_every_mode_implements_the_whole_protocol(mode):
    from targets.dynamo.versioning import Versioning
    members = [name for name in vars(Versioning) if not name.startswith("_")]
    v = for_mode(mode)
    assert {"empty", "write", "merge", "values", "sibling_count", "is_deleted", "context",
            "reap", "digest", "to_json", "from_json"} <= set(members)
    for name in members:
        if name != "mode":
            assert callable(getattr(v, name)), name
    assert isinstance(v.digest(v.empty()), bytes)
