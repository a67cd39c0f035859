"""A fault kind as one record: Jepsen's nemesis package map, for the ``--nemesis`` names.

Everything the harness needs to know about a fault kind lives in its :class:`FaultKind`: the op
names that start and stop one occurrence (the schedule pairs them, fault windows and the live
display read them), which nemesis *part* performs those ops and how to build it, how the schedule
draws one occurrence from the seed (which nodes, which halves, which offset), whether it acts on a
node's process, and the ``[nemesis.<name>]`` settings it accepts. Heal order is the part's
(``heal_rank``, lowest first; see :mod:`nemeses.compose`).

Kinds are the ``dynharness.nemeses`` entry-point group (``harness.plugins``): the built-ins
(:mod:`nemeses.builtin_kinds`) are registered there exactly as a user's package registers its own,
so a new fault is one module with one record, plus one line of registration.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from harness import plugins
from harness.errors import UserError
from nemeses.base import Nemesis, NemesisOp

if TYPE_CHECKING:
    from nemeses.schedule import NemesisSpec

#: (spec, node names, the schedule's random stream) -> (start op, stop op), every choice made.
Draw = Callable[["NemesisSpec", Sequence[str], random.Random], tuple[NemesisOp, NemesisOp]]
#: (op f, what the op asked (its invoke value), what the nemesis reports it did (its completion
#: value, None before it completes)) -> one line naming what was done to whom.
Describe = Callable[[str, Any, Any], str]
#: (the requested kinds this part handles, state shared by the parts of one run) -> the part.
BuildPart = Callable[[frozenset[str], dict[str, Any]], Nemesis]


@dataclass(frozen=True)
class FaultKind:
    """One fault kind. Kinds that share op names (``loss`` and ``latency`` both use ``start-link``;
    ``crash`` and ``wipe`` are both stopped by ``start``) name the same ``part`` and are built as
    one nemesis, which receives the set of requested kinds."""

    name: str                           # as in --nemesis and [nemesis] faults
    start: str                          # op f that starts one occurrence
    stop: str                           # op f that ends it
    part: str                           # the nemesis part performing start/stop (its ``name``)
    build: BuildPart
    draw: Draw
    process: bool = False               # acts on a node's process: with overlap, shares one stream
                                        # with the other process faults so they never fight over it
    restarts: bool = False              # held for crash.restart_delay rather than the interval
    options: Mapping[str, Any] = field(default_factory=dict)  # [nemesis.<name>] settings -> default
    #: target capability -> why the fault cannot be done without it (a spec naming this fault for a
    #: target that lacks one is refused before any node starts, and again by the composed nemesis's
    #: setup: both through :func:`target_refusals`)
    target_needs: Mapping[str, str] = field(default_factory=dict)
    #: what the backend must set up before the nodes start (``ClusterConfig.extra["features"]``,
    #: e.g. ``lazy-disks``) -> why; a backend that offers none of it is refused before anything starts
    backend_needs: Mapping[str, str] = field(default_factory=dict)
    #: how outputs say what one of this kind's ops did (nodes, sides, offsets, rates); a kind
    #: without one (a plug-in's) is described by :func:`generic_description`
    describer: Describe | None = None

    def describe(self, f: str, value: Any, done: Any = None) -> str:
        """One line saying what op ``f`` did to whom, from its invoke ``value`` and completion
        ``done``. Never raises: a value of an unexpected shape falls back to the generic text,
        since a table or a page must not fail over a description."""
        if self.describer is not None:
            try:
                return self.describer(f, value, done)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError):
                pass
        return _generic_op(f, value, done)


@dataclass(frozen=True)
class _Loaded:
    """The kinds of one set of registrations (``plugins.registrations``), loaded once: not on each
    of the many ``NemesisSpec.holds``/``streams`` calls (the room check bisects with them)."""

    registrations: tuple[tuple[str, str], ...]
    kinds: Mapping[str, FaultKind]
    broken: Mapping[str, str]           # name -> why it cannot be loaded (one line)


_loaded: _Loaded | None = None


def _load() -> _Loaded:
    global _loaded
    table = plugins.registrations("nemeses")
    if _loaded is None or _loaded.registrations != table:
        kinds, broken = {}, {}
        for name, value in table:
            try:
                kind = plugins.load("nemeses", name, "nemesis plugin")
            except UserError as e:
                broken[name] = str(e)
                continue
            if isinstance(kind, FaultKind) and kind.name == name:
                kinds[name] = kind
            else:
                broken[name] = (f"nemesis plugin {name!r} ({value}) cannot be loaded: it is not a "
                                f"nemeses.fault_kind.FaultKind called {name!r} (got {kind!r:.80})")
        _loaded = _Loaded(table, kinds, broken)
    return _loaded


def registered() -> dict[str, FaultKind]:
    """Every loadable registered fault kind by name (built-ins and installed packages); loaded once
    per set of registrations (a changed entry-point table loads them again). A plug-in that cannot
    be loaded is left out (:func:`broken` says why), so it fails only the specs that name it."""
    return dict(_load().kinds)


def broken() -> dict[str, str]:
    """Registered fault kinds that cannot be loaded -> one line saying why (``nemesis plugin 'x'
    (module:attr) cannot be loaded: ...``)."""
    return dict(_load().broken)


def requested(faults: Iterable[str]) -> dict[str, FaultKind]:
    """The records of the fault kinds a spec asks for (in its order, once each); UserError (one
    line) naming every kind nobody registered, or why a requested plug-in cannot be loaded: the one
    check of a spec's fault names."""
    wanted = tuple(dict.fromkeys(faults))
    known = names()
    unknown = [f for f in wanted if f not in known]
    if unknown:
        raise UserError(f"nemesis: unknown fault(s) {', '.join(unknown)} (known: {', '.join(known)})")
    loaded = _load()
    unloadable = [loaded.broken[f] for f in wanted if f in loaded.broken]
    if unloadable:
        raise UserError(unloadable[0])
    return {f: loaded.kinds[f] for f in wanted}


