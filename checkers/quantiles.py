"""Quantiles and op-pair views shared by the checkers.

Several checkers summarise latencies (perf, lost-writes stabilisation) and
walk the same (invoke, completion) pairs; this module holds the one
definition of each so they cannot drift apart.
"""
from __future__ import annotations

import functools
import gc
import math
import weakref
from typing import Any, Callable, Iterable, NamedTuple, Sequence, TypeVar

from harness.history import History
from harness.ops import NEMESIS, OK, Op

F = TypeVar("F", bound=Callable[..., Any])


def without_gc(fn: F) -> F:
    """Run a checker's ``check`` with the cyclic garbage collector paused.

    A history is a million small objects; every allocation burst of a
    checker otherwise triggers full collections that walk all of them
    (measured: History.pairs() on 100k ops, 1.37 s with GC, 0.09 s without).
    Checkers build no reference cycles, so nothing leaks meanwhile.
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()
    return wrapper  # type: ignore[return-value]


#: The quantiles every latency summary reports, by name.
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999))


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-quantile (nearest rank, as Jepsen and most latency tools report) of sorted data.

    Nearest rank never invents a value that was not measured, which matters
    for a max-like figure such as p99.9 of a small sample.
    """
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """count, p50, p95, p99, p999, max (and mean) of some values: the shape of every latency table."""
    data = sorted(values)
    out: dict[str, Any] = {"count": len(data)}
    for name, q in QUANTILES:
        out[name] = quantile(data, q)
    out["max"] = data[-1] if data else None
    out["mean"] = (sum(data) / len(data)) if data else None
    return out


class OpPair(NamedTuple):
    """A client operation as one record: its invoke and its completion (None when still open).

    ``outcome`` is ok / fail / info, or ``"open"`` when the history ended
    before a completion: checkers treat open exactly like info (it may or may
    not have happened). A NamedTuple because a 1M-op history makes 500k of
    them (a third of the cost of a frozen dataclass).
    """

    invoke: Op
    completion: Op | None

    @property
    def outcome(self) -> str:
        return self.completion.type if self.completion is not None else "open"

    @property
    def ok(self) -> bool:
        return self.completion is not None and self.completion.type == OK

    @property
    def served(self) -> bool:
        """The store answered as it should: ok, or a ``fail`` it decided on purpose (a cas whose
        compare failed carries ``compared: true``): what availability counts."""
        return self.ok or (self.failed and bool(self.completion.get("compared")))  # type: ignore[union-attr]

    @property
    def failed(self) -> bool:
        return self.completion is not None and self.completion.type == "fail"

    @property
    def f(self) -> str:
        return self.invoke.f

    @property
    def key(self) -> str | None:
        return self.invoke.key if self.invoke.key is not None else (
            self.completion.key if self.completion is not None else None)

    @property
    def start(self) -> int:
        return self.invoke.time

    @property
    def end(self) -> float:
        """Completion time; +inf for info/open ops (they may take effect at any later moment)."""
        if self.completion is None or self.completion.type == "info":
            return math.inf
        return self.completion.time

    @property
    def s(self) -> int:
        """Invoke position in the history (indexes order events totally, ties in time included)."""
        return self.invoke.index

    @property
    def e(self) -> float:
        """Completion position; +inf for info/open ops (they may take effect at any later moment)."""
        if self.completion is None or self.completion.type == "info":
            return math.inf
        return self.completion.index

    @property
    def index(self) -> int:
        """The op index to cite: the completion's when there is one (it holds the result), else the invoke's."""
        return self.completion.index if self.completion is not None else self.invoke.index

    @property
    def read_value(self) -> Any:
        """The value a read returned (the completion's value)."""
        return self.completion.value if self.completion is not None else None

    def flag(self, name: str) -> Any:
        """An extra field from the invoke, or else from the completion (e.g. ``final``, ``session``)."""
        v = self.invoke.get(name)
        if v is None and self.completion is not None:
            v = self.completion.get(name)
        return v


_last_pairs: tuple[Any, tuple[OpPair, ...]] | None = None


def client_pairs(history: History) -> tuple[OpPair, ...]:
    """Every client (non-nemesis) operation as an OpPair, in invoke order.

    The last history's pairs are kept (by weak reference) because a run
    checks one history with several checkers; pairing 1M ops costs ~1 s.
    """
    global _last_pairs
    if _last_pairs is not None and _last_pairs[0]() is history:
        return _last_pairs[1]
    pairs = tuple(OpPair(i, c) for i, c in history.pairs() if i.process != NEMESIS)
    try:
        _last_pairs = (weakref.ref(history), pairs)
    except TypeError:  # not weak-referenceable: just do not cache
        _last_pairs = None
    return pairs


def end_of_history(history: History) -> int:
    """The time of the last op: where open fault windows and open ops end."""
    return history.ops[-1].time if len(history) else 0
