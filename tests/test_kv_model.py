"""The kv model (get / put / append on strings) against the brute-force oracle, and its order hints.

The search with the model's ``precedes`` hook must agree with ``bruteforce.is_linearizable``
(which knows nothing of hints) on every small history: values are drawn from a tiny alphabet
("a", "b", "ab", ...) so a get's string often splits into appends in more than one way, the
case where a hint would be wrong if the model took it.
"""
from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers.base import CheckContext, Verdict
from checkers.linearizability import UNKNOWN, LinearizabilityChecker, Operation, check_operations
from checkers.linearizability.bruteforce import is_legal_order, is_linearizable
from checkers.linearizability.kv import KVModel
from harness.history import History
from harness.ops import Op

VALUES = ["a", "b", "ab", "ba", "x1y", "x2y", ""]
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def kv_runs(draw, max_ops: int = 7):
    """A sequential kv execution (each op takes effect at its own moment) with intervals drawn
    around those moments, outcomes drawn, and sometimes a get's result replaced."""
    n = draw(st.integers(1, max_ops))
    initial = draw(st.sampled_from(["", "", "a"]))
    state = initial
    ops = []
    for t in range(n):
        f = draw(st.sampled_from(["get", "get", "append", "append", "put"]))
        v = None if f == "get" else draw(st.sampled_from(VALUES))
        out = state if f == "get" else None
        if f == "append":
            state += v
        elif f == "put":
            state = v
        call = 3 * t - draw(st.integers(0, 6))
        ret = 3 * t + draw(st.integers(0, 6))
        kind = draw(st.sampled_from(["ok", "ok", "ok", "ok", "info", "fail"]))
        if f == "get" and draw(st.booleans()) and draw(st.booleans()):
            out = draw(st.sampled_from(["", "a", "b", "ab", "ba", "aab", "abab", "x1yx2y", "x2yx1y"]))
        if kind == "fail" or (kind == "info" and f == "get"):
            continue   # a failed op did not happen; an indeterminate get tells nothing (both dropped)
        if kind == "info":
            ops.append(Operation((f, v), UNKNOWN, call, math.inf, t))
        else:
            ops.append(Operation((f, v), out if f == "get" else None, call, ret, t))
    return initial, ops


@SETTINGS
@given(kv_runs())
def test_the_search_with_order_hints_agrees_with_brute_force(run):
    initial, ops = run
    model = KVModel(initial)
    verdict, info = check_operations(model, ops, time_limit=20)
    assert verdict == (Verdict.VALID if is_linearizable(model, ops) else Verdict.INVALID), info
    if verdict == Verdict.INVALID:
        facts = set(info["counterexample"])
        end = info["counterexample_scope_end"]
        end = math.inf if end == "the end" else int(end)
        relaxed = [op if op.id in facts or op.indeterminate else Operation(op.input, UNKNOWN, op.call, math.inf, op.id)
                   for op in ops if op.call <= end]
        assert not is_linearizable(model, [op for op in relaxed if not (op.indeterminate and op.input[0] == "get")])


@SETTINGS
@given(kv_runs(max_ops=6))
def test_every_hint_holds_in_every_linearization(run):
    """What ``precedes`` claims is true of each legal order the brute force finds (not only of one)."""
    import itertools

    initial, ops = run
    model = KVModel(initial)
    pairs = model.precedes(ops)
    ok = [op for op in ops if not op.indeterminate]
    maybe = [op for op in ops if op.indeterminate]
    for k in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, k):
            for order in itertools.permutations(ok + list(chosen)):
                if not is_legal_order(model, order):
                    continue
                where = {id(op): i for i, op in enumerate(order)}
                for i, j in pairs:
                    assert where[id(ops[i])] < where[id(ops[j])], (ops[i], ops[j], order)


def test_model_steps_and_descriptions():
    m = KVModel()
    assert m.init() == "" and m.step("", ("get", None), None) == (True, "")
    assert m.step("ab", ("append", "c"), None) == (True, "abc") and m.step("ab", ("put", 3), None) == (True, "3")
    assert m.step("ab", ("get", None), "a") == (False, "ab") and m.step("ab", ("get", None), UNKNOWN)[0]
    assert m.describe_op(("get", None), "ab") == "get -> 'ab'" and m.describe_op(("append", "x"), None) == "append 'x'"
    assert "(200 chars)" in m.describe_state("z" * 200)


def test_kv_history_checks_per_key_with_the_auto_model():
    ops: list[Op] = []

    def op(p, type_, f, key, value):
        ops.append(Op(index=len(ops), time=len(ops), process=p, type=type_, f=f, key=key, value=value))

    op(0, "invoke", "append", "k1", "x")
    op(1, "invoke", "append", "k2", "y")
    op(0, "ok", "append", "k1", "x")
    op(1, "ok", "append", "k2", "y")
    op(0, "invoke", "get", "k1", None)
    op(0, "ok", "get", "k1", "x")
    op(1, "invoke", "get", "k2", None)
    op(1, "ok", "get", "k2", "")          # misses an append that completed before it began
    res = LinearizabilityChecker().check(History.of(ops), CheckContext())
    assert res.details["model"] == "kv" and res.verdict == Verdict.INVALID
    assert [a.key for a in res.anomalies] == ["k2"] and res.details["keys"]["k1"]["verdict"] == "valid"
    assert "get -> '' [6..7] cannot follow" in res.anomalies[0].description
