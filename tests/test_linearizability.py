"""Hand-built register histories with known answers for the ``linearizable`` checker."""
from __future__ import annotations

import math

import pytest

from checkers.base import CheckContext, Verdict
from checkers.linearizability import (UNKNOWN, CASRegisterModel, LinearizabilityChecker, Operation, RegisterModel,
                                      check_operations)
from harness.errors import UserError
from harness.history import History
from harness.ops import Op


class H:
    """A tiny history builder: ``h.invoke(p, f, key, value)`` / ``h.ok(p, f, key, value)`` ... in order."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def _add(self, p, type_, f, key, value):
        self.ops.append(Op(index=len(self.ops), time=len(self.ops) * 1000, process=p, type=type_, f=f,
                           key=key, value=value))
        return len(self.ops) - 1

    def invoke(self, p, f, key="x", value=None):
        return self._add(p, "invoke", f, key, value)

    def complete(self, p, type_, f, key="x", value=None):
        return self._add(p, type_, f, key, value)

    def op(self, p, f, value=None, key="x", type_="ok"):
        """A whole op, invoke then completion, nothing in between."""
        inv_value = value if f != "read" else None
        i = self.invoke(p, f, key, inv_value)
        self.complete(p, type_, f, key, value)
        return i

    def check(self, **options):
        return LinearizabilityChecker().check(History.of(self.ops), CheckContext(options=options))


def test_classic_stale_read_is_invalid_and_names_both_ops():
    h = H()
    w = h.op(1, "write", 1)
    r = h.op(2, "read", None)   # read absent after the write was acknowledged
    res = h.check()
    assert res.verdict == Verdict.INVALID
    assert res.counts["linearizable"] == "invalid"
    (a,) = res.anomalies
    assert a.kind == "non-linearizable" and a.key == "x"
    assert set(a.ops) == {w, w + 1, r, r + 1}


@pytest.mark.parametrize("seen", [None, 1])
def test_read_concurrent_with_write_may_see_either(seen):
    h = H()
    h.invoke(1, "write", "x", 1)
    h.invoke(2, "read", "x")
    h.complete(2, "ok", "read", "x", seen)
    h.complete(1, "ok", "write", "x", 1)
    assert h.check().verdict == Verdict.VALID


def test_info_write_that_must_have_happened():
    h = H()
    h.invoke(1, "write", "x", 1)
    h.complete(1, "info", "write", "x", 1)
    h.op(2, "read", 1)
    assert h.check().verdict == Verdict.VALID


def test_info_write_is_not_assumed_to_have_happened():
    h = H()
    h.op(1, "write", 1)
    h.invoke(2, "write", "x", 2)
    h.complete(2, "info", "write", "x", 2)
    h.op(3, "read", 1)
    assert h.check().verdict == Verdict.VALID


def test_info_write_seen_then_unseen_is_invalid():
    h = H()
    h.op(1, "write", 1)
    h.invoke(2, "write", "x", 2)
    h.complete(2, "info", "write", "x", 2)
    h.op(3, "read", 2)
    h.op(3, "read", 1)          # 1 cannot come back after 2 was seen
    res = h.check()
    assert res.verdict == Verdict.INVALID


def test_open_invoke_counts_as_info():
    h = H()
    h.invoke(1, "write", "x", 7)  # never completes
    h.op(2, "read", 7)
    res = h.check()
    assert res.verdict == Verdict.VALID
    assert res.counts["ops_info"] == 1


def test_info_write_cannot_take_effect_before_its_invoke():
    h = H()
    h.op(2, "read", 7)
    h.invoke(1, "write", "x", 7)
    h.complete(1, "info", "write", "x", 7)
    assert h.check().verdict == Verdict.INVALID


@pytest.mark.parametrize("seen, verdict", [(2, Verdict.INVALID), (1, Verdict.VALID)])
def test_failed_write_did_not_happen(seen, verdict):
    h = H()
    h.op(1, "write", 1)
    h.op(2, "write", 2, type_="fail")
    h.op(3, "read", seen)
    res = h.check()
    assert res.verdict == verdict
    assert res.counts["ops_failed_dropped"] == 1


def test_info_read_is_dropped():
    h = H()
    h.op(1, "write", 1)
    h.invoke(2, "read", "x")
    h.complete(2, "info", "read", "x", None)
    res = h.check()
    assert res.verdict == Verdict.VALID
    assert res.counts["info_reads_dropped"] == 1


def test_read_of_siblings_is_rejected():
    h = H()
    h.invoke(1, "write", "x", 1)
    h.invoke(2, "write", "x", 2)
    h.complete(1, "ok", "write", "x", 1)
    h.complete(2, "ok", "write", "x", 2)
    h.op(3, "read", [1, 2])
    res = h.check()
    assert res.verdict == Verdict.INVALID
    assert "siblings [1, 2]" in res.anomalies[0].description


def test_cas_register():
    h = H()
    h.op(1, "write", 1)
    h.op(2, "cas", [1, 2])
    h.op(3, "read", 2)
    assert h.check().verdict == Verdict.VALID
    assert h.check().details["model"] == "cas-register"
    h.op(3, "read", 1)             # the cas was acknowledged: 1 cannot come back
    assert h.check().verdict == Verdict.INVALID


def test_cas_from_wrong_value_is_invalid_and_failed_cas_is_ignored():
    h = H()
    h.op(1, "write", 1)
    h.op(2, "cas", [5, 6], type_="fail")   # did not happen: fine
    h.op(3, "read", 1)
    assert h.check().verdict == Verdict.VALID
    h.op(2, "cas", [5, 6])                 # acknowledged, but the value was 1
    assert h.check().verdict == Verdict.INVALID


def test_info_cas_may_have_happened():
    h = H()
    h.op(1, "write", 1)
    h.invoke(2, "cas", "x", [1, 2])
    h.complete(2, "info", "cas", "x", [1, 2])
    h.op(3, "read", 2)
    h.op(3, "write", 3)
    h.op(3, "read", 3)
    assert h.check().verdict == Verdict.VALID


def test_keys_are_independent_and_counted():
    h = H()
    h.op(1, "write", 1, key="a")
    h.op(2, "read", 1, key="a")
    h.op(1, "write", 1, key="b")
    h.op(2, "read", 1, key="a")
    h.op(2, "read", None, key="b")         # stale on b
    h.op(3, "write", 4, key="c")
    res = h.check(linearizable_stop_on_invalid=False)
    assert res.verdict == Verdict.INVALID
    assert [a.key for a in res.anomalies] == ["b"]
    assert (res.counts["keys"], res.counts["keys_valid"], res.counts["keys_invalid"]) == (3, 2, 1)
    assert res.details["keys"]["a"]["verdict"] == "valid"


def test_nemesis_and_unknown_ops_are_ignored():
    h = H()
    h._add("nemesis", "invoke", "start-partition", None, None)
    h._add("nemesis", "info", "start-partition", None, None)
    h.op(1, "write", 1)
    h.op(2, "add", 5)
    h.op(2, "read", 1)
    res = h.check()
    assert res.verdict == Verdict.VALID
    assert res.counts["ops_ignored"] == 1


def test_counterexample_is_the_minimal_set():
    h = H()
    noise = [h.op(9, "write", 100 + i, key="x") for i in range(3)]
    w1 = h.op(1, "write", 1)
    for i in range(3):
        h.op(8, "read", 1)
    w2 = h.op(1, "write", 2)
    r = h.op(2, "read", 1)                 # stale: 2 was acknowledged before this read began
    for i in range(4):
        h.op(7, "write", 50 + i)
        h.op(7, "read", 50 + i)
    res = h.check()
    assert res.verdict == Verdict.INVALID
    (a,) = res.anomalies
    # w2 then the stale read, plus one op that fixes 1 before w2: w1 itself or a read of 1
    # (with every other op as may-or-may-not-have-happened, either pins 1 before w2)
    assert {w2, w2 + 1, r, r + 1} <= set(a.ops) and len(a.ops) == 6, a.description
    third = (set(a.ops) - {w2, w2 + 1, r, r + 1})
    assert third in ({w1, w1 + 1}, *({w1 + 2 + 2 * i, w1 + 3 + 2 * i} for i in range(3))), a.description
    key = res.details["keys"]["x"]
    assert key["counterexample_minimal"] is True
    assert key["blocked"]["invoke"] == r
    assert noise[0] in [s["invoke"] for s in key["longest_prefix"]]


def burst(h: H, k: int, key: str = "x") -> None:
    """k concurrent writes, each read by a concurrent read, then a read of the first write's value.

    Linearizable (the first write last), but a depth-first search tries the
    first write first and must refute every set of writes containing it:
    about 2**k (set, value) pairs.
    """
    for i in range(k):
        h.invoke(100 + i, "write", key, i)
        h.invoke(200 + i, "read", key)
    for i in range(k):
        h.complete(100 + i, "ok", "write", key, i)
        h.complete(200 + i, "ok", "read", key, i)
    h.op(99, "read", 0, key=key)


def test_time_limit_gives_unknown_not_a_hang():
    h = H()
    burst(h, 24)
    res = LinearizabilityChecker().check(History.of(h.ops), CheckContext(time_limit=0.3))
    assert res.verdict == Verdict.UNKNOWN
    assert res.counts["keys_unknown"] == 1
    assert "time limit" in res.reason
    info = res.details["keys"]["x"]
    assert info["stopped"] == "time-limit" and info["steps"] > 0
    assert 0 < info["depth"] <= info["ops"] and info["ok_ops"] <= info["ops"]   # how far it got, for the report


def test_cache_cap_gives_unknown():
    h = H()
    burst(h, 8)
    assert h.check().verdict == Verdict.VALID
    res = h.check(linearizable_max_cache=200)
    assert res.verdict == Verdict.UNKNOWN
    assert "cap" in res.details["keys"]["x"]["reason"]
    assert res.details["keys"]["x"]["stopped"] == "cache-cap"


def test_bad_key_found_although_another_key_cannot_be_decided():
    h = H()
    burst(h, 24, key="hard")
    h.op(1, "write", 1, key="bad")
    h.op(2, "read", None, key="bad")
    res = LinearizabilityChecker().check(History.of(h.ops), CheckContext(time_limit=30))
    assert res.verdict == Verdict.INVALID
    assert res.details["keys"]["hard"]["verdict"] == "unknown"
    assert res.details["keys"]["hard"]["stopped"] == "invalid-elsewhere"
    assert "stopped" not in res.details["keys"]["bad"]


def test_a_key_never_searched_says_so():
    h = H()
    h.op(1, "write", 1, key="bad")
    h.op(2, "read", None, key="bad")
    for i in range(3):
        h.op(3, "write", i, key="later")   # more ops: searched after "bad", which stops the check first
    res = h.check()
    later = res.details["keys"]["later"]
    assert later["verdict"] == "unknown" and later["stopped"] == "invalid-elsewhere"
    assert later["steps"] == 0 and later["depth"] == 0


def test_bad_model_option_is_a_user_error():
    h = H()
    h.op(1, "write", 1)
    with pytest.raises(UserError):
        h.check(linearizable_model="queue")


def test_check_operations_api():
    ops = [Operation(("write", 1), None, 0, 1, "w1"), Operation(("read", None), None, 2, 3, "r"),
           Operation(("write", 2), UNKNOWN, 4, math.inf, "w2")]
    verdict, info = check_operations(RegisterModel(), ops, time_limit=5)
    assert verdict == Verdict.INVALID
    assert info["counterexample"] == ["w1", "r"]
    assert info["longest_prefix"] == ["w1"] and info["state_after_prefix"] == "1"
    verdict, info = check_operations(CASRegisterModel(), ops[:1], time_limit=5)
    assert verdict == Verdict.VALID and info["linearization"] == ["w1"]


def test_cache_subsumes_only_supersets_of_info_ops():
    # Found by fuzzing a mutant that pruned on disjoint info sets: valid only if the two
    # writes of 1 are used in the right roles (write 1 @1 before the read at 4..6, 3 at the end).
    inf = math.inf
    ops = [Operation(("write", 2), UNKNOWN, 2, inf), Operation(("write", 1), UNKNOWN, 1, inf),
           Operation(("read", None), 1, 4, 6), Operation(("write", 1), UNKNOWN, 6, inf),
           Operation(("read", None), 3, 8, 10), Operation(("write", 3), UNKNOWN, 0, inf)]
    verdict, _ = check_operations(RegisterModel(), ops, time_limit=5)
    assert verdict == Verdict.VALID


class SetModel:
    """The docs' example of a user model (docs/linearizability.md): a set of ints."""

    name, fs, pure_fs = "set", frozenset({"add", "read"}), frozenset({"read"})

    def init(self):
        return frozenset()

    def step(self, state, input, output):
        f, x = input
        if f == "add":
            return True, state | {x}
        return (output is UNKNOWN or frozenset(output) == state), state

    def is_pure(self, input):
        return input[0] == "read"

    def describe_op(self, input, output):
        return f"add {input[1]}" if input[0] == "add" else f"read -> {list(output)}"

    def describe_state(self, state):
        return str(sorted(state))


