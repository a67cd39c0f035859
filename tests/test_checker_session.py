"""Session guarantees: one hand-built history per guarantee, the tricky cases, and the brute-force oracle."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers.base import CheckContext, Verdict
from checkers.session import SessionChecker
from tests.checker_support import HistoryBuilder, session_oracle

CTX = CheckContext()


class Sessions:
    """Sequential sessions on one builder: each op starts 1 ms after the session's previous one ended."""

    def __init__(self) -> None:
        self.b = HistoryBuilder()
        self.t: dict[int, float] = {}
        self.proc = 0

    def at(self, s: int, t: float) -> "Sessions":
        self.t[s] = t
        return self

    def w(self, s: int, key: str, v: int, outcome: str = "ok", dur: float = 1) -> "Sessions":
        return self._op(s, "write", key, v, outcome, None, dur)

    def r(self, s: int, key: str, got: list[int], outcome: str = "ok", dur: float = 1) -> "Sessions":
        return self._op(s, "read", key, None, outcome, got, dur)

    def _op(self, s, f, key, v, outcome, got, dur):
        t = self.t.get(s, 0) + 1
        self.proc += 1
        self.b.op(self.proc, f, key, v, t, t + dur, outcome, result=got, session=s)
        self.t[s] = t + dur
        return self

    def check(self, **options):
        return SessionChecker().check(self.b.build(), CheckContext(options=options))


def kinds(r):
    return [a.kind for a in r.anomalies]


def test_read_your_writes_violation_names_session_write_and_read():
    s = Sessions().w(0, "s0-k0", 1).r(0, "s0-k0", [])
    r = s.check()
    h = s.b.build()
    assert r.verdict == Verdict.INVALID and r.counts["rw_violations"] == 1
    (a,) = r.anomalies
    write_ok = next(o for o in h if o.f == "write" and o.type == "ok")
    read_ok = next(o for o in h if o.f == "read" and o.type == "ok")
    assert a.kind == "read-your-writes" and "session 0" in a.description
    assert a.ops == (write_ok.index, read_ok.index)


def test_reading_a_sibling_or_a_newer_version_satisfies_read_your_writes():
    r = Sessions().w(0, "s0-k0", 1).w(0, "s0-k0", 2).r(0, "s0-k0", [1, 2]).r(0, "s0-k0", [2]).check()
    assert r.verdict == Verdict.VALID and r.counts["reads_checked"] == 2


def test_missed_info_write_is_never_a_violation():
    r = Sessions().w(0, "s0-k0", 1).w(0, "s0-k0", 2, "info").r(0, "s0-k0", [1]).check()
    assert r.verdict == Verdict.VALID


def test_monotonic_reads_violation():
    s = Sessions().w(0, "s0-k0", 1).w(0, "s0-k0", 2)
    s.at(1, 10).r(1, "s0-k0", [2]).r(1, "s0-k0", [1])
    r = s.check()
    assert kinds(r) == ["monotonic-reads"] and r.counts["mr_violations"] == 1


def test_monotonic_writes_violation():
    s = Sessions().w(0, "s0-k0", 1).w(0, "s0-k1", 1)
    s.at(1, 10).r(1, "s0-k1", [1]).r(1, "s0-k0", [])
    r = s.check()
    assert kinds(r) == ["monotonic-writes"] and r.counts["mw_violations"] == 1
    assert "precedes" in r.anomalies[0].description


def test_writes_follow_reads_violation():
    s = Sessions().w(0, "s0-k0", 1)
    s.at(1, 5).r(1, "s0-k0", [1]).w(1, "s1-k0", 1)
    s.at(2, 20).r(2, "s1-k0", [1]).r(2, "s0-k0", [])
    r = s.check()
    assert kinds(r) == ["writes-follow-reads"] and r.counts["wfr_violations"] == 1


def test_an_op_that_overlaps_the_next_one_in_its_session_does_not_count():
    s = Sessions()
    s.b.op(1, "write", "s0-k0", 1, 1, 5, session=0)        # acked only after the read began
    s.b.op(2, "read", "s0-k0", None, 2, 3, result=[], session=0)
    assert s.check().verdict == Verdict.VALID


