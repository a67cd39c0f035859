"""One explore case as data: the faults of a short run and the size of its workload.

A :class:`Case` is what hypothesis draws (:func:`cases`) and shrinks. Every choice is an
integer, a list or a pick from a list whose first entry is the simplest, so hypothesis's own
shrinking moves towards fewer fault steps (list elements removed), earlier and shorter windows
(half-second grid), fewer nodes touched (targets ``one`` before ``minority`` ...), the first
node rather than another (``pick`` 0), fewer keys and clients and a shorter run, and the spec's
own value for every ``--vary`` setting.

:func:`build_schedule` turns a case into the same ``ScheduledAction`` list a seeded schedule is,
so a case is stored as ``nemesis-schedule.json`` and replayed by ``run --replay-schedule``
exactly like any run. Two steps that need the same nemesis part (two partitions, or two faults
on processes) never overlap: a later one waits for the earlier to stop, as the seeded schedules'
streams do; a step that no longer fits before the run's end is left out of the schedule.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from harness.errors import UserError
from nemeses import fault_kind
from nemeses.base import NemesisOp
from nemeses.schedule import TARGETS, NemesisSpec, ScheduledAction, resolve_targets

#: The time grid of fault starts and holds (seconds): coarse enough to shrink in few steps.
GRID = 0.5
#: The nemesis changes nothing in the last half second: the final heal has its moment.
TAIL = 0.5
#: A step waiting for an earlier one of the same part starts this long after that one stopped.
GAP = 0.5


@dataclass(frozen=True)
class FaultStep:
    """One fault occurrence: a kind, when it starts, how long it holds, which nodes, which draw."""

    kind: str
    at: float                 # seconds after the run started (before same-part steps are spaced out)
    hold: float               # seconds until its stop op
    targets: str = "one"      # one | minority | majority | all | a node list (the kind's draw reads it)
    pick: int = 0             # seeds the kind's own random choices (which node, which halves, offset)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Case:
    """A short run to try: its fault steps and its workload's size."""

    steps: tuple[FaultStep, ...]
    duration: float           # seconds of load: as long as the steps need, at least the drawn minimum
    keys: int
    concurrency: int
    rate: float
    vary: Mapping[str, Any] = field(default_factory=dict)   # dotted spec field -> the value picked

    def overrides(self) -> dict[str, Any]:
        """The dotted spec fields this case sets over the base spec."""
        return {"duration": self.duration, "workload.keys": self.keys, "concurrency": self.concurrency,
                "rate": self.rate, **self.vary}

    def to_json(self) -> dict[str, Any]:
        return {"steps": [s.to_json() for s in self.steps], "duration": self.duration, "keys": self.keys,
                "concurrency": self.concurrency, "rate": self.rate, "vary": dict(self.vary)}



@dataclass(frozen=True)
class Space:
    """What a search may vary, from the base spec (whose values are the upper bounds)."""

    faults: tuple[str, ...]
    nodes: tuple[str, ...]
    nemesis: NemesisSpec
    max_run: float
    min_run: float
    keys: int
    concurrency: int
    rate: float
    max_steps: int = 4
    max_hold: float = 8.0
    vary: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    #: the nodes holding each key's replicas (the target's preference lists): with these a step
    #: may hit every replica of one key at once (targets ``replicas``; its pick chooses the key)
    replica_sets: tuple[tuple[str, ...], ...] = ()

    @property
    def target_choices(self) -> tuple[str, ...]:
        """Node choices a step may use, fewest nodes first: the spec's node list when it names one."""
        if self.nemesis.targets not in TARGETS:
            return (self.nemesis.targets,)
        usable = []
        for t in TARGETS:
            if t == "replicas":
                if self.replica_sets:
                    usable.append(t)
                continue
            try:
                resolve_targets(t, self.nodes, random.Random(0))
            except UserError:
                continue
            usable.append(t)
        return tuple(usable)


def space_of(nspec: NemesisSpec, nodes: Sequence[str], *, max_run: float, keys: int, concurrency: int,
             rate: float, vary: Mapping[str, tuple[Any, ...]] | None = None, max_steps: int = 4,
             replica_sets: Sequence[Sequence[str]] = ()) -> Space:
    """The search space of a base spec; UserError when there is nothing to vary."""
    if not nspec.faults:
        raise UserError("explore: the spec has no faults to vary (give --nemesis KIND[,KIND] or [nemesis] faults)")
    if not max_run >= 2:
        raise UserError(f"explore: --max-run must be at least 2 s, got {max_run:g}")
    return Space(faults=tuple(nspec.faults), nodes=tuple(nodes), nemesis=nspec, max_run=float(max_run),
                 min_run=min(5.0, float(max_run)), keys=keys, concurrency=concurrency, rate=float(rate),
                 max_steps=max_steps, max_hold=min(8.0, max(GRID, max_run / 2)), vary=dict(vary or {}),
                 replica_sets=tuple(dict.fromkeys(tuple(r) for r in replica_sets)))


