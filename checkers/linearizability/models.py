"""Register models, as Jepsen and Knossos use them.

Inputs are ``(f, value)`` pairs: ``("write", v)``, ``("read", None)``,
``("cas", (old, new))``. A read's output is the value it saw (``None`` when
the key was absent). A read that saw several siblings has a tuple (from the
history's list) as output: no single-valued register can return that, so
the step rejects it and the key is not linearizable.
"""
from __future__ import annotations

from typing import Any, Sequence

from checkers.linearizability.model import UNKNOWN, Operation


class RegisterModel:
    """A read/write register that starts absent (``None``)."""

    name = "register"
    fs = frozenset({"read", "write"})
    pure_fs = frozenset({"read"})

    def init(self) -> Any:
        """Absent before the first write, as a fresh key in the store."""
        return None

    def step(self, state: Any, input: tuple[str, Any], output: Any) -> tuple[bool, Any]:
        """A write always succeeds; a read must return the current value."""
        f, value = input
        if f == "write":
            return True, value
        if f == "read":
            if output is UNKNOWN:
                return True, state
            return (type(output) is not tuple and output == state), state
        return False, state

    def irrelevant(self, ops: Sequence[Operation]) -> set[int]:
        """Indeterminate writes (and cas) whose new value no op observes: never needed.

        If such an op is in a linearization, removing it leaves it legal:
        nothing between it and the next write reads its value or does a cas
        from it. Observed values: ok read outputs and the ``old`` of every
        cas kept (iterated, since keeping an info cas makes its ``old`` observed).
        """
        observed = {op.output for op in ops if op.input[0] == "read" and op.output is not UNKNOWN}
        candidates = {i for i, op in enumerate(ops) if op.indeterminate and op.input[0] in ("write", "cas")}
        keep_cas = [op for i, op in enumerate(ops) if op.input[0] == "cas" and i not in candidates]
        while True:
            for op in keep_cas:
                if type(op.input[1]) is tuple and len(op.input[1]) == 2:
                    observed.add(op.input[1][0])
            newly = [i for i in candidates if _written(ops[i]) in observed]
            if not newly:
                return candidates
            candidates.difference_update(newly)
            keep_cas = [ops[i] for i in newly if ops[i].input[0] == "cas"]

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
        if input[0] == "cas":
            value = input[1]
            if type(value) is not tuple or len(value) != 2:
                return False, state
            return state == value[0], value[1]
        return RegisterModel.step(self, state, input, output)


def _written(op: Operation) -> Any:
    f, value = op.input
    if f == "cas":
        return value[1] if type(value) is tuple and len(value) == 2 else _NOTHING
    return value


_NOTHING = object()


def _show(v: Any) -> str:
    if v is UNKNOWN:
        return "?"
    if v is None:
        return "absent"
    if isinstance(v, tuple):
        return f"siblings {list(v)}"
    return repr(v)


#: Models by the name used in the ``linearizable_model`` option.
MODELS = {"register": RegisterModel, "cas-register": CASRegisterModel}
