"""The etcd target: settings, argv, the client's outcome mapping, and a real 3-member cluster.

The outcome mapping (OpFailed only when a request provably had no effect) is what a history's
verdict rests on, so it is tested twice: against a fake gateway that answers exactly what etcd
3.4's JSON gateway answers (fast, no etcd needed), and against real etcd processes that lose
their quorum. Cluster tests start ``/usr/bin/etcd`` themselves on 127.0.0.21-23 and kill every
process group they started, whatever happens; they skip when etcd is missing (fail in CI).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from aiohttp import web

from harness.backends.local import pick_port

from targets.adapter import AdminError, Node, OpFailed, OpIndeterminate, TargetError
from targets.etcd import EtcdTarget
from targets.etcd.client import EtcdClient, decode_value, encode_value
from targets.etcd.target import cluster_token
from tests.conftest import require

TARGET = EtcdTarget()
PEERS = {"n1": "127.0.0.21:4000", "n2": "127.0.0.22:4000", "n3": "127.0.0.23:4000"}


def run(coro):
    return asyncio.run(coro)


# --------------------------------------------------------------------------- settings and argv

def test_defaults_summary_and_declarations():
    s = TARGET.resolve_settings({}, 3)
    assert s == {"reads": "linearizable", "heartbeat_ms": 100, "election_ms": 1000}
    assert TARGET.summary(s) == "etcd reads=linearizable"
    assert TARGET.summary({"reads": "serializable", "election_ms": 2000}) == \
        "etcd reads=serializable heartbeat=100ms election=2000ms"
    assert (TARGET.name, TARGET.capabilities, TARGET.ports_per_node) == ("etcd", frozenset({"cas"}), 2)
    assert TARGET.system_packages == ("etcd-server",) and TARGET.node_packages == ()


def test_settings_accept_integral_floats_and_digit_strings():
    s = TARGET.resolve_settings({"heartbeat_ms": 50.0, "election_ms": "250", "reads": "serializable"}, 5)
    assert s == {"reads": "serializable", "heartbeat_ms": 50, "election_ms": 250}
    assert type(s["heartbeat_ms"]) is int and type(s["election_ms"]) is int


@pytest.mark.parametrize("given, nodes, message", [
    ({"n": 3}, 3, "unknown etcd setting 'n' (known: election_ms, heartbeat_ms, reads)"),
    ({"reads": "stale"}, 3, "etcd setting reads: expected one of linearizable, serializable, got 'stale'"),
    ({"heartbeat_ms": "fast"}, 3, "etcd setting heartbeat_ms: expected an integer, got 'fast'"),
    ({"heartbeat_ms": 1.5}, 3, "etcd setting heartbeat_ms: expected an integer, got 1.5"),
    ({"election_ms": True}, 3, "etcd setting election_ms: expected an integer, got True"),
    ({"heartbeat_ms": 0}, 3, "etcd setting heartbeat_ms: must be >= 1, got 0"),
    ({"heartbeat_ms": 300}, 3, "etcd setting election_ms: must be >= 5 * heartbeat_ms (1500)"),
    ({"election_ms": 60000}, 3, "etcd setting election_ms: must be <= 50000"),
    ({}, 0, "an etcd cluster needs at least 1 node, got 0"),
])
def test_settings_errors_are_one_line(given, nodes, message):
    with pytest.raises(TargetError) as err:
        TARGET.resolve_settings(given, nodes)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_node_command_shape():
    argv = TARGET.node_command("n2", "127.0.0.22", 4000, "/data/n2", PEERS,
                               {"heartbeat_ms": 50, "election_ms": 500})
    assert argv[0] == "etcd"
    flags = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i].startswith("--")
             and "=" not in argv[i] and not argv[i + 1].startswith("--")}
    assert flags["--name"] == "n2" and flags["--data-dir"] == "/data/n2"
    assert flags["--listen-client-urls"] == flags["--advertise-client-urls"] == "http://127.0.0.22:4000"
    assert flags["--listen-peer-urls"] == flags["--initial-advertise-peer-urls"] == "http://127.0.0.22:4001"
    assert flags["--initial-cluster"] == ("n1=http://127.0.0.21:4001,n2=http://127.0.0.22:4001,"
                                          "n3=http://127.0.0.23:4001")
    assert flags["--initial-cluster-state"] == "new"
    assert flags["--initial-cluster-token"] == cluster_token(PEERS)
    assert (flags["--heartbeat-interval"], flags["--election-timeout"]) == ("50", "500")
    assert "--enable-v2=false" in argv and flags["--logger"] == "zap" and flags["--log-outputs"] == "stderr"


def test_cluster_token_depends_on_the_member_set_only():
    assert cluster_token(PEERS) == cluster_token(dict(reversed(list(PEERS.items()))))
    assert cluster_token(PEERS) != cluster_token({**PEERS, "n3": "127.0.0.23:4002"})
    assert cluster_token(PEERS) != cluster_token({k: v for k, v in PEERS.items() if k != "n3"})


@pytest.mark.parametrize("node, peers, settings, message", [
    ("n9", PEERS, {}, "etcd node 'n9' is not in peers (n1, n2, n3)"),
    ("n1", PEERS, {"w": 2}, "unknown etcd setting 'w'"),
    ("n1", {**PEERS, "n1": "127.0.0.21"}, {}, "etcd peer 'n1': expected host:port"),
])
def test_node_command_errors(node, peers, settings, message):
    with pytest.raises(TargetError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        TARGET.node_command(node, "127.0.0.21", 4000, "/d", peers, settings)


def test_check_installed_and_client_settings(monkeypatch):
    client = TARGET.client("n1", "http://127.0.0.21:4000/", timeout=2.0, settings={"reads": "serializable"})
    assert (client.node, client.url, client.timeout, client.reads) == ("n1", "http://127.0.0.21:4000", 2.0,
                                                                       "serializable")
    with pytest.raises(TargetError, match="reads"):
        TARGET.client("n1", "http://x:1", timeout=1.0, settings={"reads": "any"})
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(TargetError, match=r"^etcd is not installed: apt-get install etcd-server$"):
        TARGET.check_installed()


def test_admin_refuses_what_etcd_lacks():
    ref = Node("n1", "127.0.0.21", 4000, "")
    for call in (lambda: TARGET.admin.clock(ref), lambda: TARGET.admin.faults(ref),
                 lambda: TARGET.admin.set_faults(ref, {}), lambda: TARGET.admin.clear_faults(ref),
                 lambda: TARGET.admin.peer_probe(ref, "n2")):
        with pytest.raises(AdminError, match="^etcd has no "):
            call()


def test_values_round_trip_as_canonical_json():
    for v in (0, -7, 2**40, None, "s", [1, "a"], {"b": 1, "a": [None]}):
        assert decode_value(encode_value(v)) == v
    assert encode_value({"a": 1, "b": 2}) == encode_value({"b": 2, "a": 1})
    assert decode_value("bm90IGpzb24=") == "not json"


# --------------------------------------------------------------------------- fake gateway

@contextlib.asynccontextmanager
async def gateway(answer):
    """A local server answering every POST with ``answer(path, body)`` -> (status, json | text)."""
    seen: list[tuple[str, dict]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append((request.path, body))
        status, out = await answer(request.path, body)
        if isinstance(out, str):
            return web.Response(status=status, text=out)
        return web.json_response(out, status=status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def fixed(status, out, delay=0.0):
    async def answer(path, body):
        await asyncio.sleep(delay)
        return status, out
    return answer


def test_requests_sent_to_the_gateway():
    header = {"header": {"revision": "12"}}
    kv = {"kvs": [{"key": "aw==", "mod_revision": "11", "value": encode_value(5)}], **header}

    async def answer(path, body):
        return 200, kv if path == "/v3/kv/range" else {**header, "succeeded": path == "/v3/kv/txn"}

    async def scenario():
        async with gateway(answer) as (url, seen):
            lin, ser = EtcdClient("n1", url, timeout=2), EtcdClient("n1", url, timeout=2, reads="serializable")
            assert (await lin.get("k")).values == (5,) and (await lin.get("k")).context == "11"
            await ser.get("k")
            assert (await lin.put("k", 7)).context == "12"
            await lin.delete("k")
            assert await lin.cas("k", 5, 6) and await lin.cas("k", None, 1)
            await lin.close()
            await ser.close()
            return seen

    seen = run(scenario())
    assert seen[0] == ("/v3/kv/range", {"key": "aw=="})
    assert seen[2] == ("/v3/kv/range", {"key": "aw==", "serializable": True})
    assert seen[3] == ("/v3/kv/put", {"key": "aw==", "value": encode_value(7)})
    assert seen[4] == ("/v3/kv/deleterange", {"key": "aw=="})
    assert seen[5][1]["compare"] == [{"key": "aw==", "target": "VALUE", "result": "EQUAL", "value": encode_value(5)}]
    assert seen[5][1]["success"] == [{"request_put": {"key": "aw==", "value": encode_value(6)}}]
    assert seen[6][1]["compare"][0]["target"] == "CREATE" and seen[6][1]["compare"][0]["create_revision"] == "0"


def err(message, code):
    return {"error": message, "message": message, "code": code}


@pytest.mark.parametrize("status, out, write_outcome", [
    (503, err("etcdserver: request timed out", 14), OpIndeterminate),
    (503, err("etcdserver: leader changed", 14), OpIndeterminate),
    (503, err("etcdserver: no leader", 14), OpIndeterminate),
    (500, err("context deadline exceeded", 2), OpIndeterminate),
    (200, err("etcdserver: request timed out", 14), OpIndeterminate),
    (400, err("etcdserver: request is too large", 3), OpFailed),
    (429, err("etcdserver: too many requests", 8), OpFailed),
    (429, err("etcdserver: mvcc: database space exceeded", 8), OpFailed),
    (404, "Not Found", OpFailed),
    (502, "Bad Gateway", OpIndeterminate),
    (200, "not json", OpIndeterminate),
])
def test_outcome_mapping(status, out, write_outcome):
    async def scenario():
        async with gateway(fixed(status, out)) as (url, _):
            c = EtcdClient("n1", url, timeout=2)
            with pytest.raises(OpFailed):                 # a read that failed had no effect
                await c.get("k")
            for write in (lambda: c.put("k", 1), lambda: c.delete("k"), lambda: c.cas("k", 1, 2)):
                with pytest.raises(write_outcome) as e:
                    await write()
                assert "\n" not in str(e.value)
            await c.close()
    run(scenario())


def test_timeout_is_indeterminate_for_writes_only_and_dead_port_fails_everything():
    async def scenario():
        async with gateway(fixed(200, {"header": {}}, delay=1)) as (url, _):
            c = EtcdClient("n1", url, timeout=0.3)
            with pytest.raises(OpFailed):
                await c.get("k")
            with pytest.raises(OpIndeterminate, match="within 0.3s"):
                await c.put("k", 1)
            await c.close()
        with socket.socket() as s:                        # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        d = EtcdClient("n1", dead, timeout=1)
        for op in (lambda: d.get("k"), lambda: d.put("k", 1), lambda: d.delete("k"), lambda: d.cas("k", None, 1)):
            with pytest.raises(OpFailed, match="cannot connect"):
                await op()
        assert await d.health() is False
        await d.close()
        return int(dead.rsplit(":", 1)[1])
    port = run(scenario())
    ok, why = TARGET.admin.health(Node("n1", "127.0.0.1", port, ""), timeout=1)
    assert not ok and why


# --------------------------------------------------------------------------- real etcd

class Cluster:
    """Three etcd members started from EtcdTarget.node_command, one process group each."""

    HOSTS = {"n1": "127.0.0.21", "n2": "127.0.0.22", "n3": "127.0.0.23"}

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}
        port = pick_port(list(self.HOSTS.values()), span=TARGET.ports_per_node)
        self.refs = {n: Node(n, h, port, str(tmp / n)) for n, h in self.HOSTS.items()}

    def url(self, node: str) -> str:
        return f"http://{self.refs[node].host}:{self.refs[node].port}"

    def start(self) -> None:
        peers = {n: f"{r.host}:{r.port}" for n, r in self.refs.items()}
        for n, r in self.refs.items():
            argv = TARGET.node_command(n, r.host, r.port, str(self.tmp / n), peers, {})
            with open(self.tmp / f"{n}.log", "wb") as log:
                self.procs[n] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                 start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:                # every member up and a quorum write goes through
            if all(TARGET.admin.health(r, 1.0)[0] for r in self.refs.values()) and run(self._write_ok()):
                return
            time.sleep(0.2)
        logs = {n: (self.tmp / f"{n}.log").read_text()[-400:] for n in self.refs}
        raise AssertionError(f"etcd cluster did not come up in 30 s: {logs}")

    async def _write_ok(self) -> bool:
        c = EtcdClient("n1", self.url("n1"), timeout=2)
        try:
            await c.put("ready", 1)
            return True
        except (OpFailed, OpIndeterminate):
            return False
        finally:
            await c.close()

    def signal(self, node: str, sig: int) -> None:
        os.killpg(self.procs[node].pid, sig)
        if sig == signal.SIGKILL:
            self.procs[node].wait(timeout=10)

    def close(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)       # also ends a SIGSTOPped member
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path):
    require(shutil.which("etcd") is not None, "needs etcd: apt-get install -y etcd-server")
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.close()


@pytest.mark.cluster
def test_round_trip_context_and_cas(cluster):
    async def scenario():
        c = TARGET.client("n2", cluster.url("n2"), timeout=3, settings=TARGET.resolve_settings({}, 3))
        try:
            assert (await c.get("r")).found is False
            w = await c.put("r", 41)
            assert w.context.isdigit()
            got = await c.get("r")
            assert got.values == (41,) and got.found and got.context == w.context
            await c.put("nil", None)
            assert (await c.get("nil")).values == (None,)
            assert await c.cas("r", 41, 42) is True
            assert await c.cas("r", 41, 43) is False
            assert await c.cas("fresh", None, 1) is True and await c.cas("fresh", None, 2) is False
            assert (await c.get("r")).values == (42,) and int((await c.get("r")).context) > int(w.context)
            await c.delete("r")
            await c.delete("r")
            assert (await c.get("r")).found is False
            assert await c.health() and await c.peers_down() == [] and await c.pending_handoffs() == 0
        finally:
            await c.close()
    run(scenario())


@pytest.mark.cluster
def test_quorum_loss_reads_and_writes(cluster):
    async def scenario():
        lin = EtcdClient("n1", cluster.url("n1"), timeout=2)
        ser = EtcdClient("n1", cluster.url("n1"), timeout=2, reads="serializable")
        dead = EtcdClient("n2", cluster.url("n2"), timeout=2)
        try:
            await lin.put("k", 1)
            assert (await ser.get("k")).values == (1,)
            cluster.signal("n2", signal.SIGKILL)
            cluster.signal("n3", signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(OpFailed):                 # linearizable: needs a quorum, none left
                await lin.get("k")
            assert time.monotonic() - started < 3
            assert (await ser.get("k")).values == (1,)    # serializable: the member's local state
            with pytest.raises(OpIndeterminate):          # the client gave up: may commit later
                await lin.put("k", 2)
            with pytest.raises(OpIndeterminate, match="HTTP 5"):  # etcd's own answer (after ~7 s)
                await lin.put("k", 3, timeout=15)
            with pytest.raises(OpFailed, match="cannot connect"):
                await dead.put("k", 4)
            assert TARGET.admin.health(cluster.refs["n1"], 1.0)[0]   # no leader, still serving: up
        finally:
            for c in (lin, ser, dead):
                await c.close()
    run(scenario())


@pytest.mark.cluster
def test_admin_health_follows_pause_and_kill(cluster):
    n1, n3 = cluster.refs["n1"], cluster.refs["n3"]
    assert TARGET.admin.health(n1, 1.0) == (True, "")
    cluster.signal("n1", signal.SIGSTOP)
    try:
        ok, why = TARGET.admin.health(n1, 0.5)
        assert not ok and "0.5s" in why
    finally:
        cluster.signal("n1", signal.SIGCONT)
    deadline = time.monotonic() + 10
    while not TARGET.admin.health(n1, 1.0)[0]:
        assert time.monotonic() < deadline, "n1 did not answer again after SIGCONT"
        time.sleep(0.1)
    cluster.signal("n3", signal.SIGKILL)
    ok, why = TARGET.admin.health(n3, 1.0)
    assert not ok and "refused" in why.lower()


# --------------------------------------------------------------------------- end to end, as a user runs it

def run_on_etcd(tmp_path: Path, *args: str, exit_code: int = 0) -> tuple[dict, list[dict]]:
    """``dynharness run --target etcd ARGS`` that must exit ``exit_code``: (results.json, the history's ops)."""
    require(shutil.which("etcd") is not None, "etcd is not installed (apt-get install etcd-server)")
    import json
    import sys

    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--no-display", "--histories", str(tmp_path),
                           "--name", "etcd", "--target", "etcd", "--rate", "100", "--recovery", "2", *args],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == exit_code, proc.stderr[-2000:]
    run_dir = next((tmp_path / "etcd").glob("2*"))
    ops = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return json.loads((run_dir / "results.json").read_text()), ops