def names() -> tuple[str, ...]:
    """Every registered fault kind name (without loading them; an unloadable plug-in's too)."""
    return plugins.names("nemeses")


def target_refusals(faults: Sequence[str], target: Any) -> list[str]:
    """One line per requested fault the target cannot take (its ``target_needs`` it lacks): the one
    decision, made by the spec before anything starts and by the composed nemesis at setup."""
    kinds = registered()
    return [f"the {target.name} target {why}: refusing the {name} nemesis rather than pretending"
            for name in faults if name in kinds
            for need, why in kinds[name].target_needs.items() if need not in target.capabilities]


def backend_features(faults: Sequence[str]) -> frozenset[str]:
    """What the requested faults need the backend to set up before the nodes start."""
    kinds = registered()
    return frozenset(need for name in faults if name in kinds for need in kinds[name].backend_needs)


def backend_refusals(faults: Sequence[str], backend: str, offered: frozenset[str]) -> list[str]:
    """One line per requested fault the backend cannot set up for (its ``backend_needs``)."""
    kinds = registered()
    return [f"the {backend} backend {why}: refusing the {name} nemesis rather than pretending"
            for name in faults if name in kinds
            for need, why in kinds[name].backend_needs.items() if need not in offered]


def kinds_of(op: NemesisOp, kinds: Mapping[str, FaultKind]) -> set[str]:
    """The fault kinds whose start op this is (a value naming its ``kind`` picks among several)."""
    found = {k.name for k in kinds.values() if k.start == op.f}
    named = op.value.get("kind") if isinstance(op.value, Mapping) else None
    return {named} if len(found) > 1 and named in found else found


def generic_description(value: Any, limit: int = 100) -> str:
    """What an op of a kind without a describer did: its nodes (a ``nodes`` list, or a value keyed
    by node name) and its scalar settings, else compact JSON cut at ``limit`` characters."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        nodes = value.get("nodes")
        if isinstance(nodes, (list, tuple)):
            rest = [f"{k}={v}" for k, v in value.items() if k != "nodes" and isinstance(v, (str, int, float))]
            return ", ".join([", ".join(map(str, nodes)) or "no node", *rest])
        if value and all(isinstance(v, Mapping) for v in value.values()):
            return ", ".join(map(str, value))
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def describe_op(f: str, value: Any, done: Any, kinds: Mapping[str, FaultKind]) -> str:
    """What nemesis op ``f`` did to whom, by the kind that starts or stops with it (a value naming
    its ``kind`` picks among kinds sharing op names), or generically for ops of no kind."""
    if f == "heal":
        return "every fault undone"
    found = [k for k in kinds.values() if f in (k.start, k.stop)]
    named = next((v.get("kind") for v in (value, done) if isinstance(v, Mapping) and v.get("kind")), None)
    found = [k for k in found if k.name == named] or found
    return found[0].describe(f, value, done) if found else _generic_op(f, value, done)


def _generic_op(f: str, value: Any, done: Any) -> str:
    """``f: what generic_description says``: without a describer the op's name must say the action."""
    what = generic_description(value if value is not None else done)
    return f"{f}: {what}" if what else f


def window_name(start_f: str, kinds: Mapping[str, FaultKind]) -> str:
    """How reports name a window opened by ``start_f``: its kind, or its part when kinds share it."""
    found = {k.name: k.part for k in kinds.values() if k.start == start_f}
    if len(found) == 1:
        return next(iter(found))
    if found:
        return next(iter(found.values()))
    return start_f[len("start-"):] if start_f.startswith("start-") else start_f
