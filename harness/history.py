"""Histories: the journal a run writes as it goes, and the reader checkers use.

The journal is the one way ops come into existence during a run: it assigns
the index and the time, and writes each op as one JSON line, flushed at once,
so a harness killed with ``kill -9`` or Ctrl-C leaves a readable history up
to that point (an fsync runs at least every second and on close).

The reader refuses malformed files with ``path:line: reason`` and tolerates a
torn *last* line (the one a crash can leave), saying so in ``History.warnings``.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

from harness.errors import UserError
from harness.limits import json_loads
from harness.ops import INVOKE, NEMESIS, Op


class HistoryError(UserError):
    """A history file that cannot be read; the message names file, line and reason."""


class HistoryJournal:
    """Append-only, crash-safe history writer (thread-safe).

    ``record`` stamps the op with the next index and the time since the
    journal was opened (``time.monotonic_ns`` of the harness process).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync_interval: float = 1.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._next_index = 0
        self._t0 = time.monotonic_ns()
        self._fsync_interval = fsync_interval
        self._last_fsync = time.monotonic()
        self.ops: list[Op] = []  # in-memory copy, for the live display and the checkers

    def now(self) -> int:
        """Nanoseconds since the journal started: the clock every op is stamped with."""
        return time.monotonic_ns() - self._t0

    def at(self, monotonic_ns: int) -> int:
        """A past ``time.monotonic_ns()`` reading on the history's clock (e.g. when a fault took effect)."""
        return max(0, monotonic_ns - self._t0)

    def record(self, process: int | str, type: str, f: str, *, key: str | None = None,
               value: Any = None, node: str | None = None, error: str | None = None,
               siblings: int | None = None, **extra: Any) -> Op:
        """Create, journal and return one op."""
        extra_map: Mapping[str, Any] = MappingProxyType(extra) if extra else MappingProxyType({})
        with self._lock:
            op = Op(index=self._next_index, time=self.now(), process=process, type=type, f=f,
                    key=key, value=value, node=node, error=error, siblings=siblings, extra=extra_map)
            self._next_index += 1
            self._file.write(json.dumps(op.to_json(), separators=(",", ":"), default=str) + "\n")
            self._file.flush()
            self.ops.append(op)
            if time.monotonic() - self._last_fsync >= self._fsync_interval:
                os.fsync(self._file.fileno())
                self._last_fsync = time.monotonic()
        return op

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()

    def __enter__(self) -> "HistoryJournal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class History:
    """A read history: ops in index order, plus what the reader had to say about it."""

    ops: Sequence[Op]
    warnings: tuple[str, ...] = ()
    source: str | None = None
    _by_index: Mapping[int, Op] = field(default_factory=dict, repr=False, compare=False)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def op(self, index: int) -> Op:
        """The op with this index."""
        return self._by_index[index] if self._by_index else self.ops[index]

    def client_ops(self) -> list[Op]:
        return [o for o in self.ops if o.process != NEMESIS]

    def nemesis_ops(self) -> list[Op]:
        return [o for o in self.ops if o.process == NEMESIS]

    def pairs(self) -> list[tuple[Op, Op | None]]:
        """(invoke, completion) for every invoke, in invoke order; completion None if open.

        A completion belongs to the latest open invoke of the same process
        (Jepsen's rule). Completions without an invoke are ignored here; the
        reader's validation refuses them.
        """
        open_by_process: dict[int | str, int] = {}
        out: list[list[Any]] = []
        for o in self.ops:
            if o.type == INVOKE:
                open_by_process[o.process] = len(out)
                out.append([o, None])
            else:
                i = open_by_process.pop(o.process, None)
                if i is not None:
                    out[i][1] = o
        return [(a, b) for a, b in out]

    @staticmethod
    def of(ops: Sequence[Op], warnings: Sequence[str] = (), source: str | None = None) -> "History":
        """A history from ops already in memory (sorted by index)."""
        ops = sorted(ops, key=lambda o: o.index)
        return History(ops=tuple(ops), warnings=tuple(warnings), source=source,
                       _by_index={o.index: o for o in ops})


def validate_ops(ops: Sequence[Op], where: str = "history") -> None:
    """Refuse histories that break Jepsen's rules (HistoryError naming the op)."""
    open_by_process: dict[int | str, Op] = {}
    last_index = -1
    for o in ops:
        if o.index <= last_index:
            raise HistoryError(f"{where}: op index {o.index} is not after {last_index}")
        last_index = o.index
        if o.type == INVOKE:
            if o.process in open_by_process:
                raise HistoryError(
                    f"{where}: process {o.process!r} invokes op {o.index} while op "
                    f"{open_by_process[o.process].index} is still open")
            open_by_process[o.process] = o
        else:
            inv = open_by_process.pop(o.process, None)
            if inv is None:
                raise HistoryError(f"{where}: op {o.index} completes nothing (process {o.process!r} has no open invoke)")
            if inv.f != o.f:
                raise HistoryError(f"{where}: op {o.index} completes {inv.f!r} op {inv.index} with f={o.f!r}")


def read_history(path: str | os.PathLike[str]) -> History:
    """Read and validate a ``history.jsonl`` file.

    Raises HistoryError (a one-line ``path:line: reason``) on any malformed
    line except a torn final line, which is dropped with a warning.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "history.jsonl"
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise HistoryError(f"{p}: cannot read history: {e.strerror or e}") from None
    lines = raw.split(b"\n")
    ends_clean = raw.endswith(b"\n") or not raw
    if lines and lines[-1] == b"":
        lines.pop()
    ops: list[Op] = []
    warnings: list[str] = []
    for n, line in enumerate(lines, start=1):
        last = n == len(lines)
        if not line.strip():
            continue
        try:
            obj = json_loads(line)
            op = Op.from_json(obj)
        except (ValueError, UnicodeDecodeError) as e:
            if last and not ends_clean:
                warnings.append(f"{p}:{n}: torn last line dropped (the run was interrupted mid-write)")
                break
            reason = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
            raise HistoryError(f"{p}:{n}: {reason}") from None
        ops.append(op)
    validate_ops(ops, where=str(p))
    return History.of(ops, warnings, source=str(p))


def write_history(path: str | os.PathLike[str], ops: Sequence[Op]) -> None:
    """Write ops as a history file (for imports, examples and tests)."""
    with open(path, "w", encoding="utf-8") as fh:
        for o in ops:
            fh.write(json.dumps(o.to_json(), separators=(",", ":"), default=str) + "\n")
