"""Real deletes on hand-built cart histories: lost-writes counts a deleted item as removed, and the
resurrections checker tells a resurrected delete (invalid) from an item a write put back (accepted).

A ``delete`` records the items its own read saw (completion value); it is judged when it is the
key's first, no remove came before it, and its read saw every item acknowledged before it began.
"""
from __future__ import annotations

from checkers.base import CheckContext, Verdict
from checkers.lost_writes import LostWritesChecker
from checkers.resurrections import ResurrectionsChecker
from tests.checker_support import HistoryBuilder

K = "cart-w0-0"


def filled(b: HistoryBuilder | None = None) -> HistoryBuilder:
    """Items 1, 2, 3 added to the bin one after another, then deleted by a read that saw all three."""
    b = b or HistoryBuilder()
    b.op(1, "add", K, 1, 0, 1, siblings=0).op(1, "add", K, 2, 2, 3, siblings=1).op(1, "add", K, 3, 4, 5, siblings=1)
    return b.op(1, "delete", K, None, 10, 12, result=[1, 2, 3], siblings=1)


def final_read(b: HistoryBuilder, items, start: float = 100, key: str = K) -> HistoryBuilder:
    return b.op(99, "read", key, None, start, start + 1, result=sorted(items), final=True)


def both(b: HistoryBuilder, **settings):
    h = b.build()
    ctx = CheckContext(settings=settings)
    return ResurrectionsChecker().check(h, ctx), LostWritesChecker().check(h, ctx)


def test_deleted_items_that_stay_gone_are_removed_not_lost() -> None:
    res, lost = both(final_read(filled(), []))
    assert res.verdict == Verdict.VALID and res.counts["acked_deletes"] == 1 and res.counts["deletes_judged"] == 1
    assert lost.verdict == Verdict.VALID and lost.counts["lost_writes"] == 0 and lost.counts["removed"] == 3


def test_a_deleted_item_back_with_nothing_to_write_it_is_a_resurrected_delete() -> None:
    res, lost = both(final_read(filled(), [2, 3]))
    assert res.verdict == Verdict.INVALID and res.counts["resurrected_deletes"] == 2
    assert [a.kind for a in res.anomalies] == ["resurrected-delete"] * 2
    assert "item 2 of cart-w0-0 was deleted by op" in res.anomalies[0].description
    assert lost.verdict == Verdict.VALID                       # present items are no lost writes
    # invalid whatever resurrections_invalid says: a lost tombstone is no accepted anomaly
    r = ResurrectionsChecker().check(final_read(filled(), [2]).build(),
                                     CheckContext(options={"resurrections_invalid": False}))
    assert r.verdict == Verdict.INVALID


def test_an_item_put_back_by_a_concurrent_or_stale_read_modify_write_is_accepted() -> None:
    concurrent = filled().op(2, "add", K, 4, 9, 11)                 # began before the delete completed
    res, _ = both(final_read(concurrent, [1, 2, 3, 4]))
    assert res.verdict == Verdict.VALID and res.counts["deletes_undone"] == 3
    stale = filled().op(2, "add", K, 5, 30, 31)                     # after it: its read may have been stale
    res, _ = both(final_read(stale, [1, 5]))
    assert res.verdict == Verdict.VALID and res.counts["deletes_undone"] == 1
    blind = filled().op(2, "add", K, [6], 30, 31, blind=True)        # a blind add writes only its own item
    res, _ = both(final_read(blind, [1, 6]))
    assert res.verdict == Verdict.INVALID and res.counts["resurrected_deletes"] == 1


def test_a_delete_whose_read_missed_an_acknowledged_item_is_not_judged() -> None:
    b = HistoryBuilder().op(1, "add", K, 1, 0, 1).op(2, "add", K, 2, 2, 3)
    b.op(1, "delete", K, None, 10, 12, result=[1], siblings=1)      # a stale read: item 2's version survives
    res, lost = both(final_read(b, [1, 2]))
    assert res.verdict == Verdict.VALID and res.counts["deletes_judged"] == 0
    assert lost.verdict == Verdict.VALID


def test_removes_before_a_delete_or_a_second_delete_leave_it_unjudged() -> None:
    removed = filled(HistoryBuilder().op(3, "remove", K, 9, 0, 1))
    res, _ = both(final_read(removed, [1]))
    assert res.verdict == Verdict.VALID and res.counts["deletes_judged"] == 0
    twice = filled().op(2, "delete", K, None, 11, 13, result=[1, 2, 3])
    res, _ = both(final_read(twice, [1]))
    assert res.counts["deletes_judged"] == 0


def test_info_and_failed_deletes_are_not_judged_and_a_failed_one_removes_nothing() -> None:
    b = HistoryBuilder().op(1, "add", K, 1, 0, 1).op(1, "delete", K, None, 10, 12, "info", result=[1])
    res, lost = both(final_read(b, []))
    assert res.counts["deletes_judged"] == 0 and lost.verdict == Verdict.VALID   # an info delete may have happened
    b = HistoryBuilder().op(1, "add", K, 1, 0, 1).op(1, "delete", K, None, 10, 12, "fail", result=[1])
    _, lost = both(final_read(b, []))
    assert lost.verdict == Verdict.INVALID and lost.counts["lost_writes"] == 1    # a failed delete did not happen


def test_lww_with_clock_faults_does_not_judge_deletes() -> None:
    b = filled(HistoryBuilder().nemesis("start-clock", 0, 1).nemesis("stop-clock", 50, 51))
    res, _ = both(final_read(b, [2]), mode="lww")
    assert res.verdict == Verdict.VALID and "skipped" in res.details["deletes_judged_rule"]
    res, _ = both(final_read(filled(), [2]), mode="lww")
    assert res.verdict == Verdict.INVALID


def test_a_delete_without_a_final_read_of_its_key_is_unknown() -> None:
    res, _ = both(final_read(filled(), [], key="cart-0"))
    assert res.verdict == Verdict.UNKNOWN and res.counts["removes_never_read"] == 1
