"""Fault windows: when each fault was active, from the nemesis ops of a history.

The perf checker splits availability and latency by window, and reports draw
the windows as bands, so both read them from here. A window opens when the
op that starts a fault took effect and closes when the op that stops it took
effect: the completion's ``effective`` field (the moment the iptables rules,
transport-fault call, signal or clock-file write returned). Its probe
confirms the fault later (a cut link or a paused node is proven by a timeout),
and opening at the confirmation put client failures before the window that
explains them. Without ``effective`` (older or imported Jepsen histories, a
nemesis that raised) a window opens at the start op's invoke and closes at
the stop op's completion, the widest span in which the fault may have been
active. ``requested`` and ``confirmed`` keep the start op's invoke and
completion times beside the window.

* ``start-X`` is closed by ``stop-X`` (partition, clock, link, and imported
  Jepsen ``start-fault``/``stop-fault``); beyond that, each registered fault
  kind's start op is closed by its stop op (``kill`` and ``wipe`` by
  ``start``, ``pause`` by ``resume``: ``nemeses.fault_kind``); a stop closes
  the oldest open window it can close;
* a stop that names nodes (``{"nodes": [...]}``, e.g. ``start``) closes the oldest open window
  of the same nodes, so a crash of n1 and a wipe of n2 overlapping each end when their own node
  answers again;
* a stop whose completion is ``fail`` (a restarted node that never answered, rules that could not
  be removed) closes nothing: the fault is still in effect, and its band runs on to the next stop
  or heal that succeeds (or the end of the history);
* ``heal`` closes every open window; a heal that failed closes only the windows of the parts its
  completion reports healed (``{"crash": "healed", "partition": "...error..."}``), none when it
  does not say;
* any other nemesis op is an instant window spanning its own effect (else
  invoke)..completion;
* a window still open at the end of the history closes there;
* a start whose completion is ``fail`` (refused, or its probe found it did not
  take effect) opens no window; it is listed with ``failed: true``.
"""
from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from harness import plugins
from harness.errors import UserError
from harness.history import History
from harness.ops import FAIL, NEMESIS, Op



@dataclass(frozen=True)
class FaultWindow:
    """One fault's span on the history clock (ns), with the ops that opened and closed it."""

    kind: str          # the opening f, e.g. "start-partition", "kill"
    start: int
    end: int
    open_index: int
    close_index: int | None  # None: closed by the end of the history
    value: Any = None        # what the nemesis was asked to do (nodes, partition)
    failed: bool = False
    requested: int | None = None   # the opening op's invoke
    confirmed: int | None = None   # the opening op's completion (its probe's verdict); None: never completed

    def contains(self, t: int) -> bool:
        return self.start <= t <= self.end

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "end": self.end, "open_index": self.open_index,
                "close_index": self.close_index, "value": self.value, "failed": self.failed,
                "requested": self.requested, "confirmed": self.confirmed}


def registered_pairs() -> dict[str, set[str]]:
    """stop f -> the start fs it closes, from every registered fault kind (``dynharness.nemeses``
    entry points, read by their ``start`` / ``stop``; one that cannot be loaded adds nothing)."""
    out: dict[str, set[str]] = defaultdict(set)
    for kind in _kinds():
        out[kind.stop].add(kind.start)
    return dict(out)


def registered_parts() -> dict[str, set[str]]:
    """start f -> the nemesis parts that perform it (what a heal's completion reports on)."""
    out: dict[str, set[str]] = defaultdict(set)
    for kind in _kinds():
        if getattr(kind, "part", None):
            out[kind.start].add(kind.part)
    return dict(out)


def _kinds() -> list[Any]:
    kinds = []
    for name in plugins.names("nemeses"):
        try:
            kinds.append(plugins.load("nemeses", name, "nemesis"))
        except UserError:
            continue
    return kinds


def _nodes(value: Any) -> frozenset[str] | None:
    nodes = value.get("nodes") if isinstance(value, dict) else None
    return frozenset(map(str, nodes)) if isinstance(nodes, list) and nodes else None


def _healed_parts(comp: Op | None) -> set[str] | None:
    """The parts a failed heal's completion reports healed; None when the heal did not fail."""
    if comp is None or comp.type != FAIL:
        return None
    value = comp.value if isinstance(comp.value, dict) else {}
    return {part for part, said in value.items() if said == "healed"}


def _closes(f: str, pairs: dict[str, set[str]]) -> set[str]:
    """The opening fs this f closes, if it is a stop."""
    return pairs.get(f, set()) | ({"start-" + f[len("stop-"):]} if f.startswith("stop-") else set())


def effect_time(inv: Op, comp: Op | None, fallback: int) -> int:
    """When an action took effect: its completion's ``effective`` (kept within invoke..completion),
    else ``fallback``."""
    eff = comp.get("effective") if comp is not None else None
    if not isinstance(eff, int) or isinstance(eff, bool):
        return fallback
    return min(max(eff, inv.time), comp.time)


def fault_windows(history: History) -> list[FaultWindow]:
    """Every fault window of a history, in order of opening."""
    end_of_history = history.ops[-1].time if len(history) else 0
    pairs = [(i, c) for i, c in history.pairs() if i.process == NEMESIS]
    open_: dict[str, deque[tuple[Op, Op | None]]] = defaultdict(deque)
    out: list[FaultWindow] = []
    stops = registered_pairs()
    parts = registered_parts()
    openers = {start for starts in stops.values() for start in starts}

    def window(inv: Op, comp: Op | None, end: int, close_index: int | None, failed: bool = False) -> FaultWindow:
        start = effect_time(inv, comp, inv.time)
        return FaultWindow(inv.f, start, max(start, end), inv.index, close_index, inv.value, failed,
                           requested=inv.time, confirmed=comp.time if comp is not None else None)

    for inv, comp in pairs:
        f = inv.f
        done = comp.time if comp is not None else end_of_history
        undone = effect_time(inv, comp, done)      # when a stop / heal took effect
        if f.startswith("start-") or f in openers:
            if comp is not None and comp.type == FAIL:
                out.append(window(inv, comp, done, comp.index, failed=True))
            else:
                open_[f].append((inv, comp))
        elif f == "heal":
            healed = _healed_parts(comp)
            for kind in list(open_):
                if healed is not None and not parts.get(kind, set()) & healed:
                    continue   # a failed heal: this part did not come back
                while open_[kind]:
                    o_inv, o_comp = open_[kind].popleft()
                    out.append(window(o_inv, o_comp, undone, (comp or inv).index))
        elif _closes(f, stops) and comp is not None and comp.type == FAIL:
            continue  # a stop that failed: the fault is still in effect
        elif closable := [(o, j) for o in _closes(f, stops) for j, (o_inv, _) in enumerate(open_[o])]:
            named = _nodes(inv.value)
            same = [(o, j) for o, j in closable if named is not None and _nodes(open_[o][j][0].value) == named]
            o, j = min(same or closable, key=lambda oj: open_[oj[0]][oj[1]][0].index)
            o_inv, o_comp = open_[o][j]
            del open_[o][j]
            out.append(window(o_inv, o_comp, undone, (comp or inv).index))
        elif _closes(f, stops):
            continue  # a stop with nothing open (its start failed or was never recorded)
        else:
            out.append(window(inv, comp, done, comp.index if comp else None,
                              failed=comp is not None and comp.type == FAIL))
    for q in open_.values():
        for o_inv, o_comp in q:
            out.append(window(o_inv, o_comp, end_of_history, None))
    out.sort(key=lambda w: w.open_index)
    return out
