"""Durable writes off the writer's path: ``fsync="one"``, Dynamo's own trade (SOSP 2007, 6.1).

In the paper each node buffers writes and a writer thread stores them; to bound what
a crash can lose, the coordinator asks *one* of the N replicas for a durable write,
and since it waits only for W answers, that one replica's disk does not slow the
write. Here, under ``fsync="one"``, the storage writer commits every batch without
an fsync (SQLite ``synchronous=OFF``: the commit is in the OS, so it survives
``kill -9`` of the node, not a crash of the machine) and acknowledges at once every
job that did not ask to be durable. A job that did is handed to :class:`WalSyncer`,
whose own thread runs ``fdatasync`` on the WAL file (one call covers every commit
written so far) and only then acknowledges it. The writer meanwhile goes on
committing: a slow disk delays the durable writes alone.

Checkpoints must not undo that: a checkpoint copies WAL frames into the database
file and lets later commits overwrite them, so unless it syncs the database file
first a machine crash could lose a write already acknowledged as durable. SQLite's
``synchronous=NORMAL`` is exactly that setting in WAL mode (no sync at commit; the
WAL synced before each checkpoint and the database file after it), so the writer's
connection runs it under ``fsync="one"`` and SQLite's own checkpoints stay safe.
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

fdatasync = os.fdatasync     # module-level, so a test can watch the calls


class WalSyncer:
    """One thread that makes committed durable jobs durable, then acknowledges them."""

    def __init__(self, db_path: str, acknowledge: Callable[[list], None]) -> None:
        self.wal_path = db_path + "-wal"
        self._acknowledge = acknowledge       # called (in this thread) with synced job outcomes
        self._pending: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.fsyncs = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="storage-syncer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Sync and acknowledge whatever is pending, then end the thread (idempotent)."""
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def submit(self, outcomes: list) -> None:
        """Writer thread, after a commit: acknowledge ``outcomes`` once the WAL is synced."""
        self._pending.put(outcomes)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._pending.get()
            batch = [] if first is None else list(first)
            stopping = first is None
            while True:                              # everything committed so far: one fdatasync
                try:
                    more = self._pending.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                else:
                    batch.extend(more)
            if batch:
                try:
                    self._sync()
                    self.fsyncs += 1
                except OSError as exc:               # not durable: the durable write fails
                    batch = [(fut, False, exc) for fut, _, _ in batch]
                self._acknowledge(batch)

    def _sync(self) -> None:
        """fdatasync the WAL through a descriptor of its own (the sync covers the whole file,
        whichever descriptor wrote it)."""
        fd = os.open(self.wal_path, os.O_RDONLY)
        try:
            fdatasync(fd)
        finally:
            os.close(fd)
