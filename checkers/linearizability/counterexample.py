"""Shrinking a non-linearizable key to the few ``ok`` ops that prove it.

The claim a counterexample makes: *these ok ops cannot be linearized, even
if every other op (up to the last of them) may or may not have happened, at
any time after its invoke*. That implies the key is not linearizable,
because turning an ``ok`` op into an indeterminate one only adds ways to
linearize. (Deleting ops instead would not do: deleting the write a read saw
would "explain" the read wrongly.)

First the shortest non-linearizable real-time prefix is found by bisection
(ops invoked after the cut dropped, ops still open at the cut made
indeterminate: a prefix of a linearizable history is linearizable), then
chunks of the remaining ok ops are relaxed to indeterminate, halving the
chunk size (delta debugging), while the claim still holds. Relaxed writes
cost the search little because the register model drops indeterminate
writes whose value no kept op observed. Every search has a step budget and
the whole shrink a deadline; a search that runs out counts as "could not
show it", so the op stays, and ``minimal`` in the answer says whether
shrinking finished.
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
    """Positions (into the key's op list) of ok ops that cannot be linearized.

    ``scope_end`` is the real-time cut: the claim is about the ops invoked
    up to it, every op other than ``ops`` taken as may-or-may-not-have-happened.
    """

    ops: tuple[int, ...]
    scope_end: float
    minimal: bool      # True: relaxing any single op of it makes it linearizable
    checks: int        # searches run while shrinking
    seconds: float


def _relaxed(op: Operation) -> Operation:
    return Operation(op.input, UNKNOWN, op.call, math.inf, op.id)


def budget_for(decision_steps: int) -> tuple[int, int]:
    """(steps per search, steps in all) for shrinking a key whose search took ``decision_steps``.

    Proportional to what deciding cost, so a counterexample found in 4 ms is shrunk in tens
    of ms, not in the seconds a fixed budget let it take: relaxing ok ops to indeterminate
    ones makes each trial search harder than the decision, and an unbounded trial is where
    the time went."""
    return 5_000 + 4 * decision_steps, 50_000 + 20 * decision_steps


def shrink(model: Model, ops: Sequence[Operation], *, deadline: float,
           step_budget: int = 200_000, total_steps: int | None = None) -> Counterexample:
    """A few ok ops of ``ops`` (known non-linearizable) that prove it (see the module docstring).

    Stops at ``deadline`` or once the trial searches took ``total_steps`` (then ``minimal``
    is false and the ops kept so far are the answer)."""
    t0 = time.monotonic()
    checks = 0
    spent = 0
    out_of_time = undecided = False

    def nonlinearizable(subset: list[Operation]) -> bool:
        nonlocal checks, out_of_time, undecided, spent
        if out_of_time or time.monotonic() >= deadline or (total_steps is not None and spent >= total_steps):
            out_of_time = True
            return False
        checks += 1
        out = run(model, subset, max_steps=step_budget)
        spent += out.steps
        if out.verdict not in ("valid", "invalid"):
            undecided = True
        return out.verdict == INVALID

    # 1. shortest non-linearizable prefix, cut at a return time
    cuts = sorted({op.ret for op in ops if not op.indeterminate})
    lo, hi = 0, len(cuts) - 1          # cuts[hi]: the whole history minus trailing info ops
    while lo < hi:
        mid = (lo + hi) // 2
        if nonlinearizable(_prefix(ops, cuts[mid])):
            hi = mid
        else:
            lo = mid + 1
    cut = cuts[hi] if cuts else math.inf
    scope = [i for i, op in enumerate(ops) if op.call <= cut]
    base = {i: (ops[i] if ops[i].ret <= cut else _relaxed(ops[i])) for i in scope}
    keep = [i for i in scope if not base[i].indeterminate]

    # 2. relax chunks of the kept ok ops (delta debugging), halving the chunk size,
    #    until a pass of single ops relaxes nothing (then the set is 1-minimal)
    chunk = max(1, len(keep) // 2)
    while not out_of_time:
        i = 0
        removed = False
        while i < len(keep) and len(keep) > 1:
            kept = set(keep[:i]) | set(keep[i + chunk:])
            trial = [base[k] if k in kept else _relaxed(base[k]) for k in scope]
            if nonlinearizable(trial):
                keep = [k for k in keep if k in kept]
                removed = True
            else:
                i += chunk
        if chunk == 1 and not removed:
            break
        chunk = max(1, chunk // 2)
    return Counterexample(tuple(keep), cut, not (out_of_time or undecided), checks, time.monotonic() - t0)


def _prefix(ops: Sequence[Operation], cut: float) -> list[Operation]:
    """Ops called by ``cut``; those not returned by then become indeterminate."""
    return [op if op.ret <= cut else _relaxed(op) for op in ops if op.call <= cut]
