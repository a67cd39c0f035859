"""Perf checker and fault windows on hand-built histories with known figures."""
from __future__ import annotations

import pytest

from checkers.base import CheckContext, Verdict
from checkers.fault_windows import fault_windows
from checkers.perf import PerfChecker
from checkers.quantiles import quantile, summarize
from tests.checker_support import HistoryBuilder


def test_quantiles_are_nearest_rank():
    data = list(range(1, 1001))
    assert quantile(data, 0.5) == 500 and quantile(data, 0.999) == 999 and quantile(data, 1.0) == 1000
    s = summarize([3.0])
    assert s["p50"] == s["p999"] == s["max"] == 3.0 and s["count"] == 1
    assert summarize([])["p99"] is None


def test_fault_windows_pairing():
    b = HistoryBuilder()
    b.nemesis("start-partition", 10, 11).nemesis("kill", 12, 13, value=["n1"])
    b.nemesis("stop-partition", 20, 21).nemesis("start", 30, 31, value=["n1"])
    b.nemesis("start-clock", 40, 41, outcome="fail")              # refused: no window
    b.nemesis("pause", 50, 51).nemesis("start-link", 52, 53).nemesis("heal", 60, 61)
    b.nemesis("wipe", 70, 71).nemesis("start-partition", 80, 81)  # never stopped, never restarted
    b.op(1, "read", "k", None, 90, 91, result=None)
    ws = fault_windows(b.build())
    got = [(w.kind, w.start // 1_000_000, w.end // 1_000_000, w.failed) for w in ws]
    assert got == [("start-partition", 10, 21, False), ("kill", 12, 31, False), ("start-clock", 40, 41, True),
                   ("pause", 50, 61, False), ("start-link", 52, 61, False), ("wipe", 70, 91, False),
                   ("start-partition", 80, 91, False)]


def test_a_wiped_node_is_down_until_it_is_started_and_a_plugin_kind_pairs_its_own_ops(monkeypatch):
    from harness import plugins

    b = HistoryBuilder()
    b.nemesis("wipe", 10, 11, value=["n1"]).nemesis("start", 40, 43, value=["n1"])
    b.nemesis("freeze", 50, 51).nemesis("thaw", 60, 61).nemesis("thaw", 70, 71)   # a stop with nothing open
    got = [(w.kind, w.start // 1_000_000, w.end // 1_000_000) for w in fault_windows(b.build())]
    assert got == [("wipe", 10, 43), ("freeze", 50, 51), ("thaw", 60, 61), ("thaw", 70, 71)]  # freeze: unknown

    monkeypatch.setitem(plugins._entry_points("nemeses"), "freeze", "tests.test_checker_perf:FREEZE")
    got = [(w.kind, w.start // 1_000_000, w.end // 1_000_000) for w in fault_windows(b.build())]
    assert got == [("wipe", 10, 43), ("freeze", 50, 61)]


class _Kind:
    start, stop = "freeze", "thaw"


FREEZE = _Kind()


def test_a_cas_whose_compare_failed_is_served_other_fails_are_not():
    b = HistoryBuilder()
    b.op(1, "cas", "k", [1, 2], 0, 1, outcome="ok")
    b.op(1, "cas", "k", [1, 3], 2, 3, outcome="fail", compared=True)   # the store answered: no
    b.op(1, "cas", "k", [2, 4], 4, 5, outcome="fail")                  # the store did not answer
    b.op(1, "read", "k", None, 6, 7, outcome="info")
    counts = PerfChecker().check(b.build(), CheckContext()).counts
    assert counts["availability"] == 0.5


def history_with_a_partition():
    b = HistoryBuilder()
    b.nemesis("start-partition", 100, 101).nemesis("stop-partition", 200, 201)
    p = 0
    for t in range(0, 300, 10):          # one op every 10 ms, each taking 2 ms
        p += 1
        inside = 100 <= t <= 201
        outcome = "info" if inside and t % 20 == 0 else "ok"
        b.op(p, "write", "k", t, t, t + 2, outcome)
    return b.build()


def test_latency_throughput_and_availability_inside_and_outside_faults():
    r = PerfChecker().check(history_with_a_partition(), CheckContext(options={"fault_grace_s": 0}))
    assert r.verdict == Verdict.VALID
    # 30 ops; inside [100, 201]: t=100..200 -> 11 ops, 6 of them info
    assert r.counts["ops"] == 30 and r.counts["ok_ops"] == 24 and r.counts["info_ops"] == 6
    assert r.counts["availability"] == pytest.approx(24 / 30)
    assert r.counts["availability_in_faults"] == pytest.approx(5 / 11)
    assert r.counts["availability_outside_faults"] == pytest.approx(1.0)
    # the default grace (5 s) keeps the rest of this 0.3 s history in the fault: t=100..290 -> 20 ops
    assert PerfChecker().check(history_with_a_partition(), CheckContext()).counts["availability_in_faults"] == \
        pytest.approx(14 / 20)
    assert r.counts["p999_latency_ms"] == pytest.approx(2.0)
    assert r.details["latency_ms"]["write:info"]["count"] == 6
    (w,) = r.details["windows"]
    assert w["ops"] == 11 and w["ok"] == 5
    assert r.counts["throughput_ops_s"] == pytest.approx(30 / 0.292)


def test_load_throughput_counts_ok_ops_of_the_load_phase_only():
    """Load: 10 ops from 0 to 1000 ms (8 ok, 1 fail, 1 info); then a 5 s recovery and two final
    reads. 8 ok ops over 1 s = 8 ops/s; over the whole 0..6011 ms span it would be 10 / 6.011."""
    b = HistoryBuilder()
    for i in range(10):
        outcome = {3: "fail", 7: "info"}.get(i, "ok")
        b.op(i % 2 + 1, "write", "k", i, 100 * i, 100 * i + (100 if i == 9 else 5), outcome)
    b.op(3, "read", "k", None, 6000, 6005, final=True).op(3, "read", "j", None, 6006, 6011, final=True)
    counts = PerfChecker().check(b.build(), CheckContext()).counts
    assert counts["load_ok_ops_per_s"] == pytest.approx(8.0)
    assert counts["ok_throughput_ops_s"] == pytest.approx(10 / 6.011)   # the whole span, final reads included


def test_load_throughput_is_none_when_no_load_op_completed():
    b = HistoryBuilder().op(1, "write", "k", 1, 0, None).op(2, "read", "k", None, 10, 12, final=True)
    assert PerfChecker().check(b.build(), CheckContext()).counts["load_ok_ops_per_s"] is None


def test_thresholds_make_it_invalid():
    r = PerfChecker().check(history_with_a_partition(), CheckContext(options={"min_availability": 0.9}))
    assert r.verdict == Verdict.INVALID and "availability" in r.reason


def test_open_ops_count_as_unavailable():
    b = HistoryBuilder().op(1, "read", "k", None, 0, 1, result=None).op(2, "read", "k", None, 2, None)
    r = PerfChecker().check(b.build(), CheckContext())
    assert r.counts["availability"] == 0.5 and r.counts["open_ops"] == 1


def test_every_checker_result_is_strict_json():
    import json

    from checkers.registry import build, names
    b = HistoryBuilder()
    b.nemesis("start-partition", 1, 2).op(1, "add", "cart-1", 1, 0, 3, siblings=1).op(2, "remove", "cart-1", 1, 4, 5)
    b.op(3, "write", "s0-k0", 1, 0, 1, session=0).op(3, "read", "s0-k0", None, 2, 3, result=[1], siblings=1, session=0)
    b.op(4, "read", "cart-1", None, 9, 10, result=[1], siblings=2, final=True)
    h = b.build()
    ctx = CheckContext(settings={"n": 3, "r": 0, "w": 2, "mode": "dvv"})
    for c in build([n for n in names() if n != "linearizable"]):
        json.dumps(c.check(h, ctx).to_json(), allow_nan=False)


def test_empty_and_nemesis_only_histories_do_not_crash_any_checker():
    from checkers.registry import build, names
    from harness.history import History
    nem = HistoryBuilder().nemesis("start-partition", 1, 2).build()
    for h in (History.of([]), nem):
        for c in build([n for n in names() if n != "linearizable"]):
            r = c.check(h, CheckContext())
            assert r.verdict in (Verdict.UNKNOWN, Verdict.VALID), (c.name, r)
