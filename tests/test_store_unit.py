"""Unit tests of the node's pure parts: config/CLI validation, target argv, replica planning, faults."""
from __future__ import annotations

import subprocess
import sys

import pytest

from targets.adapter import TargetError as UserError
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
    assert cfg.fsync == "one"   # Dynamo's durable write (section 6.1) is the default
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
    with pytest.raises(UserError, match="unknown dynamo setting"):
        DynamoTarget().node_command("n1", "h", 1, "/d", peers, {"quorum": 2})
    assert set(DEFAULT_SETTINGS) == {"n", "r", "w", "pr", "pw", "mode", "fsync", "partitions", "request_timeout",
                                     "gossip_interval", "ae_interval", "tombstone_grace", "vclock_max",
                                     "sibling_warn", "sibling_max", "event_loop", "bug"}


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


def test_the_durable_write_goes_to_the_first_other_replica_or_whoever_stands_in_for_it():
    from targets.dynamo.coordinator import durable_replica, stands_for
    me, n2, n3 = Replica("n1"), Replica("n2"), Replica("n3")
    chosen = durable_replica(me, [n2, n3])
    assert chosen == n2 and stands_for(n2, chosen) and not stands_for(n3, chosen)
    assert stands_for(Replica("n4", "n2"), chosen) and not stands_for(Replica("n5", "n3"), chosen)
    fallback = durable_replica(me, [Replica("n4", "n2"), n3])          # the first other is itself a stand-in
    assert stands_for(Replica("n5", "n2"), fallback) and not stands_for(n3, fallback)
    assert durable_replica(me, []) == me                              # N=1: the coordinator's own write
