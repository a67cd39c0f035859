"""Fault windows: when each fault was active, from the nemesis ops of a history.

The perf checker splits availability and latency by window, and reports draw
the windows as bands, so both read them from here. A window opens at the
invoke of the op that starts a fault and closes at the completion of the op
that stops it (the span in which the fault may have been active):

* ``start-X`` is closed by ``stop-X`` (partition, clock, link, and imported
  Jepsen ``start-fault``/``stop-fault``); beyond that, each registered fault
  kind's start op is closed by its stop op (``kill`` and ``wipe`` by
  ``start``, ``pause`` by ``resume``: ``nemeses.fault_kind``); a stop closes
  the oldest open window it can close;
* ``heal`` closes every open window;
* any other nemesis op (``wipe``, ...) is an instant window spanning its own
  invoke..completion;
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

    def contains(self, t: int) -> bool:
        return self.start <= t <= self.end

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "end": self.end, "open_index": self.open_index,
                "close_index": self.close_index, "value": self.value, "failed": self.failed}


def registered_pairs() -> dict[str, set[str]]:
    """stop f -> the start fs it closes, from every registered fault kind (``dynharness.nemeses``
    entry points, read by their ``start`` / ``stop``; one that cannot be loaded adds nothing)."""
    out: dict[str, set[str]] = defaultdict(set)
    for name in plugins.names("nemeses"):
        try:
            kind = plugins.load("nemeses", name, "nemesis")
        except UserError:
            continue
        out[kind.stop].add(kind.start)
    return dict(out)


def _closes(f: str, pairs: dict[str, set[str]]) -> set[str]:
    """The opening fs this f closes, if it is a stop."""
    return pairs.get(f, set()) | ({"start-" + f[len("stop-"):]} if f.startswith("stop-") else set())


def fault_windows(history: History) -> list[FaultWindow]:
    """Every fault window of a history, in order of opening."""
    end_of_history = history.ops[-1].time if len(history) else 0
    pairs = [(i, c) for i, c in history.pairs() if i.process == NEMESIS]
    open_: dict[str, deque[tuple[Op, Op | None]]] = defaultdict(deque)
    out: list[FaultWindow] = []
    stops = registered_pairs()
    openers = {start for starts in stops.values() for start in starts}

    def close(inv: Op, end: int, closer: Op | None) -> None:
        out.append(FaultWindow(inv.f, inv.time, end, inv.index, closer.index if closer else None, inv.value))

    for inv, comp in pairs:
        f = inv.f
        done = comp.time if comp is not None else end_of_history
        if f.startswith("start-") or f in openers:
            if comp is not None and comp.type == FAIL:
                out.append(FaultWindow(f, inv.time, done, inv.index, comp.index, inv.value, failed=True))
            else:
                open_[f].append((inv, comp))
        elif f == "heal":
            for kind in list(open_):
                while open_[kind]:
                    o_inv, _ = open_[kind].popleft()
                    close(o_inv, done, comp or inv)
        elif closable := [o for o in _closes(f, stops) if open_[o]]:
            oldest = min(closable, key=lambda o: open_[o][0][0].index)
            o_inv, _ = open_[oldest].popleft()
            close(o_inv, done, comp or inv)
        elif _closes(f, stops):
            continue  # a stop with nothing open (its start failed or was never recorded)
        else:
            out.append(FaultWindow(f, inv.time, done, inv.index, comp.index if comp else None, inv.value,
                                   failed=comp is not None and comp.type == FAIL))
    for q in open_.values():
        for o_inv, _ in q:
            out.append(FaultWindow(o_inv.f, o_inv.time, end_of_history, o_inv.index, None, o_inv.value))
    out.sort(key=lambda w: w.open_index)
    return out
