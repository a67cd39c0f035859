"""Durable local storage of one node: SQLite in WAL mode behind one writer thread.

Why one thread: SQLite calls block, and the event loop must not. Every read and
write of the node goes through :class:`Storage`'s single worker thread, which
runs queued jobs in *group commits*: it drains whatever is queued (up to
``BATCH``), runs the jobs in one transaction (their row upserts written as one
statement, see :meth:`Storage._run_batch`) and commits once. With
``fsync="always"`` (``synchronous=FULL``) the commit fsyncs the WAL before any
job of the batch is acknowledged; many concurrent writes share one fsync.
``fsync="one"`` is Dynamo's own trade (SOSP 2007, section 6.1): commits are
written to the OS without an fsync, and only the jobs that asked for a *durable
write* (the coordinator picks one replica per write for it) wait for one, made
by :class:`~targets.dynamo.walsync.WalSyncer` off the writer's path.
``fsync="never"`` (``synchronous=OFF``) never fsyncs, kept so users can study
what it loses. In every setting a commit is written to the OS before its jobs
are acknowledged, so an acked write survives ``kill -9`` of the node; the fsync
is what makes it survive a crash of the machine.

Reads are served from an in-memory cache of the committed objects, kept on the
event loop thread: it is filled at start-up by the same scan that rebuilds the
Merkle trees and updated, in commit order, before any job's result is
delivered. While every key fits (``CACHE_MAX``) an absent key is known absent;
after an eviction, misses go to the worker thread. A read therefore costs no
thread hop, while every write still commits in the worker before it is acked.

Read-modify-write is atomic per node: :meth:`Storage.update` runs its function
in the worker thread against the current row. Hints (``target``, ``key``,
``seq``) live in the same database and are written in the same transaction as
the object they point at.
"""
from __future__ import annotations

import asyncio
import collections
import os
import queue
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from targets.dynamo import bugs
from targets.dynamo.txn import Change, Txn
from targets.dynamo.walsync import WalSyncer, preallocate_wal
from targets.dynamo.workqueue import QueueThread, drain

BATCH = 256
#: Parameters per multi-row upsert: 300 rows of (key, part, text), under SQLite's historic
#: 999-variable limit. Queued rows are kept flattened, so this bounds the queue's slices too.
UPSERT_PARAMS = 3 * 300
CACHE_MAX = 200_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, part INTEGER NOT NULL, obj TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS kv_part ON kv (part);
CREATE TABLE IF NOT EXISTS hints (target TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
                                  PRIMARY KEY (target, key));