def cases(space: Space) -> Any:
    """The hypothesis strategy of the cases in ``space`` (imported lazily: only explore needs it)."""
    from hypothesis import strategies as st

    def grid(lo: float, hi: float) -> Any:
        return st.integers(int(round(lo / GRID)), max(int(round(lo / GRID)), int(hi / GRID))).map(lambda i: i * GRID)

    step = st.builds(FaultStep, kind=st.sampled_from(space.faults), at=grid(GRID, space.max_run - GRID - TAIL),
                     hold=grid(GRID, space.max_hold), targets=st.sampled_from(space.target_choices),
                     pick=st.integers(0, 31))
    rates = tuple(dict.fromkeys([space.rate, max(1.0, space.rate / 2), space.rate * 2]))
    vary = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in space.vary.items()})

    def make(steps: list[FaultStep], least: int, keys: int, concurrency: int, rate: float,
             picked: dict[str, Any]) -> Case:
        # the run lasts as long as its faults need (up to max_run), and at least ``least``
        ends = max(s.at + s.hold for s in steps) + TAIL
        duration = min(space.max_run, max(float(least), math.ceil(ends / GRID) * GRID))
        return Case(steps=tuple(steps), duration=duration, keys=keys, concurrency=concurrency, rate=rate,
                    vary=picked)

    return st.builds(make, st.lists(step, min_size=1, max_size=space.max_steps),
                     st.integers(int(space.min_run), int(space.max_run)), st.integers(1, space.keys),
                     st.integers(1, space.concurrency), st.sampled_from(rates), vary)


def grown(case: Case, space: Space) -> Case:
    """A marginal failing case made one step surer: each fault held twice as long (on the grid,
    at most ``max_hold``), twice the keys and clients (at most the spec's), the run as long as that
    needs (at most ``max_run``); the faults' kinds, starts and nodes stay. The first case a new
    search round tries after a reproducer failed its replays (as a hypothesis explicit example)."""
    steps = tuple(dataclasses.replace(s, hold=min(space.max_hold, max(GRID, 2 * s.hold))) for s in case.steps)
    ends = max(s.at + s.hold for s in steps) + TAIL
    return dataclasses.replace(case, steps=steps, keys=min(space.keys, 2 * case.keys),
                               concurrency=min(space.concurrency, 2 * case.concurrency),
                               duration=min(space.max_run, max(case.duration, math.ceil(ends / GRID) * GRID)))


def build_schedule(case: Case, space: Space) -> list[ScheduledAction]:
    """The nemesis actions of ``case``, in time order, ending with a ``heal``."""
    kinds = fault_kind.registered()
    free_at: dict[str, float] = {}       # nemesis part (or "process") -> when its last step stopped
    timed: list[tuple[float, int, NemesisOp]] = []
    for i, step in enumerate(sorted(case.steps, key=lambda s: s.at)):
        kind = kinds[step.kind]
        part = "process" if kind.process else kind.part
        at = max(step.at, free_at[part] + GAP) if part in free_at else step.at
        if at + step.hold > case.duration - TAIL:
            continue
        targets = step.targets
        if targets == "replicas":   # every replica of one key: the pick says which key
            targets = ",".join(space.replica_sets[step.pick % len(space.replica_sets)])
        nspec = dataclasses.replace(space.nemesis, targets=targets)
        start, stop = kind.draw(nspec, list(space.nodes), random.Random(f"dynharness-explore/{step.pick}"))
        timed += [(at, 2 * i, start), (at + step.hold, 2 * i + 1, stop)]
        free_at[part] = at + step.hold
    timed.sort(key=lambda x: (x[0], x[1]))
    actions = [ScheduledAction(at=round(at, 6), op=op) for at, _, op in timed]
    actions.append(ScheduledAction(at=actions[-1].at if actions else 0.0, op=NemesisOp("heal", None)))
    return actions


def run_key(case: Case, actions: Sequence[ScheduledAction]) -> str:
    """What makes two cases the same run: their schedule and workload, not their steps (a step
    that does not fit changes nothing); the search runs each once and remembers its outcome."""
    return json.dumps({"schedule": [a.to_json() for a in actions], "duration": case.duration, "keys": case.keys,
                       "concurrency": case.concurrency, "rate": case.rate, "vary": dict(case.vary)},
                      sort_keys=True, default=str)


def fault_actions(actions: Sequence[ScheduledAction]) -> int:
    """How many faults a schedule starts (each a start op, stopped later)."""
    starts = {k.start for k in fault_kind.registered().values()}
    return sum(1 for a in actions if a.op.f in starts)


def nodes_touched(actions: Sequence[ScheduledAction]) -> int:
    """How many distinct nodes the schedule's start ops name (a partition: the nodes it cuts off)."""
    touched: set[str] = set()
    for a in actions:
        value = a.op.value if isinstance(a.op.value, Mapping) else {}
        touched.update(n for n in value.get("nodes") or () if isinstance(n, str))
        grudge = value.get("grudge")
        if isinstance(grudge, Mapping):
            touched.update(str(n) for n, cut in grudge.items() if cut)
    return len(touched)


def size(case: Case, actions: Sequence[ScheduledAction]) -> tuple[float, ...]:
    """Smaller is simpler: the order a reproducer is chosen by when several failing cases exist."""
    holds = sum(s.hold for s in case.steps)
    return (fault_actions(actions), nodes_touched(actions), holds, case.keys, case.concurrency, case.duration)


def describe(actions: Sequence[ScheduledAction]) -> list[str]:
    """One line per fault of a schedule: when it starts, how long it holds, what it does to whom."""
    kinds = fault_kind.registered()
    lines = []
    for i, a in enumerate(actions):
        started = [k for k in kinds.values() if k.start == a.op.f]
        if not started:
            continue
        stops = {k.stop for k in started}
        end = next((b.at for b in actions[i + 1:] if b.op.f in stops), None)
        held = f" for {end - a.at:g} s" if end is not None else ""
        lines.append(f"at {a.at:g} s{held}: {fault_kind.describe_op(a.op.f, a.op.value, None, kinds)}")
    return lines
