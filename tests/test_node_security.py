"""A node with the cluster's secret: who may call what, malformed input, and slow connections.

Real node processes on loopback, raw sockets. Checked: every admin endpoint (health, members and
hints too) and the internal ones answer 401 without the secret and 403 with a wrong one, the
harness's workload client presents it, the peer handshake is refused without it, the client API
stays open; a hypothesis fuzz of the HTTP API (malformed bodies, NaN, deep nesting,
huge numbers, huge and many headers) never gets a 5xx; a slow-loris connection is closed once
its headers are late by the documented limit.
"""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from targets.adapter import OpIndeterminate
from targets.dynamo import httpserver
from targets.dynamo.admin import DynamoAdmin
from targets.dynamo.launcher import local_cluster
from targets.dynamo.transport import MAGIC, encode_frame

pytestmark = pytest.mark.cluster
SECRET = "test-secret-0123456789"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with local_cluster(2, tmp_path_factory.mktemp("sec"), n=1, r=1, w=1, secret=SECRET) as c:
        yield c


@pytest.fixture(scope="module")
def node(cluster):
    n = cluster.nodes["n1"]
    return n.host, n.port


def send(node, raw: bytes, timeout: float = 10.0) -> int:
    """Send raw bytes on a new connection; the status of the first answer (0: closed, none)."""
    with socket.create_connection(node, timeout=timeout) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass                    # the node refused early (a too large head) and closed
        buf = b""
        while b"\r\n" not in buf:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return 0
            if not chunk:
                return 0
            buf += chunk
        return int(buf.split(b" ", 2)[1])


def request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return head.encode("latin-1") + b"\r\n" + body


AUTH = {"Authorization": f"Bearer {SECRET}"}
WRONG = {"Authorization": "Bearer not-the-secret"}
GUARDED = [("POST", "/admin/faults", b'{"drop": []}'), ("DELETE", "/admin/faults", b""), ("GET", "/admin/faults", b""),
           ("GET", "/admin/stats", b""), ("GET", "/admin/local/k", b""), ("GET", "/admin/clock", b""),
           ("GET", "/admin/health", b""), ("GET", "/admin/members", b""), ("GET", "/admin/hints", b""),
           ("GET", "/admin/ring", b""), ("GET", "/admin/preflist/k", b""), ("GET", "/admin/antientropy", b""),
           ("POST", "/admin/replicas", b'{"keys": ["k"]}'),
           ("POST", "/internal/get", b'{"key": "k"}'), ("POST", "/internal/gossip", b"{}")]


@pytest.mark.parametrize("method,path,body", GUARDED)
def test_admin_and_internal_endpoints_need_the_secret(node, method: str, path: str, body: bytes) -> None:
    assert send(node, request(method, path, body)) == 401
    assert send(node, request(method, path, body, WRONG)) == 403
    assert send(node, request(method, path, body, {"Authorization": "Basic abc"})) == 403
    assert send(node, request(method, path, body, {**AUTH, "X-Dynamo-From": "n2"})) in (200, 404)


def test_every_admin_route_is_in_the_guarded_list() -> None:
    """A new ``/admin`` route cannot slip in open: each one the node serves is checked above."""
    from targets.dynamo.admin_api import ADMIN_ROUTES
    checked = {(m, p[:-1] + "{key}" if p.endswith("/k") else p) for m, p, _ in GUARDED}
    assert {(m, p) for m, p, _ in ADMIN_ROUTES} <= checked


def test_client_api_stays_open(node) -> None:
    assert send(node, request("PUT", "/kv/open", b'{"value": 1}')) == 200
    assert send(node, request("GET", "/kv/open")) == 200
    assert send(node, request("DELETE", "/kv/open", b"{}")) == 200


def test_the_workload_client_reads_the_admin_views_with_the_secret(cluster) -> None:
    """What the harness's client reads to judge the cluster (health, membership, hints) needs the
    secret now: given it, the client gets answers; without it, the node refuses it."""
    from harness.plugins import node_client
    from targets.dynamo.client import DynamoClient
    from targets.dynamo.target import DynamoTarget

    n1 = cluster.nodes["n1"]

    async def ask(client, key: str) -> tuple:
        try:
            answers = [await client.health()]
            for question in (client.peers_down, client.pending_handoffs):
                try:
                    answers.append(await question())
                except OpIndeterminate as e:
                    answers.append(str(e))
            await client.put(key, 1)
            answers.append((await client.get(key)).values)
            return tuple(answers)
        finally:
            await client.close()

    with_secret = node_client(DynamoTarget(), n1, timeout=5.0, settings={})
    assert asyncio.run(ask(with_secret, "client-with-secret")) == (True, [], 0, (1,))
    without = DynamoClient(n1.name, n1.url, 5.0)
    healthy, down, hints, values = asyncio.run(ask(without, "client-without"))
    assert not healthy and down.startswith("401") and hints.startswith("401") and values == (1,)


def test_the_admin_client_sends_the_secret(cluster) -> None:
    admin, n1 = DynamoAdmin(), cluster.nodes["n1"]
    admin.set_faults(n1, {"delay_ms": 1})
    assert admin.faults(n1)["delay_ms"] == 1
    admin.clear_faults(n1)
    assert admin.peer_probe(n1, "n2")[0] == "admitted"
    assert "secret" not in repr(n1) and SECRET not in repr(n1)