@pytest.mark.cluster
def test_dynharness_run_on_etcd_with_kills_and_pauses_is_valid_and_probed(tmp_path: Path) -> None:
    """The harness drives a real etcd cluster through the target plug point: every kill and pause
    is probed as taken effect, and linearizable reads keep the register histories linearizable."""
    results, ops = run_on_etcd(tmp_path, "--workload", "register", "--keys", "3", "--nemesis", "crash,pause",
                               "--nemesis-interval", "4", "--set", "nemesis.start_at=2", "--duration", "16",
                               "--seed", "5")
    assert results["checkers"]["linearizable"]["verdict"] == "valid"
    done = [op for op in ops if op["process"] == "nemesis" and op["type"] == "info" and op["f"] in ("kill", "pause")]
    assert done, "no kill or pause ran"
    assert all((op.get("probe") or {}).get("ok") for op in done), done


@pytest.mark.cluster
def test_cas_register_on_etcd_transactions_is_linearizable_through_kills(tmp_path: Path) -> None:
    """The cas-register workload drives etcd transactions: some cas succeed, some find another value
    (definite fails the store answered), and the cas-register model accepts the history."""
    results, ops = run_on_etcd(tmp_path, "--workload", "cas-register", "--keys", "2", "--nemesis", "crash",
                               "--nemesis-interval", "3", "--set", "nemesis.start_at=2", "--duration", "9",
                               "--seed", "7")
    lin = results["checkers"]["linearizable"]
    assert lin["verdict"] == "valid" and lin["details"]["model"] == "cas-register"
    cas = [op for op in ops if op["f"] == "cas" and op["type"] != "invoke"]
    assert any(op["type"] == "ok" for op in cas) and any(op.get("compared") for op in cas)
    assert results["checkers"]["perf"]["counts"]["availability"] > 0.5  # a failed compare is served


