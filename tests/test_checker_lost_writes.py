"""Lost writes and resurrections on hand-built cart histories with known answers, and against the oracle."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers.base import CheckContext, Verdict
from checkers.lost_writes import LostWritesChecker, collect_set_ops
from checkers.registry import build, names
from harness.errors import UserError
from tests.checker_support import HistoryBuilder, set_oracle

CTX = CheckContext()
K = "cart-1"


def check(b: HistoryBuilder):
    return LostWritesChecker().check(b.build(), CTX)


def final_read(b: HistoryBuilder, items, start=100, end=101, outcome="ok", key=K, process=99):
    return b.op(process, "read", key, None, start, end, outcome, result=sorted(items), final=True)


def test_all_acked_adds_present_is_valid():
    b = HistoryBuilder()
    for i in range(1, 4):
        b.op(i, "add", K, i, i, i + 0.5)
    final_read(b, [1, 2, 3])
    r = check(b)
    assert r.verdict == Verdict.VALID
    assert r.counts["acked_writes"] == 3 and r.counts["lost_writes"] == 0


def test_missing_acked_add_is_lost_with_its_op_and_ack_time():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2).op(2, "add", K, 2, 3, 4)
    final_read(b, [1])
    h = b.build()
    r = LostWritesChecker().check(h, CTX)
    assert r.verdict == Verdict.INVALID
    assert r.counts["lost_writes"] == 1 and r.counts["lost_share"] == 0.5
    (a,) = [a for a in r.anomalies if a.kind == "lost-write"]
    ack = next(o for o in h if o.type == "ok" and o.f == "add" and o.value == 2)
    assert a.ops[0] == ack.index and a.time == ack.time and a.key == K


def test_info_add_present_is_unacknowledged_not_an_anomaly():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2).op(2, "add", K, 2, 3, 4, "info").op(3, "add", K, 3, 5, None)
    final_read(b, [1, 2, 3])
    r = check(b)
    assert r.verdict == Verdict.VALID
    assert r.counts["unacknowledged_present"] == 2


def test_info_add_absent_is_not_lost():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2).op(2, "add", K, 2, 3, 4, "info")
    final_read(b, [1])
    assert check(b).verdict == Verdict.VALID


def test_failed_add_present_is_invalid():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2).op(2, "add", K, 2, 3, 4, "fail")
    final_read(b, [1, 2])
    r = check(b)
    assert r.verdict == Verdict.INVALID and r.counts["failed_present"] == 1


def test_never_added_item_present_is_unexpected():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2)
    final_read(b, [1, 42])
    r = check(b)
    assert r.verdict == Verdict.INVALID and r.counts["unexpected"] == 1


def test_no_ok_final_read_is_never_read_and_unknown():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2)
    final_read(b, [], outcome="fail")
    r = check(b)
    assert r.verdict == Verdict.UNKNOWN and r.counts["never_read"] == 1


def test_absent_from_a_partial_final_read_is_maybe_lost_and_unknown_not_invalid():
    """A final read that fell back from r = N (journaled ``partial``) may have missed the one
    replica holding an item: its absence proves nothing, so no lost write is claimed."""
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2).op(2, "add", K, 2, 3, 4)
    b.op(99, "read", K, None, 100, 101, result=[1], final=True, partial=True)
    r = check(b)
    assert r.verdict == Verdict.UNKNOWN and "could not ask every replica" in r.reason
    assert r.counts["lost_writes"] == 0 and r.counts["maybe_lost"] == 1
    assert [a.kind for a in r.anomalies] == ["maybe-lost-write"]
    assert r.details["per_key"][K]["final_read_partial"] is True
    b = HistoryBuilder()                                  # the same without the mark: lost
    b.op(1, "add", K, 1, 1, 2).op(2, "add", K, 2, 3, 4)
    final_read(b, [1])
    assert check(b).verdict == Verdict.INVALID


def test_a_partial_final_read_still_proves_what_it_shows():
    """What a partial final read contains is there: a failed add present is still invalid."""
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2).op(2, "add", K, 2, 3, 4, "fail").op(3, "add", K, 3, 5, 6)
    b.op(99, "read", K, None, 100, 101, result=[1, 2], final=True, partial=True)
    r = check(b)
    assert r.verdict == Verdict.INVALID
    assert r.counts["failed_present"] == 1 and r.counts["maybe_lost"] == 1 and r.counts["lost_writes"] == 0


def test_last_ok_final_read_is_the_one_used():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2)
    final_read(b, [], start=50, end=51)          # an early final read that missed it (before convergence)
    final_read(b, [1], start=60, end=61)         # the last ok final read has it
    final_read(b, [], start=70, end=71, outcome="fail")
    assert check(b).verdict == Verdict.VALID


def test_add_acknowledged_after_final_read_started_is_not_lost():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2).op(2, "add", K, 2, 90, 100.5)
    final_read(b, [1], start=100, end=101)
    r = check(b)
    assert r.verdict == Verdict.VALID and r.counts["concurrent_with_final_read"] == 1


def test_acked_add_then_acked_remove_absent_is_removed_not_lost():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2).op(1, "remove", K, 1, 3, 4)
    final_read(b, [])
    r = check(b)
    assert r.verdict == Verdict.VALID and r.counts["removed"] == 1


def test_remove_finished_before_the_add_began_does_not_explain_absence():
    b = HistoryBuilder()
    b.op(1, "remove", K, 1, 1, 2).op(2, "add", K, 1, 3, 4)
    final_read(b, [])
    r = check(b)
    assert r.verdict == Verdict.INVALID and r.counts["lost_writes"] == 1


def test_concurrent_or_info_remove_explains_absence_but_failed_remove_does_not():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 5).op(2, "remove", K, 1, 2, 3)           # concurrent with the add
    b.op(3, "add", K, 2, 6, 7).op(4, "remove", K, 2, 8, 9, "info")   # info remove
    b.op(5, "add", K, 3, 10, 11).op(6, "remove", K, 3, 12, 13, "fail")
    final_read(b, [])
    r = check(b)
    assert r.counts["removed"] == 2 and r.counts["lost_writes"] == 1
    (a,) = [a for a in r.anomalies if a.kind == "lost-write"]
    assert "3" in a.description


def test_remove_must_follow_every_earlier_add():
    # two acked adds of the same item (imported set histories allow it); the only remove
    # ends before the second add begins, so the second add must be visible.
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2).op(2, "remove", K, 1, 3, 4).op(3, "add", K, 1, 5, 6)
    final_read(b, [])
    assert check(b).counts["lost_writes"] == 1


def test_blind_add_value_is_a_one_item_list():
    b = HistoryBuilder()
    b.op(1, "add", K, [5], 1, 2, blind=True).op(2, "add", K, [6], 3, 4, blind=True)
    final_read(b, [5])
    r = check(b)
    assert r.counts["acked_writes"] == 2 and r.counts["lost_writes"] == 1


def test_keys_are_checked_separately():
    b = HistoryBuilder()
    b.op(1, "add", "cart-1", 1, 1, 2).op(2, "add", "cart-2", 1, 3, 4)
    final_read(b, [1], key="cart-1").op(98, "read", "cart-2", None, 102, 103, result=[], final=True)
    r = check(b)
    assert r.counts["lost_writes"] == 1 and r.anomalies[0].key == "cart-2"


def test_unmarked_history_uses_last_ok_read_per_key():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2).op(2, "read", K, None, 3, 4, result=[]).op(3, "read", K, None, 5, 6, result=[1])
    h = b.build()
    _, marked = collect_set_ops(h)
    r = LostWritesChecker().check(h, CTX)
    assert not marked and r.verdict == Verdict.VALID
    assert "no op is marked final" in r.details["final_read_rule"]


def test_no_acknowledged_adds_is_unknown():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2, "fail")
    final_read(b, [])
    assert check(b).verdict == Verdict.UNKNOWN


def test_stabilisation_like_set_full():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 0, 1).op(1, "add", K, 2, 2, 3)
    b.op(2, "read", K, None, 4, 5, result=[2])        # 1 absent here (read began after 1 was acked)
    b.op(2, "read", K, None, 6, 7, result=[1, 2])     # 1 present from now on
    b.op(2, "read", K, None, 8, 9, result=[1])        # 2 absent: last word is absence
    final_read(b, [1, 2], start=10, end=11)           # ... but the final read has both
    r = check(b)
    st_ = r.details["stabilisation"]
    assert st_["counts"] == {"stable": 2, "lost": 0, "never-read": 0}
    # 1: acked at 1 ms, last absent read completed at 5 ms -> 4 ms; 2: acked at 3, last absent at 9 -> 6 ms
    assert st_["stable_latency_ms"]["max"] == pytest.approx(6.0)
    assert st_["stable_latency_ms"]["p50"] == pytest.approx(4.0)


def test_registry_builds_every_name_and_refuses_unknown():
    built = build([n for n in names() if n != "linearizable"])
    assert [c.name for c in built] == [n for n in names() if n != "linearizable"]
    from checkers.registry import UnavailableChecker
    assert not any(isinstance(c, UnavailableChecker) for c in built)
    (lin,) = build(["linearizable"])
    assert lin.name == "linearizable"
    with pytest.raises(UserError, match="unknown checker 'nope'"):
        build(["nope"])


# --------------------------------------------------------------------------- property test vs brute force

@st.composite
def element_histories(draw):
    """One key, items 1..2, up to 4 adds/removes with random overlaps and outcomes, one final read."""
    b = HistoryBuilder()
    n = draw(st.integers(1, 4))
    for i in range(n):
        f = draw(st.sampled_from(["add", "add", "remove"]))
        item = draw(st.integers(1, 2))
        start = i * 4 + draw(st.integers(0, 6)) + i / 100
        dur = draw(st.integers(1, 10))
        outcome = draw(st.sampled_from(["ok", "ok", "info", "fail", "open"]))
        if outcome == "open":
            b.op(i, f, K, item, start, None)
        else:
            b.op(i, f, K, item, start, start + dur, outcome)
    rs = n * 4 + draw(st.integers(-6, 6)) + 0.005
    final_read(b, draw(st.sets(st.integers(1, 2))), start=rs, end=rs + draw(st.integers(1, 5)))
    return b.build()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(element_histories())
def test_lost_writes_and_resurrections_agree_with_brute_force(h):
    from checkers.resurrections import ResurrectionsChecker
    by_key, _ = collect_set_ops(h)
    so = by_key[K]
    final_set = set(so.final.read_value)
    want_lost, want_res = set(), set()
    for x in (1, 2):
        adds, rms = so.adds.get(x, []), so.removes.get(x, [])
        if x not in final_set and any(a.ok for a in adds) and not set_oracle(adds, rms, so.final, present=False):
            want_lost.add(x)
        if (x in final_set and any(not a.failed and a.s < so.final.e for a in adds)
                and any(r.ok and r.e < so.final.s for r in rms) and not set_oracle(adds, rms, so.final, present=True)):
            want_res.add(x)
    r = LostWritesChecker().check(h, CTX)
    got_lost = {int(a.description.split("add of ")[1].split(" ")[0]) for a in r.anomalies if a.kind == "lost-write"}
    assert got_lost == want_lost
    rr = ResurrectionsChecker().check(h, CTX)
    got_res = {int(a.description.split("item ")[1].split(" ")[0]) for a in rr.anomalies if a.kind == "resurrection"}
    assert got_res == want_res


def random_element_history(seed: int):
    """A seeded random one-key history: 1-4 adds/removes of items 1..2 at staggered times, one final read."""
    import random
    rng = random.Random(seed)
    b = HistoryBuilder()
    n = rng.randint(2, 4)
    for i in range(n):
        f = rng.choice(["add", "remove"]) if i else "add"
        start = i * 4 + rng.randint(0, 6) + i / 100
        outcome = rng.choice(["ok", "ok", "ok", "info", "fail", "open"])
        end = None if outcome == "open" else start + rng.randint(1, 10)
        b.op(i, f, K, rng.randint(1, 2), start, end, outcome)
    rs = n * 4 + rng.randint(-6, 6) + 0.005
    final_read(b, {x for x in (1, 2) if rng.random() < 0.5}, start=rs, end=rs + rng.randint(1, 5))
    return b.build()


def test_lost_writes_and_resurrections_agree_with_brute_force_on_seeded_histories():
    from checkers.resurrections import ResurrectionsChecker
    seen = {"lost": 0, "resurrection": 0, "removed": 0, "concurrent": 0}
    for seed in range(1000):
        h = random_element_history(seed)
        so = collect_set_ops(h)[0][K]
        final_set = set(so.final.read_value)
        want_lost, want_res = set(), set()
        for x in (1, 2):
            adds, rms = so.adds.get(x, []), so.removes.get(x, [])
            if x not in final_set and any(a.ok for a in adds) and not set_oracle(adds, rms, so.final, False):
                want_lost.add(x)
            if (x in final_set and any(not a.failed and a.s < so.final.e for a in adds)
                    and any(r.ok and r.e < so.final.s for r in rms) and not set_oracle(adds, rms, so.final, True)):
                want_res.add(x)
        r = LostWritesChecker().check(h, CTX)
        rr = ResurrectionsChecker().check(h, CTX)
        assert {int(a.description.split("add of ")[1].split(" ")[0]) for a in r.anomalies
                if a.kind == "lost-write"} == want_lost, f"seed {seed}"
        assert {int(a.description.split("item ")[1].split(" ")[0]) for a in rr.anomalies} == want_res, f"seed {seed}"
        seen["lost"] += len(want_lost)
        seen["resurrection"] += len(want_res)
        seen["removed"] += r.counts["removed"]
        seen["concurrent"] += r.counts["concurrent_with_final_read"]
    assert all(v >= 3 for v in seen.values()), seen


def test_presence_is_explained_only_by_adds_begun_before_the_final_read_completed():
    b = HistoryBuilder()
    b.op(1, "add", K, 1, 1, 2, "fail").op(2, "add", K, 1, 200, 201, "info")   # the info add came too late
    b.op(3, "add", K, 2, 300, 301)                                             # acked, but after the read
    final_read(b, [1, 2])
    r = check(b)
    assert r.counts["failed_present"] == 1 and r.counts["unexpected"] == 1 and r.verdict == Verdict.INVALID