def test_each_violating_read_counts_once_under_the_first_guarantee():
    # a read that breaks both read-your-writes and monotonic reads counts as RYW only
    r = Sessions().w(0, "s0-k0", 1).r(0, "s0-k0", [1]).r(0, "s0-k0", []).check()
    assert kinds(r) == ["read-your-writes"]


def test_violations_can_be_report_only():
    r = Sessions().w(0, "s0-k0", 1).r(0, "s0-k0", []).check(session_violations_invalid=False)
    assert r.verdict == Verdict.VALID and r.counts["rw_violations"] == 1


@st.composite
def session_histories(draw):
    """2-3 sessions, 2 keys each, sequential ops (sometimes overlapping), random outcomes and read values."""
    b = HistoryBuilder()
    n_sessions = draw(st.sampled_from([2, 3, 3]))
    next_v = {}
    proc = 0
    t = {s: draw(st.integers(0, 5)) + s / 10 for s in range(n_sessions)}
    for _ in range(draw(st.integers(2, 18))):
        s = draw(st.integers(0, n_sessions - 1))
        proc += 1
        start = t[s] + draw(st.sampled_from([-0.5, 0.3, 1, 2]))  # -0.5: overlaps the previous op
        dur = draw(st.integers(1, 4))
        outcome = draw(st.sampled_from(["ok"] * 6 + ["info", "fail"]))
        if draw(st.integers(0, 2)) == 0:
            key = f"s{s}-k{draw(st.integers(0, 1))}"
            v = next_v.get(key, 0) + 1
            next_v[key] = v
            b.op(proc, "write", key, v, start, start + dur, outcome, session=s)
        else:
            owner = draw(st.sampled_from([o for o in range(n_sessions) if o != s] + [s]))
            key = f"s{owner}-k{draw(st.integers(0, 1))}"
            top = next_v.get(key, 0)
            got = draw(st.sampled_from([[], [top], sorted({max(1, top - 1), top})])) if top else []
            b.op(proc, "read", key, None, start, start + dur, outcome, result=got, session=s)
        t[s] = start + dur + 0.01
    return b.build()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(session_histories())
def test_session_checker_agrees_with_brute_force(h):
    r = SessionChecker().check(h, CTX)
    got = sorted(((a.kind, a.ops[-1]) for a in r.anomalies), key=lambda t: t[1])
    assert got == session_oracle(h)


def random_session_history(seed: int):
    """A seeded random history of 3 sessions (sequential, with some overlaps and info/fail ops)."""
    import random
    rng = random.Random(seed)
    b = HistoryBuilder()
    next_v: dict[str, int] = {}
    t = {0: 0.0, 1: 0.1, 2: 0.2}
    for proc in range(16):
        s = rng.randrange(3)
        start = t[s] + rng.choice([1, 1, 1, -0.5])
        dur = rng.randint(1, 4)
        outcome = rng.choice(["ok"] * 8 + ["info", "fail"])
        if rng.random() < 0.4:
            key = f"s{s}-k{rng.randrange(2)}"
            next_v[key] = v = next_v.get(key, 0) + 1
            b.op(proc, "write", key, v, start, start + dur, outcome, session=s)
        else:
            key = f"s{rng.randrange(3)}-k{rng.randrange(2)}"
            top = next_v.get(key, 0)
            got = rng.choice([[], [top], [max(1, top - 1)]]) if top else []
            b.op(proc, "read", key, None, start, start + dur, outcome, result=got, session=s)
        t[s] = start + dur + 0.01
    return b.build()


def test_session_checker_agrees_with_brute_force_on_seeded_histories_covering_every_guarantee():
    seen = set()
    for seed in range(1000):
        h = random_session_history(seed)
        want = session_oracle(h)
        got = sorted(((a.kind, a.ops[-1]) for a in SessionChecker().check(h, CTX).anomalies), key=lambda t: t[1])
        assert got == want, f"seed {seed}"
        seen.update(g for g, _ in want)
    assert seen == {"read-your-writes", "monotonic-reads", "monotonic-writes", "writes-follow-reads"}


def test_without_session_field_the_process_is_the_session():
    b = HistoryBuilder()
    b.op(7, "write", "s0-k0", 1, 0, 1).op(7, "read", "s0-k0", None, 2, 3, result=[])
    r = SessionChecker().check(b.build(), CTX)
    assert r.counts["rw_violations"] == 1 and "session 7" in r.anomalies[0].description
