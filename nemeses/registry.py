"""Build the nemesis a spec asks for: one :class:`~nemeses.compose.ComposedNemesis`.

The partition and link nemeses share one
:class:`~nemeses.transport_faults.TransportFaultBook`, so their in-process transport
faults merge per node instead of overwriting each other.
"""
from __future__ import annotations

from typing import Iterable

from nemeses.transport_faults import TransportFaultBook
from nemeses.base import Nemesis
from nemeses.clock import ClockNemesis
from nemeses.compose import ComposedNemesis
from nemeses.crash import CrashNemesis
from nemeses.link import LinkNemesis
from nemeses.partition import PartitionNemesis
from nemeses.pause import PauseNemesis
from nemeses.schedule import NemesisSpec, ScheduledAction

#: op f -> fault kind that handles it (for replayed schedules: which parts they need).
F_TO_FAULT = {"start-partition": "partition", "stop-partition": "partition", "start-clock": "clock",
              "stop-clock": "clock", "kill": "crash", "start": "crash", "wipe": "wipe", "pause": "pause",
              "resume": "pause"}


def build(spec: NemesisSpec) -> ComposedNemesis:
    """One nemesis handling every op the spec's schedule can contain (plus ``heal``)."""
    return build_for(spec.faults)


def build_for(faults: Iterable[str]) -> ComposedNemesis:
    """The composed nemesis for these fault kinds (partition, clock, crash, wipe, pause, loss, latency)."""
    faults = set(faults)
    book = TransportFaultBook()
    parts: list[Nemesis] = []
    if "partition" in faults:
        parts.append(PartitionNemesis(book))
    if "clock" in faults:
        parts.append(ClockNemesis())
    if faults & {"crash", "wipe"}:
        parts.append(CrashNemesis(wipe="wipe" in faults))
    if "pause" in faults:
        parts.append(PauseNemesis())
    kinds = [k for k in ("loss", "latency") if k in faults]
    if kinds:
        parts.append(LinkNemesis(book, kinds=kinds))
    return ComposedNemesis(parts)


def faults_of(actions: Iterable[ScheduledAction]) -> set[str]:
    """Fault kinds a (replayed) schedule uses, so the nemesis built for it handles every op."""
    out: set[str] = set()
    for a in actions:
        if a.op.f in F_TO_FAULT:
            out.add(F_TO_FAULT[a.op.f])
        elif a.op.f in ("start-link", "stop-link") and isinstance(a.op.value, dict):
            out.add(str(a.op.value.get("kind")))
    return out & {"partition", "clock", "crash", "wipe", "pause", "loss", "latency"}
