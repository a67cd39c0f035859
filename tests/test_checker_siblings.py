"""Sibling checker on hand-built histories: distribution, thresholds, the true-concurrency bound."""
from __future__ import annotations

import pytest

from checkers.base import CheckContext, Verdict
from checkers.siblings import SiblingsChecker, concurrency_bounds
from tests.checker_support import HistoryBuilder

K = "k1"


def reads(b: HistoryBuilder, counts, start=100.0, key=K):
    for i, c in enumerate(counts):
        t = start + i * 10
        b.op(50 + i, "read", key, None, t, t + 1, result=list(range(c)), siblings=c)
    return b


def check(b, mode=None, **options):
    settings = {"mode": mode} if mode else {}
    return SiblingsChecker().check(b.build(), CheckContext(settings=settings, options=options))


def test_divergent_versions_table_max_and_p99():
    b = HistoryBuilder()
    for i in range(5):
        b.op(i, "write", K, i, i * 2, i * 2 + 50)   # five overlapping writers
    r = check(reads(b, [1, 1, 2, 3, 5, 0]))
    t = r.details["divergent_versions"]
    assert t == {"1": pytest.approx(0.4), "2": pytest.approx(0.2), "3": pytest.approx(0.2), "4+": pytest.approx(0.2)}
    assert r.details["absent_reads"] == 1
    assert r.details["keys_by_max_siblings"]["4-25"] == 1 and sum(r.details["keys_by_max_siblings"].values()) == 1
    assert r.counts["max_siblings"] == 5 and r.counts["p99_siblings"] == 5
    assert r.verdict == Verdict.VALID and not r.anomalies


def test_thresholds_warn_then_fail():
    b = HistoryBuilder()
    for i in range(10):
        b.op(i, "write", K, i, 0, 50, blind=True)
    r = check(reads(b, [4]), sibling_warn=3, sibling_fail=5)
    assert r.verdict == Verdict.VALID and [a.kind for a in r.anomalies] == ["sibling-warn"]
    r = check(reads(HistoryBuilder(), [6]), sibling_warn=3, sibling_fail=5)
    assert r.verdict == Verdict.INVALID and "sibling-fail" in [a.kind for a in r.anomalies]


def sequential_writes_then_read(siblings: int) -> HistoryBuilder:
    b = HistoryBuilder()
    b.op(1, "write", K, 1, 0, 1).op(2, "write", K, 2, 2, 3).op(3, "write", K, 3, 2.5, 4)  # at most 2 overlap
    return reads(b, [siblings])


def test_more_siblings_than_concurrent_writers_is_a_bug_in_dvv_mode_only():
    assert concurrency_bounds(sequential_writes_then_read(3).build())[K] == 2
    assert check(sequential_writes_then_read(2), mode="dvv").verdict == Verdict.VALID
    r = check(sequential_writes_then_read(3), mode="dvv")
    assert r.verdict == Verdict.INVALID and r.counts["keys_over_concurrency_bound"] == 1
    r = check(sequential_writes_then_read(3), mode="vclock")   # false concurrency: expected, reported
    assert r.verdict == Verdict.VALID and r.anomalies[0].kind == "siblings-exceed-concurrency"
    assert check(sequential_writes_then_read(3), mode="vclock", siblings_bound_invalid=True).verdict == Verdict.INVALID


def test_info_writes_stay_open_and_failed_writes_do_not_count():
    b = HistoryBuilder()
    b.op(1, "write", K, 1, 0, 1, "info").op(2, "write", K, 2, 5, 6).op(3, "write", K, 3, 7, 8, "fail")
    h = reads(b, [2]).build()
    assert concurrency_bounds(h)[K] == 2
    assert SiblingsChecker().check(h, CheckContext(settings={"mode": "dvv"})).verdict == Verdict.VALID


def test_blind_writes_may_each_stand_beside_the_others():
    b = HistoryBuilder()
    for i in range(4):
        b.op(i, "add", K, i, i * 2, i * 2 + 1, blind=True)
    assert check(reads(b, [4]), mode="dvv").verdict == Verdict.VALID


def test_growth_rate_per_key():
    b = HistoryBuilder()
    for i in range(3):
        b.op(i, "write", K, i, 0, 5000, blind=True)
    for i, c in enumerate([1, 2, 3]):
        b.op(10 + i, "read", K, None, 1000 * (i + 1), 1000 * (i + 1) + 1, result=list(range(c)), siblings=c)
    r = check(b)
    assert r.counts["max_growth_per_s"] == pytest.approx(1.0, rel=1e-3)


def test_no_sibling_counts_is_unknown():
    b = HistoryBuilder().op(1, "write", K, 1, 0, 1)
    assert check(b).verdict == Verdict.UNKNOWN


def test_in_dvv_mode_faults_or_weak_quorums_make_the_bound_report_only():
    b = sequential_writes_then_read(3)
    b.nemesis("start-partition", 0.2, 0.3).nemesis("stop-partition", 0.4, 0.5)
    r = check(b, mode="dvv")
    assert r.verdict == Verdict.VALID and r.counts["keys_over_concurrency_bound"] == 1
    assert "faults" in r.details["bound_rule"]
    r = SiblingsChecker().check(sequential_writes_then_read(3).build(),
                                CheckContext(settings={"mode": "dvv", "n": 3, "r": 1, "w": 1}))
    assert r.verdict == Verdict.VALID and "R + W <= N" in r.details["bound_rule"]
    r = SiblingsChecker().check(sequential_writes_then_read(3).build(),
                                CheckContext(settings={"mode": "dvv", "n": 3, "r": 2, "w": 2}))
    assert r.verdict == Verdict.INVALID


def test_concurrency_bound_agrees_with_brute_force_max_overlap():
    import random
    for seed in range(300):
        rng = random.Random(seed)
        b = HistoryBuilder()
        ivs = []
        for i in range(rng.randint(1, 8)):
            s = rng.uniform(0, 20) + i / 1000
            outcome = rng.choice(["ok", "ok", "info", "fail"])
            e = s + rng.uniform(0.1, 8)
            b.op(i, "write", K, i, s, e, outcome)
            if outcome != "fail":
                ivs.append((s, float("inf") if outcome == "info" else e))
        want = max(sum(1 for a, z in ivs if a <= t < z or (a <= t and z == float("inf"))) for t, _ in ivs) if ivs else 0
        assert concurrency_bounds(b.build()).get(K, 0) == want, f"seed {seed}"
