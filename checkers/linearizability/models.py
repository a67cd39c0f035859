"""Register models, as Jepsen and Knossos use them.

Inputs are ``(f, value)`` pairs: ``("write", v)``, ``("read", None)``,
``("cas", (old, new))``. A read's output is the value it saw (``None`` when
the key was absent). A read that saw several siblings has a tuple (from the
history's list) as output: no single-valued register can return that, so
the step rejects it and the key is not linearizable.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from checkers.linearizability.model import UNKNOWN, Operation


class RegisterModel:
    """A read/write register that starts at ``initial``: absent (``None``), as a fresh key in a store."""

    name = "register"
    fs = frozenset({"read", "write"})
    pure_fs = frozenset({"read"})

    def __init__(self, initial: Any = None):
        self.initial = initial

    def init(self) -> Any:
        """The value before the first write (``--set model.initial=0`` for a register that starts at 0)."""
        return self.initial

    def step(self, state: Any, input: tuple[str, Any], output: Any) -> tuple[bool, Any]:
        """A write always succeeds; a read must return the current value."""
        f = input[0]
        if f == "read":
            if output is UNKNOWN:
                return True, state
            return (output == state and type(output) is not tuple), state
        if f == "write":
            return True, input[1]
        return False, state

    def is_pure(self, input: tuple[str, Any]) -> bool:
        """Reads never change the state (lets the search commit to a read that fits)."""
        return input[0] == "read"

    def resolve(self, ops: Sequence[Operation]) -> dict[int, Operation | None]:
        """What the history settles about indeterminate writes (and cas); see ``model.py``.

        * Unobserved: an indeterminate write whose value no op observes (no ok
          read returned it, no kept cas expects it) is never needed: in any
          linearization nothing between it and the next write depends on it,
          so it can be taken out -> ``None`` (dropped).
        * Observed, and the only writer of its value: it took effect, and
          before the first ok read (or ok cas) that observed the value
          returned -> a determinate op returning then. Values written by
          several ops are left alone (who wrote what is not settled).
        * An ok write whose value nothing observes becomes a write of
          :data:`UNREAD` (no read or cas can tell the difference).
        """
        writers: dict[Any, int] = {}
        first_seen: dict[Any, float] = {}
        for op in ops:
            f = op.input[0]
            if f in ("write", "cas"):
                v = _written(op)
                writers[v] = writers.get(v, 0) + 1
            if not op.indeterminate:
                seen = op.output if f == "read" else _expected(op) if f == "cas" else _NOTHING
                # (seeing the initial value proves no write happened)
                if seen is not _NOTHING and seen != self.initial and type(seen) is not tuple:
                    first_seen[seen] = min(first_seen.get(seen, math.inf), op.ret)
        out: dict[int, Operation | None] = {}
        observed = {op.output for op in ops if op.input[0] == "read" and not op.indeterminate}
        observed.update(first_seen)
        candidates = {i for i, op in enumerate(ops) if op.indeterminate and op.input[0] in ("write", "cas")}
        for i in list(candidates):
            op = ops[i]
            v = _written(op)
            if v in first_seen and writers.get(v) == 1 and first_seen[v] >= op.call:
                out[i] = Operation(op.input, None, op.call, first_seen[v], op.id)
                candidates.discard(i)
        # the rest: drop those whose value nothing observes (keeping an info cas makes its old observed)
        keep_cas = [op for i, op in enumerate(ops) if op.input[0] == "cas" and i not in candidates]
        while True:
            for op in keep_cas:
                observed.add(_expected(op))
            newly = [i for i in candidates if _written(ops[i]) in observed]
            if not newly:
                break
            candidates.difference_update(newly)
            keep_cas = [ops[i] for i in newly if ops[i].input[0] == "cas"]
        out.update((i, None) for i in candidates)
        # ok writes of values nothing observes act alike: give them one anonymous value, so the
        # search sees them as interchangeable (it then tries only the earliest-returning one)
        observed.update(_expected(op) for op in ops if op.input[0] == "cas")
        for i, op in enumerate(ops):
            if op.input[0] == "write" and not op.indeterminate and op.input[1] not in observed:
                out[i] = Operation(("write", UNREAD), None, op.call, op.ret, op.id)
        return out

    def describe_op(self, input: tuple[str, Any], output: Any) -> str:
        """``write 3`` / ``read -> 3`` / ``read -> absent`` / ``read -> siblings [1, 2]``."""
        f, value = input
        if f == "read":
            return f"read -> {_show(output)}"
        if f == "cas":
            old, new = value if isinstance(value, tuple) and len(value) == 2 else (value, "?")
            return f"cas {_show(old)} -> {_show(new)}"
        return f"{f} {_show(value)}"

    def describe_state(self, state: Any) -> str:
        """The register's value, ``absent`` before any write."""
        return _show(state)


class CASRegisterModel(RegisterModel):
    """A register with compare-and-set: ``cas (old, new)`` succeeds only when the value is ``old``.

    A ``cas`` that completed ``fail`` did not happen (dropped before the
    search), so every remaining ``cas`` is a successful one (or, if
    ``info``, one that may have succeeded).
    """

    name = "cas-register"
    fs = frozenset({"read", "write", "cas"})

    def step(self, state: Any, input: tuple[str, Any], output: Any) -> tuple[bool, Any]:
        """Register steps, plus ``cas``: legal only when the state is ``old``."""
        if input[0] != "cas":
            return RegisterModel.step(self, state, input, output)
        value = input[1]
        if type(value) is not tuple or len(value) != 2:
            return False, state
        return state == value[0], value[1]


def _written(op: Operation) -> Any:
    """The value a write or cas leaves in the register."""
    f, value = op.input
    if f == "cas":
        return value[1] if type(value) is tuple and len(value) == 2 else _NOTHING
    return value


def _expected(op: Operation) -> Any:
    """The value a cas needs to find."""
    value = op.input[1]
    return value[0] if type(value) is tuple and len(value) == 2 else _NOTHING


_NOTHING = object()


class _Unread:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNREAD"


#: The value of an ok write whose value no op observed (all such writes are alike).
UNREAD = _Unread()


def _show(v: Any) -> str:
    if v is UNREAD:
        return "a value no read returned"
    if v is UNKNOWN:
        return "?"
    if v is None:
        return "absent"
    if isinstance(v, tuple):
        return f"siblings {list(v)}"
    return repr(v)
