"""Does a run have room for the faults it asks for? Refuse it before anything starts if not.

A fault starts at its stream's first time (``start_at``, default ``interval``), holds
(``interval``; a killed or wiped node ``crash.restart_delay``) and must stop before the
run ends (:func:`nemeses.schedule.build_schedule`). A 20 s run with the default 10 s
interval therefore has no fault at all: its schedule is only the final heal, while the
banner said ``faults=partition`` and the verdict looked like one under partitions. So a
spec whose schedule leaves out a requested kind is a one-line error naming the shortest
duration (and the longest interval) that fits every kind, unless the spec says
``nemesis.allow_unscheduled = true``; then the run goes ahead and says which faults will
not happen.

Since a stream draws each of its kinds once before any repeats, every kind fits exactly
when the sum of the stream's holds and the gaps between them ends before the run does,
whatever the seed: :func:`needed_duration` is that sum.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from harness.errors import UserError
from nemeses import fault_kind
from nemeses.schedule import NemesisSpec, build_schedule

#: The shortest interval the spec accepts (nemeses.schedule validates interval >= 0.1 s).
_MIN_INTERVAL = 0.1


def needed_duration(spec: NemesisSpec) -> float:
    """The run must be longer than this for every requested kind to start (and stop) once."""
    holds = spec.holds()
    return max((start + sum(holds[f] for f in kinds) + (len(kinds) - 1) * spec.interval
                for start, kinds in spec.streams()), default=0.0)


def longest_interval(spec: NemesisSpec, duration: float) -> float | None:
    """The longest interval (in 0.1 s steps) with room for every kind in ``duration``, or None."""
    def fits(interval: float) -> bool:
        return needed_duration(dataclasses.replace(spec, interval=interval)) < duration

    lo, hi = _MIN_INTERVAL, spec.interval
    if not fits(lo):
        return None
    for _ in range(60):   # the needed duration grows with the interval: bisect
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    best = math.floor(lo * 10) / 10
    return best if best >= _MIN_INTERVAL and fits(best) else None


def unscheduled(spec: NemesisSpec, nodes: Sequence[str], seed: int, duration: float) -> tuple[str, ...]:
    """The requested fault kinds the run's schedule never starts."""
    kinds = fault_kind.registered()
    started: set[str] = set()
    if spec.targets == "replicas":    # drawn from a stream of their own: "all" starts the same faults
        spec = dataclasses.replace(spec, targets="all")
    for action in build_schedule(spec, nodes, seed, duration):
        started |= fault_kind.kinds_of(action.op, kinds)
    return tuple(f for f in spec.faults if f not in started)


def check_room(spec: NemesisSpec, nodes: Sequence[str], seed: int, duration: float) -> tuple[str, ...]:
    """The requested kinds that will not happen; UserError (one line) if any and not allowed."""
    missing = unscheduled(spec, nodes, seed, duration)
    if not missing or spec.allow_unscheduled:
        return missing
    need = needed_duration(spec)
    interval = longest_interval(spec, duration)
    fix = f"a duration above {need:g} s (e.g. {math.floor(need) + 1})"
    if interval is not None and interval < spec.interval:
        fix += f" or nemesis.interval <= {interval:g}"
    holds = "/".join(f"{h:g}" for h in sorted(set(spec.holds().values())))
    raise UserError(
        f"nemesis: a {duration:g} s run has no room for {', '.join(missing)} (the first fault starts at "
        f"{spec.first_at:g} s, each holds {holds} s, {spec.interval:g} s apart, and all stop before the run "
        f"ends): use {fix}, or run anyway with nemesis.allow_unscheduled = true (--allow-unscheduled)")
