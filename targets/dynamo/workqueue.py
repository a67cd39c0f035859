"""A thread that takes queued work in batches: the storage writer's group commits and the WAL
syncer's grouped fdatasyncs both take whatever is queued at once, so one commit or one sync
serves every job that arrived while the last one ran."""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class QueueThread:
    """A daemon thread running ``body(jobs)`` over its own queue; ``None`` queued asks it to stop
    once it has taken everything queued before (see :func:`drain`)."""

    def __init__(self, name: str, body: Callable[[queue.SimpleQueue[Any]], None]) -> None:
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._name = name
        self._body = body
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._body, args=(self.jobs,), name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Let the thread finish what is queued, then end it (idempotent)."""
        if self._thread is not None:
            self.jobs.put(None)
            self._thread.join(timeout=timeout)
            self._thread = None


def drain(jobs: queue.SimpleQueue[Any], first: Any, limit: int | None = None) -> tuple[list[Any], bool]:
    """``first`` (already taken from ``jobs``) and whatever else is queued now, up to ``limit``
    items; ``None`` in the queue asks the thread to stop. Returns (items, stopping)."""
    if first is None:
        return [], True
    items = [first]
    while limit is None or len(items) < limit:
        try:
            more = jobs.get_nowait()
        except queue.Empty:
            break
        if more is None:
            return items, True
        items.append(more)
    return items, False
