"""Checkers by name: what a workload declares turns into checker objects here.

Names (``docs/contracts.md`` §3): ``lost-writes``, ``resurrections``,
``siblings``, ``session``, ``staleness``, ``perf``, ``linearizable``.
Modules are imported only when their checker is asked for, so a missing or
broken optional checker cannot stop the others from loading.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Sequence

from checkers.base import CheckContext, Checker, Result, Verdict
from harness.errors import UserError
from harness.history import History

#: name -> (module, class)
CHECKERS: dict[str, tuple[str, str]] = {
    "lost-writes": ("checkers.lost_writes", "LostWritesChecker"),
    "resurrections": ("checkers.resurrections", "ResurrectionsChecker"),
    "siblings": ("checkers.siblings", "SiblingsChecker"),
    "session": ("checkers.session", "SessionChecker"),
    "staleness": ("checkers.staleness", "StalenessChecker"),
    "perf": ("checkers.perf", "PerfChecker"),
    "linearizable": ("checkers.linearizability", "LinearizabilityChecker"),
}

#: [checkers] options these checkers read (harness.spec accepts them; see docs/checkers.md).
OPTIONS: tuple[str, ...] = (
    "resurrections_invalid",                                    # resurrections
    "sibling_warn", "sibling_fail", "sibling_bucket_ms", "siblings_bound_invalid",  # siblings
    "session_violations_invalid",                               # session
    "stale_reads_invalid",                                      # staleness
    "min_availability", "max_p999_latency_ms",                  # perf
)


@dataclass(frozen=True)
class UnavailableChecker:
    """Stands in for a checker whose module cannot be imported: answers unknown with the reason.

    A missing checker must not crash the analysis, and must not pass silently
    as valid either.
    """

    name: str
    why: str

    def check(self, history: History, ctx: CheckContext) -> Result:
        return Result(self.name, Verdict.UNKNOWN, reason=f"checker not available: {self.why}")


def names() -> tuple[str, ...]:
    """Every checker name the registry knows."""
    return tuple(CHECKERS)


def build(names: Sequence[str]) -> list[Checker]:
    """Checker objects for these names, in order; an unknown name is a UserError listing the known ones."""
    out: list[Checker] = []
    for n in names:
        if n not in CHECKERS:
            raise UserError(f"unknown checker {n!r}; known checkers: {', '.join(CHECKERS)}")
        module_name, cls_name = CHECKERS[n]
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError) as e:
            out.append(UnavailableChecker(n, f"{module_name}.{cls_name}: {e}"))
            continue
        out.append(cls())
    return out
