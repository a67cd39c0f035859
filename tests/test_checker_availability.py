"""Availability outside fault windows (perf): fault-free failures are evidence, on hand-built histories.

An op is in a fault when its invoke..completion span overlaps a fault window or the grace after it
(``fault_grace_s``, default 5 s); below ``min_availability_outside_faults`` (default 0.99) of the
other ops served, the run is invalid and each one not served is an ``unavailable`` anomaly.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from checkers.base import CheckContext, Verdict
from checkers.perf import PerfChecker
from harness.errors import UserError
from harness.spec import load_spec
from tests.checker_support import HistoryBuilder

ROOT = Path(__file__).resolve().parents[1]


def steady(count: int, failing: set[int], start_ms: float = 0.0, every_ms: float = 10.0,
           b: HistoryBuilder | None = None) -> HistoryBuilder:
    """``count`` reads, one every ``every_ms`` taking 2 ms; those numbered in ``failing`` fail."""
    b = b or HistoryBuilder()
    for i in range(count):
        t = start_ms + i * every_ms
        b.op(i, "read", f"k{i % 3}", None, t, t + 2, "fail" if i in failing else "ok", result=[])
    return b


def check(b: HistoryBuilder, **options) -> object:
    return PerfChecker().check(b.build(), CheckContext(options=options))


def test_fault_free_failures_below_the_threshold_are_invalid_with_the_ops_that_failed() -> None:
    r = check(steady(200, {5, 50, 100}))                            # 197 / 200 = 0.985 < 0.99
    assert r.verdict == Verdict.INVALID and "availability outside faults 0.9850 below 0.99" in r.reason
    assert r.counts["unavailable_outside_faults"] == 3
    assert [a.kind for a in r.anomalies] == ["unavailable"] * 3
    assert [a.key for a in r.anomalies] == ["k2", "k2", "k1"]
    assert all(len(a.ops) == 1 for a in r.anomalies)
    ok = check(steady(200, {5}))                                    # 0.995: one in two hundred may fail
    assert ok.verdict == Verdict.VALID and ok.anomalies == () and ok.counts["unavailable_outside_faults"] == 1


def test_the_threshold_is_an_option() -> None:
    assert check(steady(200, {5, 50, 100}), min_availability_outside_faults=0.98).verdict == Verdict.VALID
    assert check(steady(200, {5}), min_availability_outside_faults=1.0).verdict == Verdict.INVALID


def test_failures_in_a_window_its_grace_or_overlapping_it_do_not_count() -> None:
    b = HistoryBuilder().nemesis("kill", 1000, 1001, effective_ms=1000).nemesis("start", 2000, 2001, effective_ms=2000)
    # one op a 10 ms from 0 to 9.99 s: everything from 1 s to 7 s (window + 5 s grace) fails
    steady(1000, {i for i in range(1000) if 1000 <= i * 10 <= 7000}, b=b)
    b.op("slow", "read", "k0", None, 990, 1500, "info")           # invoked before the kill, done inside it
    r = check(b)
    assert r.verdict == Verdict.VALID, r.reason
    assert r.counts["availability_outside_faults"] == 1.0 and r.counts["availability_in_faults"] < 0.1
    late = check(b, fault_grace_s=1.0)                             # 3 s to 7 s are now fault-free failures
    assert late.verdict == Verdict.INVALID and late.counts["unavailable_outside_faults"] == 400


def test_a_fault_counts_from_its_request_not_only_from_its_effect() -> None:
    """SIGKILL lands before kill() has reaped the process: ops fail between request and effect."""
    b = HistoryBuilder().nemesis("kill", 900, 1001, effective_ms=1000).nemesis("start", 2000, 2001, effective_ms=2000)
    steady(200, {i for i in range(200) if 900 <= i * 50 <= 6950 and i % 2}, every_ms=50, b=b)
    r = check(b)
    assert r.counts["unavailable_outside_faults"] == 0 and r.verdict == Verdict.VALID, r.reason
    assert r.counts["availability_in_faults"] < 0.6


def test_an_op_that_never_completed_outside_faults_is_unavailable() -> None:
    b = steady(150, set())
    b.op("hung", "read", "k0", None, 1600, None)
    b.op("hung2", "read", "k0", None, 1601, 1700, "info")
    r = check(b, min_availability_outside_faults=0.995)
    assert r.verdict == Verdict.INVALID and r.counts["unavailable_outside_faults"] == 2
    assert {a.description.split(": ")[-1] for a in r.anomalies} == {"open", "info (test)"}


def test_too_few_fault_free_ops_judge_nothing() -> None:
    r = check(steady(99, {1, 2, 3}))
    assert r.verdict == Verdict.VALID and r.counts["availability_outside_faults"] < 0.99


@pytest.mark.parametrize("bad", [1.5, -0.1, "high", True])
def test_a_threshold_outside_zero_one_is_refused_before_anything_starts(bad, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="checkers.min_availability_outside_faults must be a number between 0 and 1"):
        load_spec(None, {"checkers.min_availability_outside_faults": bad})
    with pytest.raises(UserError, match="checkers.fault_grace_s must be a non-negative number"):
        load_spec(None, {"checkers.fault_grace_s": -1})


def test_the_cli_says_so_in_one_line_and_exits_3(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--histories", str(tmp_path), "--set",
                           "checkers.min_availability_outside_faults=1.5"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        "dynharness: error: checkers.min_availability_outside_faults must be a number between 0 and 1, got 1.5"]
    assert not list(tmp_path.iterdir())                           # nothing started, nothing stored
