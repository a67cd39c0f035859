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

Checkpoints must not undo that, and must not stall the writer either. A checkpoint
copies WAL frames into the database file and lets later commits overwrite them, so it
has to sync the WAL before and the database file after; done by the writer (SQLite's
automatic checkpoint), those two syncs would put the disk back on every write's path
about once a second. So the writer's connection runs ``synchronous=OFF`` with
automatic checkpoints off, and this thread checkpoints instead, on a connection of its
own at ``synchronous=NORMAL`` (in WAL mode: the WAL synced before each checkpoint, the
database file after it). A ``PASSIVE`` checkpoint never blocks the writer, but under
continuous writes it may never empty the WAL; once the WAL holds ``WAL_MAX_FRAMES`` the
next checkpoint is a ``RESTART``, which waits for the writer's current commit and makes
the next one start the WAL over, so the WAL stays bounded.

The WAL file is also given its disk blocks before the writer needs them
(:func:`preallocate_wal`): while this thread's ``fdatasync`` writes the WAL back, an
append that reaches blocks the file never had must wait for ext4 to allocate them, and
so for the disk (see that function).
"""
from __future__ import annotations

import os
import queue
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from targets.dynamo.workqueue import QueueThread, drain

fdatasync = os.fdatasync     # module-level, so a test can watch the calls
#: Seconds between checkpoints while commits keep coming (SQLite's own default, 1,000 pages,
#: came to about one a second per node under the benchmark's load).
CHECKPOINT_EVERY = 0.5
#: WAL frames (pages) past which a checkpoint may block the writer to start the WAL over.
WAL_MAX_FRAMES = 16_384
#: SQLite's WAL layout: a 32-byte file header, then frames of a 24-byte header plus a page.
WAL_HEADER, WAL_FRAME_HEADER = 32, 24


def preallocate_wal(wal_path: str, page_size: int) -> None:
    """Extend the WAL file with zeros, synced, to the size the WAL reaches at most, so the
    writer's appends overwrite blocks the file already has and never wait for the disk.

    Why: an append past the file's old end needs a new block (ext4's delayed allocation:
    ``ext4_da_get_block_prep`` in the blocked writer's kernel stack), and that waits while
    the syncer's ``fdatasync`` writes the same file back, for as long as the disk stalls
    (measured under the benchmark: commits at ``synchronous=OFF`` taking 20-40 ms and ending
    the moment the syncer's fdatasync returned; in a micro-benchmark, appends waited up to
    86 ms and overwrites of written blocks never over 2.3 ms). SQLite starts the WAL over
    from its beginning after a checkpoint and keeps the file's size (no
    ``journal_size_limit``), and a ``RESTART`` bounds it near ``WAL_MAX_FRAMES``, so once
    the file is that large every append is an overwrite. PostgreSQL zero-fills its WAL
    segments for the same reason (``wal_init_zero``). Zeros are written rather than
    reserved with ``fallocate``: its unwritten extents are converted at writeback, and in
    the micro-benchmark appends into them waited as long (up to 86 ms).

    Called with no connection open (the store's start-up connection has just checkpointed
    and removed the WAL), and only bytes past the file's end are written: a WAL that is
    still there keeps its committed frames, which SQLite replays on open; it stops at the
    first frame whose salt and checksum do not match, as it does at the stale frames of a
    WAL it started over, so zeros after them are never read as data."""
    frames = WAL_MAX_FRAMES + WAL_MAX_FRAMES // 4
    want = WAL_HEADER + frames * (WAL_FRAME_HEADER + page_size)
    fd = os.open(wal_path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        end = os.fstat(fd).st_size
        if end >= want:
            return
        zeros = memoryview(bytes(1 << 20))
        while end < want:
            end += os.pwrite(fd, zeros[:want - end], end)
        os.fsync(fd)                          # blocks allocated now, not at the writer's first sync
    finally:
        os.close(fd)


class WalSyncer:
    """One thread that makes committed durable jobs durable, then acknowledges them."""

    def __init__(self, db_path: str, acknowledge: Callable[[list], None],
                 commits: Callable[[], int]) -> None:
        self.db_path = db_path
        self.wal_path = db_path + "-wal"
        self._acknowledge = acknowledge       # called (in this thread) with synced job outcomes
        self._commits = commits               # the writer's commit count: anything new to copy?
        self._thread = QueueThread("storage-syncer", self._run)
        self._wal_fd: int | None = None          # opened at the first sync, closed when the thread ends
        self.fsyncs = 0
        self.checkpoints = 0
        self.wal_frames = 0                   # frames in the WAL at the last checkpoint

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Sync and acknowledge whatever is pending, then end the thread (idempotent)."""
        self._thread.stop()

    def submit(self, outcomes: list) -> None:
        """Writer thread, after a commit: acknowledge ``outcomes`` once the WAL is synced."""
        self._thread.jobs.put(outcomes)

    def _run(self, pending: queue.SimpleQueue[Any]) -> None:
        db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")          # this connection's checkpoints sync
        checkpointed_at, last_checkpoint = self._commits(), time.monotonic()
        stopping = False
        try:
            while not stopping:
                try:
                    taken, stopping = drain(pending, pending.get(timeout=CHECKPOINT_EVERY))
                except queue.Empty:
                    taken = []
                batch = [outcome for outcomes in taken for outcome in outcomes]   # one fdatasync for all
                if batch:
                    try:
                        self._sync()
                        self.fsyncs += 1
                    except OSError as exc:               # not durable: the durable write fails
                        batch = [(fut, False, exc) for fut, _, _ in batch]
                    self._acknowledge(batch)
                now, commits = time.monotonic(), self._commits()
                if commits != checkpointed_at and (now - last_checkpoint >= CHECKPOINT_EVERY or stopping):
                    checkpointed_at, last_checkpoint = commits, now
                    self._checkpoint(db)
        finally:
            db.close()
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        """Copy the WAL into the database file (both synced by SQLite); block the writer only
        when the WAL has grown past ``WAL_MAX_FRAMES``."""
        mode = "RESTART" if self.wal_frames >= WAL_MAX_FRAMES else "PASSIVE"
        try:
            _, frames, _ = db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error:
            return                                   # busy or failing disk: the next round retries
        self.checkpoints += 1
        self.wal_frames = max(frames, 0)

    def _sync(self) -> None:
        """fdatasync the WAL through a descriptor of its own, kept open while the thread runs
        (the sync covers the whole file, whichever descriptor wrote it; SQLite keeps the WAL
        file while any connection, this thread's included, has the database open)."""
        if self._wal_fd is None:
            self._wal_fd = os.open(self.wal_path, os.O_RDONLY)
        fdatasync(self._wal_fd)
