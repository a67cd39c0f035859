"""``DynamoAdmin``: the harness's synchronous calls to a reference Dynamo node's ``/admin`` API.

Nemeses and backends call these from worker threads and exit paths, so this uses
``http.client`` with a hard timeout on every request rather than the async client. The
endpoints are the node's own (``targets/dynamo/server.py``): ``/admin/health`` answers through
the node's event loop (a paused node completes TCP handshakes in the kernel but never answers),
``/admin/clock`` is the node's ``time.time()`` (the clock libfaketime skews), ``/admin/faults``
holds the node's one set of in-process transport faults, ``/admin/replicas`` reads the node's own
stored copies of keys (``targets/dynamo/replicas.py``: no coordination, no read repair), and ``/internal/get`` with the
``X-Dynamo-From`` header is a read-only peer request the node's transport admits, drops or
delays exactly as it would a real peer message. Every request carries the cluster's secret
(``Node.secret``, as ``Authorization: Bearer``) when the node has one: the node refuses its admin
and internal endpoints without it.
"""
from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any, Mapping, Sequence

from targets.adapter import AdminError, Node
from targets.dynamo.transport import SENDER_HEADER

#: Keys per ``/admin/replicas`` request (the node refuses more than its own ``MAX_KEYS``).
REPLICAS_BATCH = 500

#: A read-only node-to-node endpoint: the transport admits (or drops, or delays) the request
#: before the handler reads a key nobody writes (targets/dynamo/server.py ``internal``).
PEER_PING_PATH = "/internal/get"
PEER_PING_BODY = {"key": "dynharness-nemesis-probe"}


def request(node: Node, method: str, path: str, body: Any = None, *, timeout: float = 2.0,
            headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request to ``node``; (status, decoded JSON or text). OSError/TimeoutError on transport failure."""
    conn = http.client.HTTPConnection(node.host, node.port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
        if node.secret:
            hdrs["Authorization"] = f"Bearer {node.secret}"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


def call(node: Node, method: str, path: str, body: Any = None, *, timeout: float = 2.0) -> Any:
    """An admin request that must succeed: its JSON answer, or AdminError with a one-line reason."""
    try:
        status, answer = request(node, method, path, body, timeout=timeout)
    except (OSError, http.client.HTTPException) as e:
        raise AdminError(f"{node.name} {method} {path}: {type(e).__name__}: {e}") from None
    if not 200 <= status < 300:
        raise AdminError(f"{node.name} {method} {path}: HTTP {status}: {str(answer)[:200]}")
    return answer


class DynamoAdmin:
    """``targets.adapter.NodeAdmin`` for the reference Dynamo node (every capability it names)."""

    def health(self, node: Node, timeout: float = 1.0) -> tuple[bool, str]:
        try:
            status, answer = request(node, "GET", "/admin/health", timeout=timeout)
        except socket.timeout:
            return False, f"no answer within {timeout:g}s"
        except ConnectionRefusedError:
            return False, "connection refused"
        except OSError as e:
            return False, f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001  http.client.HTTPException and friends: a broken answer
            return False, f"{type(e).__name__}: {e}"
        if status == 200 and isinstance(answer, dict) and answer.get("ok"):
            return True, "ok"
        return False, f"HTTP {status}: {str(answer)[:100]}"

    def clock(self, node: Node, timeout: float = 2.0) -> float:
        answer = call(node, "GET", "/admin/clock", timeout=timeout)
        try:
            return float(answer["time"])
        except (TypeError, KeyError, ValueError):
            raise AdminError(f"{node.name} /admin/clock answered {answer!r}") from None

    def faults(self, node: Node, timeout: float = 2.0) -> Mapping[str, Any]:
        got = call(node, "GET", "/admin/faults", timeout=timeout)
        return got if isinstance(got, dict) else {}

    def set_faults(self, node: Node, faults: Mapping[str, Any], timeout: float = 2.0) -> None:
        call(node, "POST", "/admin/faults", dict(faults), timeout=timeout)

    def clear_faults(self, node: Node, timeout: float = 2.0) -> None:
        call(node, "DELETE", "/admin/faults", timeout=timeout)

    def peer_probe(self, node: Node, sender: str, timeout: float = 2.0) -> tuple[str, float]:
        t0 = time.monotonic()
        try:
            status, _ = request(node, "POST", PEER_PING_PATH, PEER_PING_BODY, timeout=timeout,
                                headers={SENDER_HEADER: sender})
        except socket.timeout:
            return "timeout", time.monotonic() - t0
        except OSError as e:
            return f"error:{e}", time.monotonic() - t0
        took = time.monotonic() - t0
        return ("admitted" if status < 300 else "rejected" if status == 503 else f"error:HTTP {status}"), took

    def replica_snapshot(self, node: Node, keys: Sequence[str], timeout: float = 5.0) -> Mapping[str, Any]:
        """``replica-snapshot``: ``{key: copy}`` as ``node`` itself stores each key (see
        ``targets.adapter.NodeAdmin.replica_snapshot``), in batches of :data:`REPLICAS_BATCH`."""
        keys = list(keys)
        out: dict[str, Any] = {}
        for start in range(0, len(keys), REPLICAS_BATCH):
            answer = call(node, "POST", "/admin/replicas", {"keys": keys[start:start + REPLICAS_BATCH]},
                          timeout=timeout)
            got = answer.get("keys") if isinstance(answer, dict) else None
            if not isinstance(got, dict):
                raise AdminError(f"{node.name} /admin/replicas answered {str(answer)[:200]}")
            out.update(got)
        return out
