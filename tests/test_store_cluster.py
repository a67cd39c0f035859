"""Integration tests on real local clusters: quorum reads/writes, bad input, quorum failure, durability."""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from targets.adapter import OpFailed, OpIndeterminate
from targets.dynamo.client import DynamoClient
from targets.dynamo.launcher import local_cluster

pytestmark = pytest.mark.cluster


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict]:
    """A plain HTTP request (to test raw bad input the client would never send)."""
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with local_cluster(3, tmp_path_factory.mktemp("c3"), mode="vclock", ae_interval=30,
                       request_timeout=5.0) as c:
        yield c


def test_write_then_read_everywhere_and_context_chain(cluster):
    async def go():
        clients = [DynamoClient(n.name, n.url, 5) for n in cluster.nodes.values()]
        try:
            w = await clients[0].put("k1", {"a": 1})
            assert w.context
            for c in clients:
                r = await c.get("k1", r=3)
                assert r.found and r.values == ({"a": 1},)
            w2 = await clients[1].put("k1", 2, w.context)     # supersedes what it saw
            r = await clients[2].get("k1")
            assert r.values == (2,)
            await clients[2].delete("k1", r.context)
            r = await clients[0].get("k1", r=3)
            assert not r.found and r.values == () and r.context      # tombstone keeps a context
            missing = await clients[0].get("never-written")
            assert not missing.found and missing.context is None
            assert await clients[0].health() and abs(await clients[0].clock() - __import__("time").time()) < 5
            assert w2.context != w.context
        finally:
            for c in clients:
                await c.close()
    run(go())


@pytest.mark.parametrize("method, path, body, message", [
    ("PUT", "/kv/k?q=1", b'{"value": 1}', "unknown query parameter"),
    ("PUT", "/kv/k?w=4", b'{"value": 1}', "w must be between"),
    ("GET", "/kv/k?r=0", None, "r must be between"),
    ("PUT", "/kv/k", b'{"value": 1', "malformed JSON"),
    ("PUT", "/kv/k", b'[1]', "JSON object"),
    ("PUT", "/kv/k", b'{"val": 1}', "unknown body field"),
    ("PUT", "/kv/k", b'{"value": 1, "context": "garbage!"}', "malformed context"),
    ("PUT", "/kv/k", b'{"value": 1, "context": 7}', "context must be a string"),
    ("PUT", "/kv/" + "x" * 513, b'{"value": 1}', "key must be"),
    ("PUT", "/kv/k", b'{"value": "' + b"x" * (1 << 20) + b'"}', "value is"),
    ("DELETE", "/kv/k", b'{"context": "AAAA.BBBB"}', "malformed context"),
])
def test_bad_input_is_400_one_line_and_stores_nothing(cluster, method, path, body, message):
    url = cluster.nodes["n1"].url
    status, data = http(method, url + path, body)
    assert status == 400, data
    assert message in data["error"] and "\n" not in data["error"]
    for node in cluster.nodes.values():
        status, _ = http("GET", node.url + "/admin/local/k")
        assert status == 404


def test_odd_keys_round_trip_and_unknown_paths_are_json(cluster):
    async def go():
        client = DynamoClient("n2", cluster.nodes["n2"].url, 5)
        try:
            for key in ("a/b", "ключ ✓", "sp ace?&=#", "x" * 512):
                await client.put(key, key)
                assert (await client.get(key, r=3)).values == (key,)
        finally:
            await client.close()
    run(go())
    status, body = http("GET", cluster.nodes["n1"].url + "/nope")
    assert status == 404 and "error" in body
    status, body = http("POST", cluster.nodes["n1"].url + "/kv/k", b"{}")
    assert status == 405 and "error" in body


