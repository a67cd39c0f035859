"""Register models, as Jepsen and Knossos use them.

Inputs are ``(f, value)`` pairs: ``("write", v)``, ``("read", None)``,
``("cas", (old, new))``. A read's output is the value it saw (``None`` when
the key was absent). A read that saw several siblings has a tuple (from the
history's list) as output: no single-valued register can return that, so
the step rejects it and the key is not linearizable.
"""
from __future__ import annotations

from typing import Any

from checkers.linearizability.model import UNKNOWN


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
