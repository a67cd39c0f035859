"""A brute-force linearizability oracle, for tests only.

It shares nothing with ``search.py`` but the model: for every subset of the
indeterminate ops (each may or may not have happened) it tries every
permutation of the chosen ops, keeps those that respect real-time order
(``a`` before ``b`` whenever ``a`` returned strictly before ``b`` was
called) and runs the model over them. Exponential: keep histories to about
seven ops.
"""
from __future__ import annotations

import itertools
from typing import Sequence

from checkers.linearizability.model import Model, Operation


def is_linearizable(model: Model, ops: Sequence[Operation]) -> bool:
    """True if some order of the ok ops plus some of the info ops is legal and respects real time."""
    if len(ops) > 9:
        raise ValueError(f"brute force is for small histories; got {len(ops)} ops")
    must = [op for op in ops if not op.indeterminate]
    maybe = [op for op in ops if op.indeterminate]
    for k in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, k):
            for order in itertools.permutations(must + list(chosen)):
                if is_legal_order(model, order):
                    return True
    return False


def is_legal_order(model: Model, order: Sequence[Operation]) -> bool:
    """True if ``order`` respects real time and the model accepts every op of it in turn."""
    return _respects_real_time(order) and _legal(model, order)


def _respects_real_time(order: Sequence[Operation]) -> bool:
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if b.ret < a.call:  # b finished before a started, yet comes after it
                return False
    return True


def _legal(model: Model, order: Sequence[Operation]) -> bool:
    state = model.init()
    for op in order:
        ok, state = model.step(state, op.input, op.output)
        if not ok:
            return False
    return True