def test_quorum_failure_is_503_with_counts_and_client_mapping(tmp_path):
    with local_cluster(3, tmp_path, request_timeout=0.5) as c:
        c.kill("n2")
        c.kill("n3")
        status, data = http("PUT", c.nodes["n1"].url + "/kv/q", b'{"value": 1}')
        assert status == 503 and data["needed"] == 2 and data["stored"] == 1 and data["replied"] >= 1
        status, data = http("GET", c.nodes["n1"].url + "/kv/q?r=2")
        assert status == 503 and data["needed"] == 2 and data["replied"] == 1 and "stored" not in data
        status, data = http("GET", c.nodes["n1"].url + "/kv/q?r=1")
        assert status == 200 and data["siblings"] == [1]   # the failed write still landed locally

        async def go():
            client = DynamoClient("n1", c.nodes["n1"].url, 5)
            try:
                with pytest.raises(OpIndeterminate, match="stored=1"):
                    await client.put("q", 2)                 # stored on n1 only: maybe
                with pytest.raises(OpFailed, match="503"):
                    await client.get("q")
                with pytest.raises(OpFailed, match="400"):
                    await client.put("q", 3, w=7)
                dead = DynamoClient("n2", c.nodes["n2"].url, 1)
                with pytest.raises(OpIndeterminate):
                    await dead.put("q", 4)                    # connection refused: info
                assert not await dead.health()
                await dead.close()
            finally:
                await client.close()
        run(go())


def fsyncs(c) -> dict[str, int]:
    return {name: http("GET", node.url + "/admin/stats")[1]["storage"]["fsyncs"]
            for name, node in c.nodes.items()}


@pytest.mark.parametrize("fsync", ["always", "one"])
def test_acked_write_survives_kill_9_of_every_replica(tmp_path, fsync):
    with local_cluster(3, tmp_path, fsync=fsync, ae_interval=60, request_timeout=5.0) as c:
        if fsync == "one":
            # Dynamo 6.1: a write's durable write goes to one replica, never the coordinator's own
            before = fsyncs(c)
            assert http("PUT", c.nodes["n1"].url + "/kv/one?w=3", json.dumps({"value": 1}).encode())[0] == 200
            grown = {name: n - before[name] for name, n in fsyncs(c).items()}
            assert grown["n1"] == 0 and sorted(grown.values()) == [0, 0, 1], grown
        async def write():
            clients = [DynamoClient(n.name, n.url, 5) for n in c.nodes.values()]
            try:
                acked = []
                for i in range(60):
                    try:
                        await clients[i % 3].put(f"d{i}", i)
                    except OpIndeterminate:       # a load spike: not acked, so not checked
                        continue
                    acked.append(i)
                return acked
            finally:
                for cl in clients:
                    await cl.close()
        acked = run(write())
        assert len(acked) >= 30
        for name in list(c.nodes):
            c.kill(name)                                     # SIGKILL right after the acks
        for name in c.nodes:
            c.start(name, wait=False)
        c.start_all()

        async def read():
            client = DynamoClient("n2", c.nodes["n2"].url, 5)
            try:
                return [(await client.get(f"d{i}", r=2)).values for i in acked]
            finally:
                await client.close()
        assert run(read()) == [(i,) for i in acked]


def test_launcher_cli_starts_a_cluster_and_ctrl_c_stops_it(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "targets.dynamo.launcher", "--nodes", "2", "--dir", str(tmp_path),
                             "--port", "0", "--mode", "dvv"], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[2].startswith("cluster up"), lines
        url = lines[0].split()[1]
        stats = http("GET", url + "/admin/stats")[1]
        assert stats["settings"]["mode"] == "dvv"
        assert stats["event_loop"] == "uvloop"          # no libfaketime here: the fast loop
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        with pytest.raises(OSError):
            http("GET", url + "/admin/health")                # the nodes are gone too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_launcher_cli_bad_input_is_one_line(tmp_path):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "targets.dynamo.launcher", "--nodes", "2", "--dir", str(tmp_path),
                           "--mode", "nope"], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode != 0 and proc.stderr.strip().count("\n") == 0 and "--mode" in proc.stderr


def tcp_connections(pid: int) -> list[tuple[str, int, str, int]]:
    """(local ip, local port, remote ip, remote port) of the process's IPv4 TCP sockets (/proc)."""
    import os
    import socket
    import struct
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])

    def addr(text: str) -> tuple[str, int]:
        ip, port = text.split(":")
        return socket.inet_ntoa(struct.pack("<I", int(ip, 16))), int(port, 16)
    conns = []
    with open("/proc/net/tcp") as fh:
        for line in list(fh)[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] == "01":        # ESTABLISHED
                conns.append((*addr(fields[1]), *addr(fields[2])))
    return conns


