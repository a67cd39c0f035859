"""The store's durability settings on one node's storage: what each ``--fsync`` setting syncs
and when it acks, the syncer thread and checkpoints of ``one``, and its WAL file."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from targets.dynamo import versioning, walsync
from targets.dynamo.storage import Storage
from tests.conftest import require


def crash_image(tmp_path: Path, keys: list[str]) -> Path:
    """A store's files copied while it runs, as kill -9 leaves them: ``keys`` are committed,
    in the WAL only (few writes: no checkpoint has copied them into the database file)."""
    v = versioning.for_mode("dvv")
    live, crashed = tmp_path / "live", tmp_path / "crashed"

    async def go():
        s = Storage(str(live), v, lambda key: 0, "never")
        s.start(asyncio.get_running_loop())
        try:
            for key in keys:
                await s.run(lambda txn, key=key: txn.put(key, v.write(v.empty(), None, key, "n1", 1.0)))
            shutil.copytree(live, crashed)
        finally:
            s.stop()
    asyncio.run(go())
    return crashed


@pytest.mark.parametrize("fsync, synchronous, fsyncs", [("always", 2, 3), ("one", 0, 1), ("never", 0, 0)])
def test_storage_fsyncs_as_its_setting_and_jobs_ask(tmp_path, fsync, synchronous, fsyncs):
    """"always" fsyncs every commit (SQLite synchronous=FULL, read from SQLite inside each job),
    "never" none (OFF); "one" commits without (OFF: its syncer thread checkpoints) and fsyncs
    once for the job that asked."""
    v = versioning.for_mode("dvv")

    def put_and_look(key):
        def job(txn):
            txn.put(key, v.write(v.empty(), None, key, "n1", 1.0))
            return txn._db.execute("PRAGMA synchronous").fetchone()[0]
        return job

    async def go():
        s = Storage(str(tmp_path), v, lambda key: 0, fsync)
        s.start(asyncio.get_running_loop())
        try:
            seen = [await s.run(put_and_look("a")), await s.run(put_and_look("b"), durable=True),
                    await s.run(put_and_look("c"))]
            return seen, s.fsyncs
        finally:
            s.stop()
    assert asyncio.run(go()) == ([synchronous] * 3, fsyncs)
    assert dict(Storage(str(tmp_path), v, lambda key: 0, fsync).scan_all()).keys() == {"a", "b", "c"}


def test_fsync_one_acks_a_durable_write_after_the_wal_sync_and_never_blocks_the_others(tmp_path, monkeypatch):
    """Dynamo 6.1: while the disk holds a durable write's fdatasync, later plain writes still
    commit and are acked; the durable one is acked only once its WAL sync returned."""
    v = versioning.for_mode("dvv")
    disk = threading.Event()
    synced: list[str] = []

    def slow_fdatasync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        disk.wait(10)
        synced.append(os.path.basename(path))
    monkeypatch.setattr(walsync, "fdatasync", slow_fdatasync)

    def put(key):
        return lambda txn: txn.put(key, v.write(v.empty(), None, key, "n1", 1.0))

    async def go():
        s = Storage(str(tmp_path), v, lambda key: 0, "one")
        s.start(asyncio.get_running_loop())
        try:
            await s.run(put("plain-1"))
            durable = s.run(put("durable"), durable=True)
            await asyncio.wait_for(s.run(put("plain-2")), 5)     # not held by the pending sync
            await asyncio.sleep(0.2)
            assert not durable.done() and synced == []
            disk.set()
            await asyncio.wait_for(durable, 5)
            assert synced == ["store.sqlite3-wal"] and s.fsyncs == 1
            await s.run(put("plain-3"))
            assert synced == ["store.sqlite3-wal"]             # plain writes never sync
        finally:
            s.stop()
    asyncio.run(go())
    stored = dict(Storage(str(tmp_path), v, lambda key: 0, "one").scan_all())
    assert stored.keys() == {"plain-1", "durable", "plain-2", "plain-3"}


def test_fsync_one_checkpoints_off_the_writer_and_keeps_the_wal_bounded(tmp_path, monkeypatch):
    """Under "one" the writer never checkpoints (so never syncs): the syncer thread does, on
    its own connection, so continuous writes cannot grow the WAL without bound (fails with no
    checkpoint; the RESTART past WAL_MAX_FRAMES is the next test's)."""
    monkeypatch.setattr(walsync, "CHECKPOINT_EVERY", 0.02)
    monkeypatch.setattr(walsync, "WAL_MAX_FRAMES", 64)
    v = versioning.for_mode("dvv")
    blob = "x" * 3000                                   # about a page per row

    def put(key):
        return lambda txn: txn.put(key, v.write(v.empty(), None, blob + key, "n1", 1.0))

    async def go():
        s = Storage(str(tmp_path), v, lambda key: 0, "one")
        s.start(asyncio.get_running_loop())
        try:
            autocheckpoint = await s.run(lambda txn: txn._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
            loop = asyncio.get_running_loop()
            end, i, inflight = loop.time() + 1.5, 0, set()
            while loop.time() < end:                    # the writer never idle: 32 jobs queued
                while len(inflight) < 32:
                    inflight.add(s.run(put(f"k{i % 2000}")))
                    i += 1
                finished, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                for fut in finished:
                    fut.result()
            await asyncio.gather(*inflight)
            return autocheckpoint, i, s.checkpoints
        finally:
            s.stop()
    autocheckpoint, written, checkpoints = asyncio.run(go())
    wal = os.path.join(tmp_path, "store.sqlite3-wal")
    frames = (os.path.getsize(wal) - 32) // (4096 + 24) if os.path.exists(wal) else 0
    assert autocheckpoint == 0 and checkpoints >= 5
    assert written > 2000 and frames < 1000, (written, frames)   # a page per row: 2,000+ unbounded
    stored = dict(Storage(str(tmp_path), v, lambda key: 0, "one").scan_all())
    assert len(stored) == 2000 and v.values(stored["k7"]) == [blob + "k7"]


def test_the_syncer_blocks_the_writer_only_once_the_wal_is_past_its_bound():
    """A PASSIVE checkpoint never waits for the writer but may never empty a busy WAL; past
    WAL_MAX_FRAMES the next one is a RESTART (the next commit starts the WAL over)."""
    class Db:
        def __init__(self, frames):
            self.frames, self.seen = frames, []

        def execute(self, sql):
            self.seen.append(sql)
            return self

        def fetchone(self):
            return 0, self.frames, self.frames
    syncer = walsync.WalSyncer("/nonexistent/db", lambda outcomes: None, lambda: 0)
    growing = Db(walsync.WAL_MAX_FRAMES + 10)
    syncer._checkpoint(growing)
    syncer._checkpoint(Db(3))
    syncer._checkpoint(growing)
    assert growing.seen == ["PRAGMA wal_checkpoint(PASSIVE)", "PRAGMA wal_checkpoint(PASSIVE)"]
    syncer._checkpoint(growing)
    assert growing.seen[-1] == "PRAGMA wal_checkpoint(RESTART)" and syncer.checkpoints == 4


def test_fsync_one_preallocates_the_wal_and_keeps_the_frames_a_crash_left(tmp_path):
    """Under "one" the WAL file is extended with synced zeros to the size the WAL reaches at
    most (so the writer's appends never allocate blocks while the syncer syncs), and only
    past its end: a WAL left by a crash, extended, still replays its commits (fails if the
    zeros are written from the start of the file)."""
    v = versioning.for_mode("dvv")
    want = walsync.WAL_HEADER + (walsync.WAL_MAX_FRAMES * 5 // 4) * (walsync.WAL_FRAME_HEADER + 4096)
    crashed, fresh = crash_image(tmp_path, ["a", "b"]), tmp_path / "fresh"
    left = os.path.getsize(crashed / "store.sqlite3-wal")
    assert 0 < left < want
    walsync.preallocate_wal(str(crashed / "store.sqlite3-wal"), 4096)
    assert os.path.getsize(crashed / "store.sqlite3-wal") == want
    stored = dict(Storage(str(crashed), v, lambda key: 0, "one").scan_all())
    assert stored.keys() == {"a", "b"} and v.values(stored["b"]) == ["b"]

    Storage(str(fresh), v, lambda key: 0, "one")
    wal = fresh / "store.sqlite3-wal"
    st = os.stat(wal)
    assert st.st_size == want and st.st_blocks * 512 >= want         # written, not a sparse file
    with open(wal, "rb") as f:
        assert f.read(1 << 20).count(0) == 1 << 20
    Storage(str(fresh), v, lambda key: 0, "always")
    assert not wal.exists() or os.path.getsize(wal) < want            # the other settings do not


def test_fsync_one_start_syncs_the_checkpoint_of_a_wal_a_crash_left(tmp_path):
    """A "one" node restarted after kill -9 checkpoints the WAL it left into the database file
    and deletes it, at start: that checkpoint must sync the database file, or a durable write
    whose only synced copy was in the WAL could be lost to a crash of the machine soon after
    (watched with strace; fails with the start-up connection at synchronous=OFF)."""
    require(shutil.which("strace") is not None, "strace not installed (apt-get install strace)")
    v = versioning.for_mode("dvv")
    crashed = crash_image(tmp_path, ["k"])
    trace = tmp_path / "strace.log"
    start = ("from targets.dynamo import versioning; from targets.dynamo.storage import Storage; "
             f"Storage({str(crashed)!r}, versioning.for_mode('dvv'), lambda key: 0, 'one')")
    subprocess.run(["strace", "-f", "-y", "-e", "trace=fsync,fdatasync", "-o", str(trace),
                    sys.executable, "-c", start], check=True, capture_output=True, timeout=60)
    synced = re.findall(r"f(?:data)?sync\(\d+<([^>]+)>\)", trace.read_text())
    assert any(path.endswith("/store.sqlite3") for path in synced), synced
    assert dict(Storage(str(crashed), v, lambda key: 0, "one").scan_all()).keys() == {"k"}
