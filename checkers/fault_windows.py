"""Fault windows: when each fault was active, from the nemesis ops of a history.

The perf checker splits availability and latency by window, and reports draw
the windows as bands, so both read them from here. A window opens at the
invoke of the op that starts a fault and closes at the completion of the op
that stops it (the span in which the fault may have been active):

* ``start-X`` is closed by ``stop-X`` (partition, clock, link, and imported
  Jepsen ``start-fault``/``stop-fault``), ``kill`` by ``start``, ``pause``
  by ``resume``; a stop closes the oldest open window of its kind;
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

from harness.history import History
from harness.ops import FAIL, NEMESIS, Op

#: stop f -> the start f it closes (beyond the generic start-X / stop-X pairing).
CLOSERS = {"start": "kill", "resume": "pause"}
OPENERS = frozenset({"kill", "pause"})


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


def _opens(f: str) -> bool:
    return f.startswith("start-") or f in OPENERS


def _closes(f: str) -> str | None:
    """The opening f this f closes, if it is a stop."""
    if f.startswith("stop-"):
        return "start-" + f[len("stop-"):]
    return CLOSERS.get(f)


def fault_windows(history: History) -> list[FaultWindow]:
    """Every fault window of a history, in order of opening."""
    end_of_history = history.ops[-1].time if len(history) else 0
    pairs = [(i, c) for i, c in history.pairs() if i.process == NEMESIS]
    open_: dict[str, deque[tuple[Op, Op | None]]] = defaultdict(deque)
    out: list[FaultWindow] = []

    def close(inv: Op, end: int, closer: Op | None) -> None:
        out.append(FaultWindow(inv.f, inv.time, end, inv.index, closer.index if closer else None, inv.value))

    for inv, comp in pairs:
        f = inv.f
        done = comp.time if comp is not None else end_of_history
        if _opens(f):
            if comp is not None and comp.type == FAIL:
                out.append(FaultWindow(f, inv.time, done, inv.index, comp.index, inv.value, failed=True))
            else:
                open_[f].append((inv, comp))
        elif f == "heal":
            for kind in list(open_):
                while open_[kind]:
                    o_inv, _ = open_[kind].popleft()
                    close(o_inv, done, comp or inv)
        elif (opener := _closes(f)) is not None:
            if open_[opener]:
                o_inv, _ = open_[opener].popleft()
                close(o_inv, done, comp or inv)
        else:
            out.append(FaultWindow(f, inv.time, done, inv.index, comp.index if comp else None, inv.value,
                                   failed=comp is not None and comp.type == FAIL))
    for q in open_.values():
        for o_inv, _ in q:
            out.append(FaultWindow(o_inv.f, o_inv.time, end_of_history, o_inv.index, None, o_inv.value))
    out.sort(key=lambda w: w.open_index)
    return out
