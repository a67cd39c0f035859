"""The model plug point: the sequential object a history is checked against.

A model is Porcupine's ``Model`` in Python: ``init()`` gives the initial
state, ``step(state, input, output)`` says whether the op with this input
could have returned this output in that state, and the state after it.
States must be hashable (the search caches visited ``(linearized ops,
state)`` pairs) and compared with ``==``; keep them small and immutable
(``None``, ints, tuples, frozensets).

An op whose outcome is unknown (``info``) is stepped with ``output`` equal to
:data:`UNKNOWN`: the model should answer as if the op took effect
successfully (the search separately considers the op never happening).

A model may also define ``resolve(ops) -> {position: Operation or None}``:
what the rest of the history settles. ``None`` drops an indeterminate op
that no linearization needs (e.g. a timed-out write whose value nobody
read); an Operation replaces an op with one that is equivalent given the
history (e.g. a timed-out write whose unique value a read returned must have
happened before that read returned). Both are sound and spare the search
exponential work. And ``is_pure(input)``: true for ops that never change
the state (reads), which the search tries first and commits to. And
``precedes(ops) -> {(i, j), ...}``: pairs of ok ops (positions) such that
``i`` comes before ``j`` in *every* linearization, read off the history (the
kv model reads the order of appends off the gets' strings); the search never
tries ``j`` before ``i``. A wrong pair makes a valid history look invalid, so
a model should claim only what its outputs prove (``tests/test_kv_model.py``
checks the kv model's claims against every legal order).

A whole new model is about twenty lines; see ``docs/linearizability.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Hashable, Protocol, runtime_checkable


class _Unknown:
    """The output of an op whose completion was ``info`` or never came."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __reduce__(self) -> str:
        return "UNKNOWN"


#: Output of an indeterminate op (a singleton; compare with ``is``).
UNKNOWN = _Unknown()


@runtime_checkable
class Model(Protocol):
    """A sequential specification for the linearizability search.

    ``fs`` lists the op names (``Op.f``) the model understands; ``pure_fs``
    the ones that never change the state (reads): an indeterminate op of
    such a kind carries no information and is dropped before the search.
    """

    name: str
    fs: frozenset[str]
    pure_fs: frozenset[str]

    def init(self) -> Hashable:
        """The state before any op."""
        ...

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        """(could this op return ``output`` in ``state``?, state after it)."""
        ...

    def describe_op(self, input: Any, output: Any) -> str:
        """One short line for reports, e.g. ``read -> 3``."""
        ...

    def describe_state(self, state: Any) -> str:
        """One short line for reports, e.g. ``3`` or ``absent``."""
        ...



@dataclass(frozen=True, slots=True)
class Operation:
    """One op of one key as the search sees it (Porcupine's ``Operation``).

    ``call``/``ret`` are positions on one real-time axis (the history uses
    event indexes); ``ret`` is ``math.inf`` for an op that may have taken
    effect at any time after its call, or never (``info`` or no completion).
    ``id`` is whatever the caller wants back in counterexamples (the
    checker uses the history index of the op's invoke).
    """

    input: Any
    output: Any
    call: float
    ret: float = math.inf
    id: Any = None

    @property
    def indeterminate(self) -> bool:
        """True when the op may or may not have happened (``info``/open)."""
        return self.ret == math.inf


def describe(model: Model, op: Operation) -> str:
    """``describe_op`` plus a marker for indeterminate ops, for reports."""
    text = model.describe_op(op.input, op.output)
    return f"{text} (info: may or may not have happened)" if op.indeterminate else text
