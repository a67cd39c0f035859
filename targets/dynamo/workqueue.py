"""Taking queued work in batches: the storage writer's group commits and the WAL syncer's
grouped fdatasyncs both take whatever is queued at once, so one commit or one sync serves
every job that arrived while the last one ran."""
from __future__ import annotations

import queue
from typing import Any


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
