"""Property tests: the linearizability checker against histories with known answers and a brute-force oracle."""
from __future__ import annotations

import math
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers.base import CheckContext, Verdict
from checkers.linearizability import UNKNOWN, CASRegisterModel, LinearizabilityChecker, Operation, RegisterModel
from checkers.linearizability import search as search_module
from checkers.linearizability.bruteforce import is_linearizable
from harness.history import History
from harness.ops import Op

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build(spec: list[dict]) -> tuple[History, dict[int, dict]]:
    """History from op specs {f, value, out, call, ret, type}; returns it and spec by invoke index.

    ``type`` is ok / fail / info / open. Times are sorted into event order
    (ties: invokes first, so touching ops are concurrent, as the checker assumes).
    """
    events = []
    for n, s in enumerate(spec):
        events.append((s["call"], 0, n))
        if s["type"] != "open":
            events.append((s["ret"], 1, n))
    events.sort()
    ops, by_invoke = [], {}
    for index, (_, kind, n) in enumerate(events):
        s = spec[n]
        if kind == 0:
            s["invoke_index"] = index
            by_invoke[index] = s
            value = None if s["f"] == "read" else s["value"]
            ops.append(Op(index=index, time=index, process=n, type="invoke", f=s["f"], key="k", value=value))
        else:
            s["complete_index"] = index
            value = s["out"] if s["f"] == "read" else s["value"]
            ops.append(Op(index=index, time=index, process=n, type=s["type"], f=s["f"], key="k", value=value))
    return History.of(ops), by_invoke


def oracle_ops(spec: list[dict], facts: set[int] | None = None) -> list[Operation]:
    """The spec as Operations, built without the checker's code; ops not in ``facts`` relaxed to info."""
    out = []
    for s in spec:
        if s["type"] == "fail" or (s["f"] == "read" and s["type"] in ("info", "open")):
            continue
        value = tuple(s["value"]) if isinstance(s["value"], list) else s["value"]
        inp = (s["f"], None if s["f"] == "read" else value)
        definite = s["type"] == "ok" and (facts is None or s["invoke_index"] in facts)
        if definite:
            out.append(Operation(inp, s["out"] if s["f"] == "read" else None, s["invoke_index"], s["complete_index"]))
        elif s["f"] != "read":
            out.append(Operation(inp, UNKNOWN, s["invoke_index"], math.inf))
    return out


def check(history: History):
    return LinearizabilityChecker().check(history, CheckContext(time_limit=20))


def expected_verdict(spec: list[dict]) -> Verdict:
    """The oracle's answer; a history with nothing to check (all failed, info reads) is valid, as
    Knossos has it: the empty linearization explains it."""
    ops = oracle_ops(spec)
    if not ops:
        return Verdict.VALID
    return Verdict.VALID if is_linearizable(model_for(spec), ops) else Verdict.INVALID


def model_for(spec: list[dict]):
    return CASRegisterModel() if any(s["f"] == "cas" for s in spec) else RegisterModel()


@st.composite
def sequential_runs(draw, max_ops=14, cas=True):
    """A sequential execution (op i takes effect at 10*i+5) stretched into random overlapping intervals."""
    n = draw(st.integers(1, max_ops))
    state, spec, fresh = None, [], iter(range(1, 1000))
    for i in range(n):
        point = 10 * i + 5
        call = point - draw(st.integers(0, 25))
        ret = point + draw(st.integers(0, 25))
        f = draw(st.sampled_from(["write", "read", "cas"] if cas else ["write", "read"]))
        type_ = draw(st.sampled_from(["ok", "ok", "ok", "info", "open"]))
        takes_effect = type_ == "ok" or draw(st.booleans())
        s = {"f": f, "call": call, "ret": ret, "type": type_, "value": None, "out": None}
        if f == "write":
            s["value"] = next(fresh)
            if takes_effect:
                state = s["value"]
        elif f == "read":
            s["out"] = state
        else:
            new = next(fresh)
            if draw(st.booleans()):        # a cas that matches, or one that fails
                s["value"] = [state, new]
                if takes_effect:
                    state = new
            else:
                s["value"] = [next(fresh), new]
                s["type"] = "fail" if type_ == "ok" else type_   # an unmatched info cas never took effect
        spec.append(s)
    return spec


@SETTINGS
@given(sequential_runs())
def test_histories_from_a_sequential_execution_are_linearizable(spec):
    history, _ = build(spec)
    res = check(history)
    assert res.verdict == Verdict.VALID, res.reason


@SETTINGS
@given(sequential_runs(max_ops=7), st.data())
def test_a_corrupted_read_is_found_when_the_oracle_says_so(spec, data):
    reads = [s for s in spec if s["f"] == "read" and s["type"] == "ok"]
    if reads:
        target = data.draw(st.sampled_from(reads))
        written = [s["value"] for s in spec if s["f"] == "write"]
        target["out"] = data.draw(st.sampled_from([None, 999, *written]))
    history, _ = build(spec)
    assert check(history).verdict == expected_verdict(spec)


@st.composite
def small_histories(draw):
    """Up to 7 arbitrary register ops: random intervals, values, outcomes (ok / fail / info / open)."""
    n = draw(st.integers(1, 7))
    spec = []
    for _ in range(n):
        call = draw(st.integers(0, 20))
        ret = call + draw(st.integers(0, 10))
        f = draw(st.sampled_from(["write", "write", "read", "read", "cas"]))
        type_ = draw(st.sampled_from(["ok", "ok", "ok", "info", "open", "fail"]))
        vals = st.sampled_from([None, 1, 2, 3])
        s = {"f": f, "call": call, "ret": ret, "type": type_, "value": None, "out": None}
        if f == "write":
            s["value"] = draw(st.integers(1, 3))
        elif f == "read":
            s["out"] = draw(st.one_of(vals, st.just([1, 2])))
        else:
            s["value"] = [draw(vals), draw(st.integers(1, 3))]
        spec.append(s)
    return spec


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_histories())
def test_agrees_with_brute_force_and_counterexamples_hold(spec):
    history, by_invoke = build(spec)
    model = model_for(spec)
    res = check(history)
    assert res.verdict == expected_verdict(spec)
    if res.verdict == Verdict.INVALID:
        (anomaly,) = res.anomalies
        facts = {i for i in anomaly.ops if i in by_invoke}
        assert facts and all(by_invoke[i]["type"] == "ok" for i in facts)
        # the claim: these ok ops cannot be linearized even with every other op optional
        assert not is_linearizable(model, oracle_ops(spec, facts)), anomaly.description


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_histories())
def test_compact_cache_keys_agree_with_brute_force(spec):
    """The compact (low run, rest) cache keys used for long keys, forced on small histories."""
    history, _ = build(spec)
    with mock.patch.object(search_module, "COMPACT_KEYS_ABOVE", 0):
        res = check(history)
    assert res.verdict == expected_verdict(spec)
