"""Staleness (PBS) on hand-built register and session histories with known k and t."""
from __future__ import annotations

import pytest

from checkers.base import CheckContext, Verdict
from checkers.staleness import StalenessChecker, theoretical_staleness
from tests.checker_support import HistoryBuilder

K = "r1"


def check(b, **options):
    return StalenessChecker().check(b.build(), CheckContext(settings={"n": 3, "r": 1, "w": 1}, options=options))


def test_theory_matches_the_pbs_formula():
    assert theoretical_staleness(3, 1, 1, 1) == pytest.approx(2 / 3)   # read latest w.p. 1/3 right after the write
    assert theoretical_staleness(3, 1, 1, 2) == pytest.approx(4 / 9)
    assert theoretical_staleness(3, 2, 2, 1) == 0.0                    # R + W > N


def test_k_staleness_counts_definitely_newer_acked_writes():
    b = HistoryBuilder()
    b.op(1, "write", K, 10, 0, 1).op(1, "write", K, 20, 2, 3).op(1, "write", K, 30, 4, 5)
    b.op(2, "read", K, None, 10, 11, result=30)     # fresh
    b.op(2, "read", K, None, 12, 13, result=10)     # 2 behind
    b.op(2, "read", K, None, 14, 15, result=None)   # initial: 3 behind
    b.op(2, "read", K, None, 16, 17, result=[10, 30])  # siblings: the freshest counts
    r = check(b)
    assert r.details["k_staleness_histogram"] == {0: 2, 2: 1, 3: 1}
    assert r.counts["stale_read_share"] == 0.5 and r.counts["max_k_staleness"] == 3
    assert r.details["k_staleness_observed"][1] == 0.5 and r.details["k_staleness_observed"][3] == 0.25
    assert r.verdict == Verdict.VALID
    assert check(b, stale_reads_invalid=True).verdict == Verdict.INVALID


def test_concurrent_and_info_writes_do_not_make_a_read_stale():
    b = HistoryBuilder()
    b.op(1, "write", K, 10, 0, 1)
    b.op(3, "write", K, 20, 2, 20)                  # acked after the read began
    b.op(4, "write", K, 30, 3, 4, "info")
    b.op(2, "read", K, None, 10, 11, result=10)
    b.op(5, "write", K, 40, 0.5, 6)                 # overlaps write 10: not definitely newer
    r = check(b)
    assert r.counts["stale_reads"] == 0


def test_t_visibility_buckets():
    b = HistoryBuilder()
    b.op(1, "write", K, 10, 0, 1)
    b.op(2, "read", K, None, 1.5, 2, result=None)      # 0.5 ms after the ack: missed
    b.op(3, "read", K, None, 1.7, 2.5, result=10)      # 0.7 ms: saw it
    b.op(4, "read", K, None, 30, 31, result=10)        # 29 ms: saw it
    r = check(b)
    curve = {c["t_ms_from"]: c for c in r.details["t_visibility"]}
    assert curve[0]["reads"] == 2 and curve[0]["p_visible"] == 0.5
    assert curve[20]["reads"] == 1 and curve[20]["p_visible"] == 1.0


def test_session_lists_and_unexplained_values():
    b = HistoryBuilder()
    b.op(1, "write", "s0-k0", 1, 0, 1, session=0).op(1, "write", "s0-k0", 2, 2, 3, session=0)
    b.op(2, "read", "s0-k0", None, 5, 6, result=[1], session=1)
    b.op(2, "read", "s0-k0", None, 7, 8, result=[99], session=1)
    r = check(b)
    assert r.counts["stale_reads"] == 1 and r.counts["unexplained_reads"] == 1


def random_register_history(seed: int):
    """Seeded random register history: overlapping writes of unique values, reads of any written value."""
    import random
    rng = random.Random(seed)
    b = HistoryBuilder()
    written: list[int] = []
    for i in range(rng.randint(2, 14)):
        start = rng.uniform(0, 30)
        end = start + rng.uniform(0.1, 6)
        if rng.random() < 0.5:
            b.op(i, "write", K, i + 1, start, end, rng.choice(["ok", "ok", "ok", "info", "fail"]))
            written.append(i + 1)
        else:
            got = rng.choice([None, *written]) if written else None
            b.op(i, "read", K, None, start, end, result=got)
    return b.build()


def brute_k_histogram(h):
    """k per ok read straight from the definition, quadratic."""
    from collections import Counter

    from checkers.quantiles import client_pairs
    pairs = client_pairs(h)
    writes = [p for p in pairs if p.f == "write" and not p.failed]
    out = Counter()
    for r in pairs:
        if r.f != "read" or not r.ok:
            continue
        v = r.read_value
        src = next((w for w in writes if w.invoke.value == v), None) if v is not None else None
        if v is not None and src is None:
            continue  # the value of a failed write: unexplained, left out
        fresh = -1 if v is None else (src.e if src.ok else float("inf"))
        out[sum(1 for w in writes if w.ok and w.e < r.s and w.s > fresh)] += 1
    return dict(out)


def test_k_staleness_agrees_with_the_quadratic_definition():
    for seed in range(400):
        h = random_register_history(seed)
        r = StalenessChecker().check(h, CheckContext())
        assert dict(r.details["k_staleness_histogram"]) == brute_k_histogram(h), f"seed {seed}"