def test_peer_connections_leave_from_the_nodes_own_address(cluster):
    """iptables -s A -d B rules on shared loopback only work if A's calls come from A's address."""
    http("PUT", cluster.nodes["n1"].url + "/kv/src", b'{"value": 1}')
    ports = {n.port for n in cluster.nodes.values()}
    seen = 0
    for name, proc in cluster.procs.items():
        for src, sport, dst, dport in tcp_connections(proc.pid):
            if sport in ports or dport not in ports:
                continue                                   # accepted (incoming) or not to a peer
            assert src == cluster.nodes[name].host, (name, src, dst)
            seen += 1
    assert seen >= 2


def test_a_digest_read_ships_the_object_only_when_the_replica_holds_a_different_state(cluster):
    from targets.dynamo.versioning import for_mode
    v = for_mode("vclock")
    url = cluster.nodes["n2"].url + "/internal/get"
    run(_put(cluster, "dig", {"x": 1}))
    status, plain = http("POST", url, json.dumps({"key": "dig"}).encode())
    assert status == 200 and v.values(v.from_text(plain["state"])) == [{"x": 1}]
    digest = v.digest(v.from_text(plain["state"])).hex()
    # the caller's copy has the same state: only {"same": true} comes back
    assert http("POST", url, json.dumps({"key": "dig", "digest": digest}).encode()) == (200, {"same": True})
    # a different (e.g. stale) copy: the replica's object comes back, as without a digest
    assert http("POST", url, json.dumps({"key": "dig", "digest": "00" * 32}).encode()) == (200, plain)
    assert http("POST", url, json.dumps({"key": "absent", "digest": digest}).encode()) == (200, {"state": None})


async def _put(cluster, key, value):
    client = DynamoClient("n1", cluster.nodes["n1"].url, 5)
    try:
        await client.put(key, value, w=3)
    finally:
        await client.close()


def test_a_value_with_a_lone_surrogate_is_stored_replicated_and_read_back(cluster):
    """JSON allows "\\ud800"; the node's canonical state text is ASCII, so storing, hashing and
    replicating it work like any other value."""
    url = cluster.nodes["n1"].url
    assert http("PUT", url + "/kv/surrogate?w=3", b'{"value": "a\\ud800b"}')[0] == 200
    for node in cluster.nodes.values():
        status, body = http("GET", node.url + "/kv/surrogate?r=3")
        assert status == 200 and body["siblings"] == ["a\ud800b"]


def peer_call(cluster, node: str, requests: list[tuple[str, object]], sender: str = "n2") -> dict:
    """Send framed peer requests to ``node`` as ``sender`` on one connection; {id: (status, body)}."""
    import socket

    from targets.dynamo.transport import MAGIC, FrameReader, encode_frame
    host, port = cluster.nodes[node].url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(MAGIC + encode_frame({"from": sender})
                     + b"".join(encode_frame([i, path, body]) for i, (path, body) in enumerate(requests)))
        reader, replies = FrameReader(), {}
        while len(replies) < len(requests):
            for rid, status, body in reader.feed(sock.recv(65536)):
                replies[rid] = (status, body)
        return replies


def test_replica_puts_over_the_peer_protocol_validate_before_storing(cluster):
    from targets.dynamo.versioning import for_mode
    v = for_mode("vclock")
    good = v.encode(v.write(v.empty(), None, "via-peer", "n2", 1.7e9))[0]
    replies = peer_call(cluster, "n1", [
        ("/internal/put", {"key": "peer-put", "state": good}),
        ("/internal/put", {"key": "peer-bad", "state": '{"mode":"vclock","removed":[],"siblings":"nope"}'}),
        ("/internal/put", {"key": 7, "state": good}),
        ("/internal/put", {"key": "peer-bad2", "state": good, "hint_for": "nobody"}),
        ("/internal/put", {"key": "peer-bad3", "state": v.to_json(v.empty())}),
        ("/internal/put", {"key": "peer-bad4", "state": good[:-1]}),
    ])
    assert replies[0] == (200, {"ok": True})
    for rid in (1, 2, 3, 4, 5):
        assert replies[rid][0] == 400 and "bad internal request" in replies[rid][1]["error"]
    assert http("GET", cluster.nodes["n1"].url + "/admin/local/peer-put")[1]["siblings"] == ["via-peer"]
    for key in ("peer-bad", "peer-bad2", "peer-bad3", "peer-bad4"):
        assert http("GET", cluster.nodes["n1"].url + f"/admin/local/{key}")[0] == 404
