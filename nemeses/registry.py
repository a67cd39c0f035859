"""Build the nemesis a spec asks for: one :class:`~nemeses.compose.ComposedNemesis`.

Fault kinds come from the ``dynharness.nemeses`` entry-point group
(:mod:`nemeses.fault_kind`). Kinds that share op names name the same part and are built as one
nemesis given all of them; every part of one run receives the same ``shared`` dict (the partition
and link parts keep their one transport-fault book there).
"""
from __future__ import annotations

from typing import Any, Iterable

from nemeses import fault_kind
from nemeses.compose import ComposedNemesis
from nemeses.schedule import NemesisSpec, ScheduledAction


def build(spec: NemesisSpec) -> ComposedNemesis:
    """One nemesis handling every op the spec's schedule can contain (plus ``heal``)."""
    return build_for(spec.faults)


def build_for(faults: Iterable[str]) -> ComposedNemesis:
    """The composed nemesis for these fault kinds (UserError for a kind nobody registered)."""
    kinds = fault_kind.requested(sorted(set(faults)))
    by_part: dict[str, list[fault_kind.FaultKind]] = {}
    for kind in kinds.values():
        by_part.setdefault(kind.part, []).append(kind)
    shared: dict[str, Any] = {}
    return ComposedNemesis([group[0].build(frozenset(k.name for k in group), shared) for group in by_part.values()],
                           faults=kinds)


def faults_of(actions: Iterable[ScheduledAction]) -> set[str]:
    """Fault kinds a (replayed) schedule starts, so the nemesis built for it handles every op."""
    kinds = fault_kind.registered()
    out: set[str] = set()
    for a in actions:
        out |= fault_kind.kinds_of(a.op, kinds)
    return out
