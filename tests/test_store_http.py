"""The node's own HTTP/1.1 server (targets/dynamo/httpserver.py) over raw sockets: keep-alive,
pipelining, chunked bodies, Expect: 100-continue, HTTP/1.0, and one-line JSON errors for
malformed requests."""
from __future__ import annotations

import json
import socket

import pytest

from targets.dynamo.launcher import local_cluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with local_cluster(1, tmp_path_factory.mktemp("http1"), n=1, r=1, w=1) as c:
        url = c.nodes["n1"].url.removeprefix("http://")
        host, port = url.rsplit(":", 1)
        yield host, int(port)


def exchange(node, raw: bytes, responses: int = 1, timeout: float = 5.0) -> list[tuple[int, dict, str]]:
    """Send raw bytes on one connection; read ``responses`` answers: (status, json body, head)."""
    with socket.create_connection(node, timeout=timeout) as sock:
        sock.sendall(raw)
        buf = b""
        out = []
        while len(out) < responses:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise AssertionError(f"connection closed after {out!r}, buffer {buf!r}")
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            text = head.decode("latin-1")
            status = int(text.split()[1])
            if status == 100:
                continue
            length = int(next(line.split(":")[1] for line in text.split("\r\n") if line.lower().startswith("content-length")))
            while len(buf) < length:
                buf += sock.recv(65536)
            out.append((status, json.loads(buf[:length]), text))
            buf = buf[length:]
        return out


def put(key: str, value, extra: str = "") -> bytes:
    body = json.dumps({"value": value}).encode()
    return (f"PUT /kv/{key} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_pipelined_requests_are_answered_in_order_on_one_connection(node):
    raw = put("p1", 1) + put("p2", 2) + b"GET /kv/p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /kv/p2 HTTP/1.1\r\nHost: x\r\n\r\n"
    (s1, _, _), (s2, _, _), (s3, b3, _), (s4, b4, _) = exchange(node, raw, 4)
    assert (s1, s2, s3, s4) == (200, 200, 200, 200)
    assert b3["siblings"] == [1] and b4["siblings"] == [2]


def test_chunked_body_and_expect_continue(node):
    body = json.dumps({"value": "chunked"}).encode()
    raw = (b"PUT /kv/ch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
           + f"{len(body[:5]):x}\r\n".encode() + body[:5] + b"\r\n"
           + f"{len(body[5:]):x}\r\n".encode() + body[5:] + b"\r\n0\r\n\r\n")
    [(status, _, _)] = exchange(node, raw)
    assert status == 200
    [(status, got, _)] = exchange(node, b"GET /kv/ch HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and got["siblings"] == ["chunked"]


def test_connection_close_and_http_1_0_close_after_the_answer(node):
    for raw in (b"GET /admin/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                b"GET /admin/health HTTP/1.0\r\n\r\n"):
        with socket.create_connection(node, timeout=5) as sock:
            sock.sendall(raw)
            data = b""
            while chunk := sock.recv(65536):          # the server closes: recv returns b"" at the end
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data and data.endswith(b'"node":"n1"}')


@pytest.mark.parametrize("raw, status, message", [
    (b"GARBAGE\r\n\r\n", 400, "malformed HTTP request"),
    (b"GET /kv/%FF%FE HTTP/1.1\r\nHost: x\r\n\r\n", 400, "UTF-8"),
    (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, "Not Found: GET /nope"),
    (b"PATCH /kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "Method Not Allowed"),
])
def test_bad_requests_get_one_line_json_errors(node, raw, status, message):
    [(got, body, _)] = exchange(node, raw)
    assert got == status and message in body["error"] and "\n" not in body["error"]


def test_a_body_over_the_limit_is_refused_without_reading_it_all(node):
    from targets.dynamo.httpserver import MAX_BODY
    head = f"PUT /kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode()
    with socket.create_connection(node, timeout=10) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent <= MAX_BODY:
                sock.sendall(b"x" * (1 << 20))
                sent += 1 << 20
        except OSError:
            pass                                        # the server answered and closed mid-body
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
    assert data.startswith(b"HTTP/1.1 413") and b"larger than" in data, data[:300]
