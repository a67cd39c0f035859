"""Hand-built histories stored as history.jsonl (tests/data/*-known.jsonl): read by the real reader, known answers."""
from __future__ import annotations

from pathlib import Path

from checkers.base import CheckContext, Verdict
from harness.history import read_history

DATA = Path(__file__).parent / "data"


def test_stored_cart_history_with_known_answers():
    from checkers.registry import build
    h = read_history(DATA / "cart-known.jsonl")
    r = {c.name: c.check(h, CheckContext()) for c in build(["lost-writes", "resurrections", "siblings", "perf"])}
    lw = r["lost-writes"]
    assert lw.verdict == Verdict.INVALID
    assert (lw.counts["acked_writes"], lw.counts["lost_writes"], lw.counts["unacknowledged_present"],
            lw.counts["concurrent_with_final_read"]) == (3, 1, 1, 1)
    assert r["resurrections"].counts["resurrections"] == 1 and r["resurrections"].verdict == Verdict.VALID
    assert r["siblings"].counts["max_siblings"] == 2
    assert r["perf"].details["windows"][0]["kind"] == "start-partition"


def test_stored_session_history_with_one_violation_of_each_guarantee():
    from checkers.session import SessionChecker
    r = SessionChecker().check(read_history(DATA / "session-known.jsonl"), CheckContext())
    assert [a.kind for a in r.anomalies] == ["read-your-writes", "monotonic-reads", "monotonic-writes",
                                              "writes-follow-reads"]
    assert all(r.counts[c] == 1 for c in ("rw_violations", "mr_violations", "mw_violations", "wfr_violations"))
