"""Checkers by name: what a workload declares turns into checker objects here.

Checkers are the ``dynharness.checkers`` entry-point group (``harness.plugins``): the built-ins
(``lost-writes``, ``resurrections``, ``siblings``, ``session``, ``staleness``, ``perf``,
``linearizable``; ``docs/contracts.md`` §3) and any installed package's. An entry point names a
class (or factory) called with no arguments. A checker class may declare ``options``, the
``[checkers]`` spec options it reads, so a spec naming them is accepted (``harness.spec``), and
``needs``, the target capabilities without which it has nothing to judge (``convergence`` needs
``replica-snapshot``): a run of a target without them does not run it and says why (``harness.runs``).

Modules are imported only when their checker is asked for, and a registered checker that cannot
be loaded answers ``unknown`` with the reason: it must not crash the analysis, and must not pass
silently as valid either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from checkers.base import CheckContext, Checker, Result, Verdict
from harness import plugins
from harness.errors import UserError
from harness.history import History


@dataclass(frozen=True)
class UnavailableChecker:
    """Stands in for a registered checker that cannot be loaded: answers unknown with the reason."""

    name: str
    why: str

    def check(self, history: History, ctx: CheckContext) -> Result:
        return Result(self.name, Verdict.UNKNOWN, reason=f"checker not available: {self.why}")


def names() -> tuple[str, ...]:
    """Every checker name registered."""
    return plugins.names("checkers")


def needs(name: str) -> tuple[str, ...]:
    """The target capabilities a checker needs to judge anything (its class's ``needs``; () for most,
    and for one that cannot be loaded: building it says why)."""
    try:
        return tuple(getattr(plugins.load("checkers", name, "checker"), "needs", ()))
    except UserError:
        return ()


def build(wanted: Sequence[str]) -> list[Checker]:
    """Checker objects for these names, in order; an unknown name is a UserError listing the known ones."""
    known = names()
    out: list[Checker] = []
    for n in wanted:
        if n not in known:
            raise UserError(f"unknown checker {n!r} (known: {', '.join(known)})")
        try:
            out.append(plugins.load("checkers", n, "checker")())
        except UserError as e:
            out.append(UnavailableChecker(n, str(e)))
    return out