CREATE INDEX IF NOT EXISTS hints_key ON hints (key);
"""


class Storage:
    """The node's SQLite database, used only from its worker thread."""

    def __init__(self, data_dir: str, versioning: Any, partition_of: Callable[[str], int],
                 fsync: str = "one") -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, "store.sqlite3")
        if bugs.active("storage-drops-wal"):            # bug zoo: the WAL taken for a stale temp file
            bugs.remove_wal(self.path)
        self.versioning = versioning
        self.partition_of = partition_of
        self.fsync = fsync
        self._writer = QueueThread("storage-writer", self._worker)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_change: Callable[[list[Change]], None] = lambda changes: None
        self._cache: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._cache_complete = True        # no key evicted: a key not cached is not stored
        # The worker thread's own row cache (only that thread touches it): what a committed or
        # in-progress transaction of the worker last read or wrote, so a merge costs no SELECT
        # and no JSON decode. A job's writes enter it when the job's savepoint is released; a
        # failed COMMIT empties it (SQLite is then the truth again).
        self._rows: dict[str, Any] = {}
        # Worker thread only: row upserts queued by this batch's jobs (key, part, text, ...
        # flattened), and whether the batch's transaction is open (see _run_batch).
        self._queued_rows: list[Any] = []
        self._in_txn = False
        self.commits = 0
        self.jobs_run = 0
        self._commit_fsyncs = 0            # "always": commits that wrote (each one fsynced)
        self._syncer = (WalSyncer(self.path, self._acknowledge_synced, lambda: self.commits)
                        if fsync == "one" else None)
        db = self._connect()   # create the schema now so a bad data dir fails at start
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        if self._syncer is not None:
            # "one": closing checkpoints a WAL that kill -9 left and deletes it, so sync what it
            # copies (as the writer does at its close), or a durable write's only synced copy
            # is gone; then the writer will append while the syncer syncs: preallocate
            db.execute("PRAGMA synchronous=FULL")
        db.close()
        if self._syncer is not None:
            preallocate_wal(self.path + "-wal", page_size)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # "one": no sync at commit, and the syncer thread checkpoints (see walsync); "never":
        # no sync at all
        db.execute("PRAGMA synchronous=" + ("FULL" if self.fsync == "always" else "OFF"))
        if self.fsync == "one":
            db.execute("PRAGMA wal_autocheckpoint=0")
        db.executescript(_SCHEMA)
        return db

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the worker thread; results are delivered on ``loop``."""
        self._loop = loop
        if self._syncer is not None:
            self._syncer.start()
        self._writer.start()

    def stop(self) -> None:
        """Finish queued jobs and stop the worker (idempotent)."""
        self._writer.stop()

    def _worker(self, jobs: queue.SimpleQueue[Any]) -> None:
        db = self._connect()
        stopping = False
        while not stopping:
            batch, stopping = drain(jobs, jobs.get(), BATCH)
            if not batch:
                break
            self._run_batch(db, batch)
        if self._syncer is not None:
            self._syncer.stop()                      # pending durable writes synced and acked
            db.execute("PRAGMA synchronous=FULL")    # the closing checkpoint syncs what it copies
        db.close()

    def _run_batch(self, db: sqlite3.Connection, batch: list) -> None:
        """Run a batch of jobs as one durable commit, with as few SQLite calls as possible.

        Why so few: every SQLite call releases the GIL, and under load this thread then waits
        for the event loop to hand it back (up to the 5 ms switch interval each time). So the
        jobs' row upserts are queued and written together in one multi-row statement; when
        that is all a batch writes (the usual case: replica and coordinator puts), the
        statement is its own transaction, and the whole batch costs one call and one fsync.
        Any other statement (a read that misses the cache, a delete, a hint) first opens the
        transaction and writes the queued rows, so statements keep the jobs' order.

        A job that fails while the batch has sent SQLite nothing just drops its queued rows
        (the usual failure: a bad context or too many siblings). One that wrote something once
        the batch's transaction was open rolls the whole batch back, which then runs again
        with a savepoint per job."""
        ran = self._run_jobs(db, batch, savepoints=False)
        if ran is None:
            ran = self._run_jobs(db, batch, savepoints=True)
            assert ran is not None
        outcomes, changes = ran
        wrote = self._in_txn or bool(self._queued_rows)
        try:
            if self._in_txn or len(self._queued_rows) > UPSERT_PARAMS:
                self._open(db)
                db.execute("COMMIT")
            else:
                self._write_queued_rows(db)          # one statement: its own transaction
            self._commit_fsyncs += wrote and self.fsync == "always"
        except sqlite3.Error as exc:
            db.execute("ROLLBACK") if db.in_transaction else None
            outcomes = [(fut, False, exc) for fut, _, _ in outcomes]
            changes = []
            self._rows.clear()
        finally:
            self._queued_rows.clear()
            self._in_txn = False
        self.commits += 1
        self.jobs_run += len(batch)
        assert self._loop is not None
        synced: list = []
        if self._syncer is not None and any(asked for _, _, asked in batch):   # "one" only
            durable = {fut for _, fut, asked in batch if asked}
            synced = [o for o in outcomes if o[1] and o[0] in durable]
            outcomes = [o for o in outcomes if not (o[1] and o[0] in durable)]
        self._loop.call_soon_threadsafe(self._deliver, changes, outcomes)
        if synced:                                   # acked after the changes reach the cache
            self._syncer.submit(synced)

    def _acknowledge_synced(self, outcomes: list) -> None:
        """Syncer thread: durable jobs whose commit the WAL sync covered (in commit order, so
        after the commit's own delivery, which was queued on the loop first)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, [], outcomes)

    @property
    def fsyncs(self) -> int:
        """fsyncs made before acknowledging jobs: each writing commit's under "always", the
        syncer's (one per group of durable writes) under "one", none under "never"."""
        return self._syncer.fsyncs if self._syncer is not None else self._commit_fsyncs

    @property
    def checkpoints(self) -> int | None:
        """Checkpoints the syncer thread ran under "one"; None: SQLite's own, in the writer."""
        return self._syncer.checkpoints if self._syncer is not None else None

    def _open(self, db: sqlite3.Connection) -> None:
        """Worker thread: make sure the batch's transaction is open and the queued rows are in it."""
        if not self._in_txn:
            db.execute("BEGIN")
            self._in_txn = True
        self._write_queued_rows(db)

    def _write_queued_rows(self, db: sqlite3.Connection) -> None:
        if not self._queued_rows:
            return
        queued, self._queued_rows = self._queued_rows, []
        for start in range(0, len(queued), UPSERT_PARAMS):
            chunk = queued[start:start + UPSERT_PARAMS]
            db.execute("INSERT INTO kv (key, part, obj) VALUES " + ",".join(["(?,?,?)"] * (len(chunk) // 3))
                       + " ON CONFLICT (key) DO UPDATE SET obj = excluded.obj", chunk)

    def _run_jobs(self, db: sqlite3.Connection, batch: list,
                  savepoints: bool) -> tuple[list, list[Change]] | None:
        """Run the batch's jobs (their upserts queued); None = rolled back, rerun with savepoints."""
        outcomes = []
        changes: list[Change] = []
        if savepoints:
            self._open(db)
        for fn, fut, _ in batch:
            txn = Txn(self, db)
            mark = len(self._queued_rows)
            if savepoints:
                db.execute("SAVEPOINT job")
            try:
                result = fn(txn)
                if savepoints:
                    self._write_queued_rows(db)      # inside this job's savepoint
            except BaseException as exc:  # noqa: BLE001 - the job's error goes to its caller
                if savepoints:
                    self._queued_rows.clear()
                    db.execute("ROLLBACK TO job")
                    db.execute("RELEASE job")
                elif txn.dirty and self._in_txn:
                    db.execute("ROLLBACK")
                    self._in_txn = False
                    self._queued_rows.clear()
                    self._rows.clear()        # it may hold rows of this batch's earlier jobs
                    return None
                else:
                    del self._queued_rows[mark:]      # nothing of this job reached SQLite
                outcomes.append((fut, False, exc))
                continue
            if savepoints:
                db.execute("RELEASE job")
            for change in txn.changes:
                if not change.loaded:
                    self._remember_row(change.key, change.obj)
            changes.extend(txn.changes)
            outcomes.append((fut, True, result))
        return outcomes, changes

    def _deliver(self, changes: list[Change], outcomes: list) -> None:
        if changes:
            for change in changes:
                self._remember(change)
            real = [c for c in changes if not c.loaded]
            if real:
                self.on_change(real)
        for fut, ok, value in outcomes:
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    # -- jobs ------------------------------------------------------------------------------
    def run(self, fn: Callable[[Txn], Any], durable: bool = False) -> asyncio.Future[Any]:
        """Run ``fn(txn)`` in the worker thread inside a transaction; resolves after the commit.

        ``durable``: with ``fsync="one"``, the commit is fsynced before the future resolves
        (with "always" every commit is, with "never" none is)."""
        assert self._loop is not None, "Storage.start() first"
        fut = self._loop.create_future()
        self._writer.jobs.put((fn, fut, durable))
        return fut

    def _remember_row(self, key: str, obj: Any) -> None:
        """Worker thread only: note the current row of key (None: absent)."""
        rows = self._rows
        if len(rows) >= CACHE_MAX and key not in rows:
            rows.clear()
        rows[key] = obj

    def get_cached(self, key: str) -> tuple[bool, Any]:
        """(True, object or None) when the read cache can answer for key, else (False, None)."""
        obj = self._cache.get(key)
        if obj is not None or self._cache_complete:
            return True, obj
        return False, None

    def _remember(self, change: Change) -> None:
        cache = self._cache
        if change.loaded:
            if change.key in cache or change.obj is None:
                return                     # the cache is at least as new as this load
        elif change.obj is None:
            cache.pop(change.key, None)
            return
        cache[change.key] = change.obj
        if len(cache) > CACHE_MAX:
            cache.popitem(last=False)
            self._cache_complete = False

    async def get(self, key: str) -> Any:
        """The committed object for key, or None (from the cache when it can answer)."""
        obj = self._cache.get(key)
        if obj is not None or self._cache_complete:
            return obj

        def job(txn: Txn) -> Any:
            found = txn.get(key)
            txn.changes.append(Change(key, found, loaded=True))
            return found
        return await self.run(job)

    def merge_in(self, key: str, obj: Any, hint_for: str | None = None,
                 durable: bool = False) -> asyncio.Future[Any]:
        """Merge ``obj`` into the stored object; queue a hint for ``hint_for`` if given.

        A future (not a coroutine), so a replica can answer from a callback without a task."""
        def job(txn: Txn) -> Any:
            if bugs.active("replica-put-overwrites"):   # bug zoo: the sent object replaces ours
                txn.put(key, obj)
            _, new = txn.merge(key, obj)
            if hint_for is not None:
                txn.add_hint(hint_for, key)
            return new
        return self.run(job, durable)

    async def merge_many(self, objects: dict[str, Any], durable: bool = False) -> None:
        """Merge several objects in one job (handoff and anti-entropy batches)."""
        def job(txn: Txn) -> None:
            for key, obj in objects.items():
                txn.merge(key, obj)
        if objects:
            await self.run(job, durable)

    # -- scans (worker thread, read-only) -----------------------------------------------------
    def scan_all(self) -> Iterable[tuple[str, Any]]:
        """Every (key, object) in the store, read on a private connection at start-up (fills the cache)."""
        db = sqlite3.connect(self.path)
        try:
            for key, obj in db.execute("SELECT key, obj FROM kv"):
                loaded = self.versioning.from_text(obj)
                self._remember(Change(key, loaded, loaded=True))
                yield key, loaded
        finally:
            db.close()

    async def keys_page(self, after: str, limit: int) -> list[str]:
        """Up to ``limit`` keys sorted after ``after`` (for the tombstone reaper's sweep)."""
        return await self.run(lambda txn: [r[0] for r in txn._db.execute(
            "SELECT key FROM kv WHERE key > ? ORDER BY key LIMIT ?", (after, limit))])

    async def objects(self, keys: Iterable[str]) -> dict[str, Any]:
        """{key: object} for those of ``keys`` that are stored."""
        wanted = list(keys)

        def job(txn: Txn) -> dict[str, Any]:
            out = {}
            for k in wanted:
                o = txn.get(k)
                if o is not None:
                    out[k] = o
            return out
        return await self.run(job)

    async def hints(self) -> list[tuple[str, str, int]]:
        """Every queued hint as (target, key, seq)."""
        return await self.run(lambda txn: list(txn._db.execute("SELECT target, key, seq FROM hints")))