@pytest.mark.cluster
@pytest.mark.parametrize("reads, exit_code, verdict", [("linearizable", 0, "valid"), ("serializable", 1, "invalid")])
def test_local_etcd_members_are_partitioned_by_their_cgroups(tmp_path: Path, reads: str, exit_code: int,
                                                             verdict: str) -> None:
    """etcd dials its peers from 127.0.0.1, so address rules cannot cut local members apart; with
    each member in a cgroup of its own the rules match the sender's processes, the probe confirms
    the cut, and the verdicts are those of Docker: linearizable reads stay linearizable, serializable
    reads in the minority go stale."""
    from harness.backends import node_cgroups

    require(node_cgroups.cgroup2_root() is not None and os.geteuid() == 0, "needs root and a cgroup2 hierarchy")
    results, ops = run_on_etcd(tmp_path, "--workload", "register", "--keys", "3", "--nemesis", "partition",
                               "--partition", "split:n1,n2|n3,n4,n5", "--set", "nemesis.start_at=3",
                               "--nemesis-interval", "8", "--duration", "20", "--seed", "1",
                               "--set", f"target.reads={reads}", exit_code=exit_code)
    started = [op for op in ops if op["process"] == "nemesis" and op["type"] == "info" and op["f"] == "start-partition"]
    assert started and all(op["probe"]["ok"] and op["mechanism"] == "iptables" for op in started), started
    assert results["checkers"]["linearizable"]["verdict"] == verdict
    run_dir = next((tmp_path / "etcd").glob("2*"))
    import json

    state = json.loads((run_dir / "cluster.json").read_text())
    assert state["stopped"] and state["cgroups"], "the members ran in cgroups of their own"
    chain = next(iter(state["cgroups"].values())).split("/")[1]     # dynharness/<chain>/<node>
    listed = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    assert chain not in listed, "the run's chain and its hooks are gone"
    assert not (node_cgroups.cgroup2_root() / node_cgroups.PARENT / chain).exists(), "the run's cgroups are gone"
