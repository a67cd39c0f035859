"""Unit tests of the node's pure parts: config/CLI validation, target argv, replica planning, faults."""
from __future__ import annotations

import subprocess
import sys

import pytest

from harness.errors import UserError
from targets.dynamo import config
from targets.dynamo.coordinator import (
    QuorumFailed,
    Replica,
    Tally,
    next_fallback,
    plan_replicas,
)
from targets.dynamo.target import DEFAULT_SETTINGS, DynamoTarget
from targets.dynamo.transport import Faults

PEERS = "n1=127.0.0.11:7000,n2=127.0.0.12:7000,n3=127.0.0.13:7000"


def test_config_from_flags_and_defaults():
    cfg = config.load(["--name", "n2", "--data", "/tmp/x", "--peers", PEERS, "--r", "1", "--mode", "dvv"])
    assert (cfg.host, cfg.port) == ("127.0.0.12", 7000)
    assert cfg.r == 1 and cfg.w == 2 and cfg.mode == "dvv" and cfg.request_timeout == 1.0
    assert cfg.others == ["n1", "n3"]


def test_config_file_flags_win(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text('name = "n1"\ndata = "/tmp/d"\nw = 3\nmode = "lww"\n[peers]\nn1 = "127.0.0.11:7000"\n'
                 'n2 = "127.0.0.12:7000"\nn3 = "127.0.0.13:7000"\n')
    cfg = config.load(["--config", str(f), "--mode", "vclock"])
    assert cfg.w == 3 and cfg.mode == "vclock" and list(cfg.peers) == ["n1", "n2", "n3"]


@pytest.mark.parametrize("argv, message", [
    (["--name", "n9", "--data", "d", "--peers", PEERS], "not in --peers"),
    (["--name", "n1", "--data", "d", "--peers", PEERS, "--r", "4"], "--r must be between 1 and n=3"),
    (["--name", "n1", "--data", "d", "--peers", PEERS, "--n", "4"], "--n must be between"),
    (["--name", "n1", "--data", "d", "--peers", PEERS, "--mode", "crdt"], "--mode must be one of"),
    (["--name", "n1", "--data", "d", "--peers", PEERS, "--w", "two"], "expected int"),
    (["--name", "n1", "--data", "d", "--peers", "n1=nohost"], "HOST:PORT"),
    (["--name", "n1", "--peers", PEERS], "--data is required"),
    (["--name", "n1", "--data", "d", "--peers", PEERS, "--bogus", "1"], "unrecognized"),
])
def test_config_rejects_bad_input(argv, message):
    with pytest.raises(UserError, match=message):
        config.load(argv)


def test_cli_bad_input_is_one_line_and_nonzero():
    proc = subprocess.run([sys.executable, "-m", "targets.dynamo", "--name", "n1", "--data", "/tmp/x",
                           "--peers", PEERS, "--w", "9"], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "--w must be between" in proc.stderr


def test_node_command_builds_flags_and_rejects_unknown_settings():
    peers = {"n1": "127.0.0.11:7000", "n2": "127.0.0.12:7000"}
    argv = DynamoTarget().node_command("n1", "127.0.0.11", 7000, "/d", peers,
                                       {"n": 2, "w": 1, "request_timeout": 0.5, "mode": "dvv"}, python="py")
    assert argv[:3] == ["py", "-m", "targets.dynamo"]
    assert argv[argv.index("--peers") + 1] == "n1=127.0.0.11:7000,n2=127.0.0.12:7000"
    assert argv[argv.index("--request-timeout") + 1] == "0.5" and argv[argv.index("--mode") + 1] == "dvv"
    cfg = config.load(argv[3:])          # what the node will parse is valid
    assert cfg.n == 2 and cfg.w == 1
    with pytest.raises(ValueError, match="unknown dynamo setting"):
        DynamoTarget().node_command("n1", "h", 1, "/d", peers, {"quorum": 2})
    assert set(DEFAULT_SETTINGS) == {"n", "r", "w", "pr", "pw", "mode", "fsync", "partitions", "request_timeout",
                                     "gossip_interval", "ae_interval", "tombstone_grace", "vclock_max",
                                     "sibling_warn", "sibling_max", "event_loop"}


def test_plan_replaces_down_primaries_with_hinted_fallbacks():
    walk = ["a", "b", "c", "d", "e"]
    up = {"a", "c", "d", "e"}
    plan = plan_replicas(walk, 3, up.__contains__)
    assert plan == [Replica("a"), Replica("d", "b"), Replica("c")]
    assert plan_replicas(walk, 3, lambda n: True) == [Replica("a"), Replica("b"), Replica("c")]
    # no healthy stand-in left: the down primary is still tried
    assert plan_replicas(walk, 3, {"a"}.__contains__) == [Replica("a"), Replica("b"), Replica("c")]
    # a fallback that fails mid-request is replaced by the next one, still hinted for the primary
    assert next_fallback(walk, 3, {"a", "c", "d"}, Replica("d", "b"), up.__contains__) == Replica("e", "b")
    assert next_fallback(walk, 3, {"a", "c", "d", "e"}, Replica("c"), up.__contains__) is None


def test_tally_strict_quorum_counts_only_primaries():
    t = Tally(need=2, need_primary=2)
    t.success(Replica("a"))
    t.success(Replica("d", "b"))
    assert t.ok == 2 and not t.met          # sloppy W met, strict PW not
    t.success(Replica("c"))
    assert t.met
    body = QuorumFailed("write", 2, 3, 1).to_json()
    assert body["needed"] == 2 and body["replied"] == 3 and body["stored"] == 1 and "error" in body


def test_faults_parse_and_apply():
    members = {"n1": 1, "n2": 1, "n3": 1}
    f = Faults.parse({"drop": ["n2"], "delay_ms": 10, "peers": ["n3"]}, members)
    assert f.drops("n2") and not f.drops("n3")
    assert f.delay_for("n3") == pytest.approx(0.01) and f.delay_for("n1") == 0
    for body in ({"drop": ["n9"]}, {"loss": 2}, {"bogus": 1}, {"drop": "n2"}):
        with pytest.raises(ValueError):
            Faults.parse(body, members)


def test_storage_merges_durably_keeps_hints_by_seq_and_reloads(tmp_path):
    import asyncio

    from targets.dynamo import versioning
    from targets.dynamo.storage import Storage

    v = versioning.for_mode("dvv")
    a = v.write(v.empty(), None, "a", "n1", 1.0)
    b = v.write(v.empty(), None, "b", "n2", 2.0)

    async def first():
        s = Storage(str(tmp_path), v, lambda key: 0, "always")
        seen = []
        s.on_change = lambda changes: seen.extend(c.key for c in changes)
        s.start(asyncio.get_running_loop())
        try:
            await s.merge_in("k", a, hint_for="n3")
            await s.merge_in("k", b, hint_for="n3")             # re-queued: seq 2
            hints = await s.hints()
            assert hints == [("n3", "k", 2)]
            assert not await s.run(lambda txn: txn.drop_hint("n3", "k", 1))   # stale seq: kept
            assert sorted(v.values(await s.get("k"))) == ["a", "b"]
            assert await s.get("absent") is None
            assert seen == ["k", "k"]
        finally:
            s.stop()

    async def second():
        s = Storage(str(tmp_path), v, lambda key: 0, "always")
        assert [k for k, _ in s.scan_all()] == ["k"]
        s.start(asyncio.get_running_loop())
        try:
            assert sorted(v.values(await s.get("k"))) == ["a", "b"]   # from the reloaded cache
            assert await s.run(lambda txn: txn.drop_hint("n3", "k", 2))
            assert await s.hints() == []
        finally:
            s.stop()
    asyncio.run(first())
    asyncio.run(second())


def test_uptime_clock_ignores_faked_monotonic_jumps(monkeypatch):
    import time as real_time

    from targets.dynamo import eventloop
    clock = eventloop.UptimeClock()
    start = clock.now()
    fake = [real_time.monotonic()]
    monkeypatch.setattr(eventloop.time, "monotonic", lambda: fake[0])
    fake[0] -= 300                       # the faked monotonic clock jumps back 5 minutes
    back = clock.now()
    fake[0] += 600                       # ... then 5 minutes forward
    forward = clock.now()
    assert start <= back <= forward < start + 5


def test_storage_batch_keeps_each_jobs_outcome_order_and_durability(tmp_path):
    """Jobs queued together run as one batch: row upserts are written at once, a read that
    misses the cache opens the transaction first, a job failing before anything reached SQLite
    drops only its rows, one failing after rolls the batch back and it reruns per job."""
    import asyncio
    import time

    from targets.dynamo import versioning
    from targets.dynamo.storage import Storage

    v = versioning.for_mode("dvv")

    def obj(value):
        return v.write(v.empty(), None, value, "n1", 1.0)

    def put(key, value):
        def job(txn):
            txn.put(key, obj(value))
            return value
        return job

    def fails_before_sql(txn):
        txn.put("f1", obj("x"))
        raise ValueError("refused")

    def fails_after_sql(txn):
        txn.put("f2", obj("y"))
        assert not txn.hinted_elsewhere("k1")        # a statement: queued rows go in first
        raise ValueError("late")

    def many(txn):
        for i in range(700):                          # more rows than one upsert statement takes
            txn.put(f"m{i}", obj(i))

    async def batch(s, *jobs):
        gate = s.run(lambda txn: time.sleep(0.3))    # the jobs queue up behind it: one batch
        await asyncio.sleep(0.05)
        results = await asyncio.gather(*(s.run(job) for job in jobs), return_exceptions=True)
        await gate
        return results

    async def first():
        s = Storage(str(tmp_path), v, lambda key: 0, "always")
        s.start(asyncio.get_running_loop())
        try:
            # upserts only: a failure before anything reached SQLite drops just that job's rows
            one, refused, read, _, two = await batch(
                s, put("k1", "one"), fails_before_sql, lambda txn: v.values(txn.get("k1")), many,
                put("k2", "two"))
            assert (one, read, two, str(refused)) == ("one", ["one"], "two", "refused")
            # a failure after the transaction opened: rolled back, rerun with a savepoint per job
            three, late, four = await batch(s, put("k3", "three"), fails_after_sql, put("k4", "four"))
            assert (three, str(late), four) == ("three", "late", "four")
            assert s.commits == 4                          # two gates, two batches
        finally:
            s.stop()

    async def second():
        s = Storage(str(tmp_path), v, lambda key: 0, "always")
        stored = dict(s.scan_all())
        assert set(stored) == {"k1", "k2", "k3", "k4"} | {f"m{i}" for i in range(700)}   # no f1, f2
        assert v.values(stored["k3"]) == ["three"] and v.values(stored["m699"]) == [699]
    asyncio.run(first())
    asyncio.run(second())


@pytest.mark.parametrize("fsync, synchronous, fsyncs", [("always", 2, 3), ("one", 0, 1), ("never", 0, 0)])
def test_storage_fsyncs_as_its_setting_and_jobs_ask(tmp_path, fsync, synchronous, fsyncs):
    """"always" fsyncs every commit (SQLite synchronous=FULL, read from SQLite inside each job),
    "never" none (OFF); "one" commits without (OFF: its syncer thread checkpoints) and fsyncs
    once for the job that asked."""
    import asyncio

    from targets.dynamo import versioning
    from targets.dynamo.storage import Storage

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
    import asyncio
    import os
    import threading

    from targets.dynamo import versioning, walsync
    from targets.dynamo.storage import Storage

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
    import asyncio
    import os

    from targets.dynamo import versioning, walsync
    from targets.dynamo.storage import Storage

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
    from targets.dynamo import walsync

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
    import asyncio
    import os
    import shutil

    from targets.dynamo import versioning, walsync
    from targets.dynamo.storage import Storage

    v = versioning.for_mode("dvv")
    want = walsync.WAL_HEADER + (walsync.WAL_MAX_FRAMES * 5 // 4) * (walsync.WAL_FRAME_HEADER + 4096)
    crashed, fresh = tmp_path / "crashed", tmp_path / "fresh"

    async def crash_image():
        """A store's files copied while it runs: the commits are in the WAL only."""
        s = Storage(str(tmp_path / "live"), v, lambda key: 0, "never")
        s.start(asyncio.get_running_loop())
        try:
            for key in ("a", "b"):
                await s.run(lambda txn, key=key: txn.put(key, v.write(v.empty(), None, key, "n1", 1.0)))
            shutil.copytree(tmp_path / "live", crashed)
        finally:
            s.stop()
    asyncio.run(crash_image())
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
    import asyncio
    import re
    import shutil

    from targets.dynamo import versioning
    from tests.conftest import require

    require(shutil.which("strace") is not None, "strace not installed (apt-get install strace)")
    from targets.dynamo.storage import Storage

    v = versioning.for_mode("dvv")
    crashed = tmp_path / "crashed"

    async def crash_image():
        s = Storage(str(tmp_path / "live"), v, lambda key: 0, "never")
        s.start(asyncio.get_running_loop())
        try:
            await s.run(lambda txn: txn.put("k", v.write(v.empty(), None, "k", "n1", 1.0)))
            shutil.copytree(tmp_path / "live", crashed)
        finally:
            s.stop()
    asyncio.run(crash_image())
    trace = tmp_path / "strace.log"
    start = ("from targets.dynamo import versioning; from targets.dynamo.storage import Storage; "
             f"Storage({str(crashed)!r}, versioning.for_mode('dvv'), lambda key: 0, 'one')")
    subprocess.run(["strace", "-f", "-y", "-e", "trace=fsync,fdatasync", "-o", str(trace),
                    sys.executable, "-c", start], check=True, capture_output=True, timeout=60)
    synced = re.findall(r"f(?:data)?sync\(\d+<([^>]+)>\)", trace.read_text())
    assert any(path.endswith("/store.sqlite3") for path in synced), synced
    assert dict(Storage(str(crashed), v, lambda key: 0, "one").scan_all()).keys() == {"k"}


def test_the_durable_write_goes_to_the_first_other_replica_or_whoever_stands_in_for_it():
    from targets.dynamo.coordinator import durable_replica, stands_for
    me, n2, n3 = Replica("n1"), Replica("n2"), Replica("n3")
    chosen = durable_replica(me, [n2, n3])
    assert chosen == n2 and stands_for(n2, chosen) and not stands_for(n3, chosen)
    assert stands_for(Replica("n4", "n2"), chosen) and not stands_for(Replica("n5", "n3"), chosen)
    fallback = durable_replica(me, [Replica("n4", "n2"), n3])          # the first other is itself a stand-in
    assert stands_for(Replica("n5", "n2"), fallback) and not stands_for(n3, fallback)
    assert durable_replica(me, []) == me                              # N=1: the coordinator's own write