def test_a_user_model_plugs_in():
    h = H()
    h.op(1, "add", 1)
    h.invoke(2, "add", "x", 2)
    h.op(3, "read", [1])                   # concurrent with add 2: fine
    h.complete(2, "ok", "add", "x", 2)
    h.op(3, "read", [1, 2])
    assert LinearizabilityChecker(SetModel()).check(History.of(h.ops), CheckContext()).verdict == Verdict.VALID
    h.op(3, "read", [2])                   # 1 vanished
    res = LinearizabilityChecker(SetModel()).check(History.of(h.ops), CheckContext())
    assert res.verdict == Verdict.INVALID
    assert "read -> [2]" in res.anomalies[0].description


def test_no_register_ops_is_unknown_not_valid():
    h = H()
    h.op(1, "add", 1)
    res = h.check()
    assert res.verdict == Verdict.UNKNOWN and "no read/write ops" in res.reason


def test_every_invalid_key_gets_a_counterexample_that_names_its_own_ops():
    h = H()
    for key in ("a", "b", "c"):
        h.op(1, "write", 1, key=key)
        h.op(2, "read", None, key=key)
    res = h.check(linearizable_stop_on_invalid=False)
    assert res.counts["keys_invalid"] == 3
    by_key = {a.key: a for a in res.anomalies}
    assert set(by_key) == {"a", "b", "c"}
    for key, anomaly in by_key.items():
        assert {h.ops[i].key for i in anomaly.ops} == {key}


def test_alike_writes_try_the_earliest_returning_first():
    # Two writes of 1: p (long) and o (short, inside it). Only "o, write 2, read 2, p, read 1"
    # works; a symmetry rule that tried p for o would wrongly call this invalid.
    ops = [Operation(("write", 1), None, 1, 10, "p"), Operation(("write", 1), None, 2, 3, "o"),
           Operation(("write", 2), None, 4, 5, "x"), Operation(("read", None), 2, 6, 7, "r2"),
           Operation(("read", None), 1, 11, 12, "r1")]
    verdict, info = check_operations(RegisterModel(), ops, time_limit=5)
    assert verdict == Verdict.VALID
    assert info["linearization"] == ["o", "x", "r2", "p", "r1"]
