"""Which model checks a history: names, import paths, initial values; models that are broken or raise;
histories with nothing to check; counterexample shrinking that costs little."""
from __future__ import annotations

import sys
import time

import pytest

from checkers.base import CheckContext, Verdict
from checkers.linearizability import LinearizabilityChecker
from checkers.linearizability.choice import NO_INITIAL, build
from harness import plugins
from harness.errors import UserError
from harness.history import History
from harness.ops import Op

MODULE = '''
class Counter:
    """A counter: incr; read -> the count (a user's model, as docs/linearizability.md shows)."""
    name, fs, pure_fs = "counter", frozenset({"incr", "read"}), frozenset({"read"})

    def __init__(self, initial=0):
        self.initial = initial

    def init(self):
        return self.initial

    def step(self, state, input, output):
        if input[0] == "incr":
            return True, state + 1
        return output == state, state

    def describe_op(self, input, output):
        return input[0]

    def describe_state(self, state):
        return str(state)


class Raises(Counter):
    name = "raises"

    def step(self, state, input, output):
        raise KeyError("boom")


class NotAModel:
    pass
'''


def ops_of(*spec: tuple) -> History:
    """(process, type, f, value[, key]) tuples as a history."""
    return History.of([Op(index=i, time=i, process=s[0], type=s[1], f=s[2], value=s[3],
                          key=s[4] if len(s) > 4 else None) for i, s in enumerate(spec)])


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    yield "mymodels"
    sys.modules.pop("mymodels", None)


COUNTER = ops_of((0, "invoke", "incr", None), (0, "ok", "incr", None), (1, "invoke", "read", None),
                 (1, "ok", "read", 6))


def check(history: History, **options) -> object:
    return LinearizabilityChecker().check(history, CheckContext(options=options))


def test_a_user_model_loads_by_import_path_with_its_initial_value(user_module):
    assert check(COUNTER, linearizable_model=f"{user_module}:Counter").verdict == Verdict.INVALID
    res = check(COUNTER, linearizable_model=f"{user_module}:Counter", linearizable_model_initial=5)
    assert res.verdict == Verdict.VALID and res.details["model"] == "counter"


@pytest.mark.parametrize("name, initial, message", [
    ("nosuch", NO_INITIAL, r"unknown linearizable_model 'nosuch' \(known: .*cas-register"),
    ("mymodels:Nope", NO_INITIAL, r"'mymodels:Nope' cannot be loaded: AttributeError"),
    ("no_such_module:X", NO_INITIAL, r"cannot be loaded: ModuleNotFoundError"),
    ("mymodels:NotAModel", NO_INITIAL, r"is not a linearizability model: it has no name, fs, pure_fs, init, step"),
    (":X", NO_INITIAL, r"expected a model name or package.module:Class"),
    ("cas-register", 0, None),
    ("mymodels:NotAModel", 3, r"has no initial value to set"),
])
def test_model_mistakes_are_one_line(user_module, name, initial, message):
    if message is None:
        assert build(name, COUNTER, initial).init() == 0
        return
    with pytest.raises(UserError, match=message) as e:
        build(name, COUNTER, initial)
    assert "\n" not in str(e.value)


def test_a_model_that_raises_is_unknown_with_the_error_in_one_line(user_module):
    res = check(COUNTER, linearizable_model=f"{user_module}:Raises")
    assert res.verdict == Verdict.UNKNOWN
    err = res.details["model_error"]
    assert err.startswith("model 'raises' raised KeyError: 'boom' at mymodels.py:") and "\n" not in err


def test_the_kv_model_is_registered_like_the_others(monkeypatch):
    """pyproject and plugins.BUILTIN name it; an install made before it says to reinstall."""
    assert plugins.BUILTIN["models"]["kv"] == "checkers.linearizability.kv:KVModel"
    table = plugins._entry_points("models")
    if "kv" not in table:   # the editable install predates the kv model: the hint, then as if reinstalled
        with pytest.raises(UserError, match="predates it"):
            build("kv", COUNTER)
        monkeypatch.setitem(table, "kv", plugins.BUILTIN["models"]["kv"])
    assert build("kv", COUNTER, "x").init() == "x"


def test_only_failed_ops_is_valid_and_no_ops_of_the_models_kinds_is_unknown():
    failed = ops_of((0, "invoke", "write", 1), (0, "fail", "write", 1), (1, "invoke", "read", None),
                    (1, "info", "read", None))
    res = check(failed)
    assert res.verdict == Verdict.VALID and res.reason.startswith("nothing to check")
    assert res.counts["ops_failed_dropped"] == 1 and res.counts["info_reads_dropped"] == 1
    kv = ops_of((0, "invoke", "get", None, "k"), (0, "ok", "get", "", "k"))
    res = check(kv, linearizable_model="register")
    assert res.verdict == Verdict.UNKNOWN and "another model?" in res.reason


def test_shrinking_costs_little_and_the_first_evidence_needs_none():
    """A long register history with a stale read at the end: deciding is quick, so is shrinking,
    and the anomaly leads with the op that cannot follow the longest linearizable prefix."""
    spec = []
    for r in range(300):
        spec += [(0, "invoke", "write", r), (1, "invoke", "read", None), (2 + r, "invoke", "write", 10_000 + r),
                 (0, "ok", "write", r), (1, "ok", "read", r), (2 + r, "info", "write", 10_000 + r)]
    spec += [(1, "invoke", "read", None), (1, "ok", "read", 17)]
    t0 = time.monotonic()
    res = check(ops_of(*spec))
    assert res.verdict == Verdict.INVALID and time.monotonic() - t0 < 2.0
    text = res.anomalies[0].description
    assert text.startswith("key None: read -> 17 [1800..1801] cannot follow the longest linearizable prefix")
    assert "3 acknowledged op(s)" in text and res.details["keys"]["None"]["counterexample_seconds"] < 1.0