def _handshake(node, hello: dict) -> list:
    """Open a peer connection with ``hello``, send one request; the frames received before EOF."""
    with socket.create_connection(node, timeout=5) as sock:
        sock.sendall(MAGIC + encode_frame(hello) + encode_frame([1, "/internal/get", {"key": "k"}]))
        buf, frames = b"", []
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack("!I", buf[:4])[0]:
                size = struct.unpack("!I", buf[:4])[0]
                frames.append(json.loads(buf[4:4 + size]))
                buf = buf[4 + size:]
            if frames and frames[-1][0] == 1:
                break
        return frames


def test_the_peer_handshake_is_refused_without_the_secret(node) -> None:
    for hello in ({"from": "n2"}, {"from": "n2", "secret": "wrong"}, {"from": "n2", "secret": 7}):
        frames = _handshake(node, hello)
        assert frames and frames[0][0] is None and frames[0][1] == 403, frames
        assert all(f[0] != 1 for f in frames)                  # the request was never served
    frames = _handshake(node, {"from": "n2", "secret": SECRET})
    assert frames and frames[-1][:2] == [1, 200]


def test_peers_with_the_secret_replicate(cluster, node) -> None:
    assert send(node, request("PUT", "/kv/replicated", b'{"value": 5}')) == 200
    n2 = cluster.nodes["n2"]
    assert send((n2.host, n2.port), request("GET", "/kv/replicated")) == 200   # coordinated via n1 or itself


def _nested(depth: int) -> bytes:
    return b'{"value": ' + b"[" * depth + b"]" * depth + b"}"


BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b'{"value": NaN}', b'{"value": Infinity}', b'{"value": -Infinity}', b'{"value": 1e999}',
                     b'{"value": [1, NaN]}', b'{"drop": NaN}', b'{"key": NaN}', b'{"value": ' + b"9" * 5000 + b"}",
                     b'{"value": "\\ud800"}', b'{"value": {"a": 1e400}}', b"[]", b"null", b'"x"', b"{",
                     b'{"objects": []}', b'{"objects": {"k": 1}}', b'{"table": []}', b'{"key": "k", "state": 5}']),
    st.integers(min_value=1, max_value=200_000).map(_nested),
    st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
                 lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                 max_leaves=20).map(lambda v: json.dumps({"value": v, "key": "k", "state": v}).encode()),
)
TARGETS = st.sampled_from([("PUT", "/kv/fuzz", {}), ("DELETE", "/kv/fuzz", {}), ("POST", "/admin/faults", AUTH),
                           ("POST", "/internal/put", AUTH), ("POST", "/internal/get", AUTH),
                           ("POST", "/internal/handoff", AUTH), ("POST", "/internal/gossip", AUTH),
                           ("POST", "/internal/coordinate", AUTH), ("POST", "/internal/ae/tree", AUTH),
                           ("POST", "/internal/ae/exchange", AUTH)])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
@given(target=TARGETS, body=BODIES)
def test_fuzzed_bodies_never_get_a_5xx(node, target, body: bytes) -> None:
    method, path, headers = target
    status = send(node, request(method, path, body, headers))
    assert 0 < status < 500, (method, path, body[:200], status)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(min_value=1, max_value=1 << 20), count=st.integers(min_value=0, max_value=500),
       url=st.integers(min_value=0, max_value=40_000))
def test_huge_and_many_headers_get_a_4xx_not_a_5xx(node, size: int, count: int, url: int) -> None:
    head = f"GET /kv/{'a' * url} HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * size}\r\n"
    head += "".join(f"X-H{i}: v\r\n" for i in range(count))
    status = send(node, (head + "Connection: close\r\n\r\n").encode())
    fields = count + 3                                   # Host, X-Big, Connection
    over = fields > httpserver.MAX_HEADERS or len(head) > httpserver.MAX_HEADER_BYTES + 100
    fits = fields <= httpserver.MAX_HEADERS and len(head) < httpserver.MAX_HEADER_BYTES - 100
    answered = (200, 400, 404)                           # 400: /kv/ with an empty key
    allowed = (431, 0) if over else answered if fits else (*answered, 431, 0)
    assert status in allowed, (size, count, url, status)


def test_a_slow_loris_connection_is_closed_after_the_header_timeout(node) -> None:
    limit = httpserver.HEADER_TIMEOUT
    with socket.create_connection(node, timeout=limit + 10) as sock:
        sock.sendall(b"GET /kv/slow HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        sock.settimeout(1.0)
        answer = b""
        while time.monotonic() - t0 < limit + 10:
            try:
                sock.sendall(b"X")                              # one header byte a second, never a line end
                chunk = sock.recv(4096)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            answer += chunk
        took = time.monotonic() - t0
    assert limit - 0.5 <= took <= limit + 3, took
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]


def test_node_still_serves_after_the_abuse(node) -> None:
    assert send(node, request("GET", "/admin/health", headers=AUTH)) == 200
