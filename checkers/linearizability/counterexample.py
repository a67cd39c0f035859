"""Shrinking a non-linearizable key's ops to a small set that still cannot be linearized.

Two facts keep every step sound (the result is non-linearizable *because of
the ops kept*, never because an op was taken away):

* Dropping an indeterminate op keeps a history non-linearizable (it may
  never have happened anyway), so a counterexample holds only ``ok`` ops.
* Turning an ``ok`` op into an indeterminate one only adds ways to
  linearize; if the history is *still* non-linearizable, the op is not
  needed and can go. (Simply deleting it would not do: deleting the write a
  read saw would "explain" the read wrongly.)

First the shortest non-linearizable real-time prefix is found by bisection
(ops invoked after the cut dropped, ops still open at the cut made
indeterminate: a prefix of a linearizable history is linearizable), then
chunks of the remaining ok ops are relaxed, halving the chunk size
(delta debugging). Every search has a step budget and the whole shrink a
deadline; a search that runs out counts as "could not show it", so the op
stays, and ``minimal`` in the answer says whether shrinking finished.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

from checkers.linearizability.model import UNKNOWN, Model, Operation
from checkers.linearizability.search import INVALID, run


@dataclass(frozen=True)
class Counterexample:
    """Positions (into the key's op list) of ok ops that together cannot be linearized."""

    ops: tuple[int, ...]
    minimal: bool      # True: relaxing any single op of it makes it linearizable
    checks: int        # searches run while shrinking
    seconds: float


def _relaxed(op: Operation) -> Operation:
    return Operation(op.input, UNKNOWN, op.call, math.inf, op.id)


def shrink(model: Model, ops: Sequence[Operation], *, deadline: float,
           step_budget: int = 200_000) -> Counterexample:
    """A small subset of ``ops`` (known non-linearizable) that is still non-linearizable."""
    t0 = time.monotonic()
    checks = 0
    out_of_time = undecided = False

    def nonlinearizable(subset: list[Operation]) -> bool:
        nonlocal checks, out_of_time, undecided
        if out_of_time or time.monotonic() >= deadline:
            out_of_time = True
            return False
        checks += 1
        out = run(model, subset, max_steps=step_budget)
        if out.verdict not in ("valid", "invalid"):
            undecided = True
        return out.verdict == INVALID

    # 1. shortest non-linearizable prefix, cut at a return time
    cuts = sorted({op.ret for op in ops if not op.indeterminate})
    lo, hi = 0, len(cuts) - 1          # cuts[hi] is the whole history minus trailing info ops
    while lo < hi:
        mid = (lo + hi) // 2
        if nonlinearizable(_prefix(ops, cuts[mid])):
            hi = mid
        else:
            lo = mid + 1
    cut = cuts[hi] if cuts else math.inf
    keep = [i for i, op in enumerate(ops) if not op.indeterminate and op.ret <= cut]

    # 2. relax chunks of ok ops (delta debugging), halving the chunk size
    #    until a pass of single ops removes nothing (then the set is 1-minimal)
    chunk = max(1, len(keep) // 2)
    while not out_of_time:
        i = 0
        removed = False
        while i < len(keep) and len(keep) > 1:
            drop = set(keep[i:i + chunk])
            trial = [_relaxed(ops[k]) if k in drop else ops[k] for k in keep]
            if nonlinearizable(trial):
                keep = [k for k in keep if k not in drop]
                removed = True
            else:
                i += chunk
        if chunk == 1 and not removed:
            break
        chunk = max(1, chunk // 2)
    return Counterexample(tuple(keep), not (out_of_time or undecided), checks, time.monotonic() - t0)


def _prefix(ops: Sequence[Operation], cut: float) -> list[Operation]:
    """Ops called by ``cut``; those not returned by then become indeterminate."""
    return [op if op.ret <= cut else _relaxed(op) for op in ops if op.call <= cut]
