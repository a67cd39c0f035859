"""The node-to-node endpoints (``/internal/...``), served by every node, and the listener.

Peers call them through :class:`targets.dynamo.transport.Transport`, over the
framed protocol described there; :class:`PeerConnection` serves that side. The
same endpoints also answer HTTP ``POST`` (one call each),
handy with curl and used by the nemesis probes (``nemeses/probes.py``), with the
sender named in the ``X-Dynamo-From`` header. Both paths need the cluster's secret (the
HTTP one as ``Authorization: Bearer``, the framed one in its hello frame): the sender a
request names is then one of the cluster, not whoever reached the port. Incoming injected faults are applied
per request, before anything runs, on both paths. Every endpoint answers JSON; a
malformed call gets 400 and changes nothing.

:class:`ConnectionSniffer` is the protocol of the node's one listening port: it
looks at the first bytes of each accepted connection and hands it either to
the HTTP server (:mod:`.httpserver`) or to :class:`PeerConnection` (:data:`MAGIC`).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from targets.dynamo import bugs
from targets.dynamo.coordinator import QuorumFailed, TooManySiblings
from targets.dynamo.httpserver import HEADER_TIMEOUT, IDLE_TIMEOUT, Handler, Request, Response, check_secret, loads_body
from targets.dynamo.httpserver import json_response as reply
from targets.dynamo.transport import (
    MAGIC,
    MAX_FRAME,
    SENDER_HEADER,
    STATUS_DROPPED,
    FrameReader,
    FrameWriter,
    encode_frame,
    small_reads,
)

log = logging.getLogger("dynamo.peer_api")

NodeState = Any   # targets.dynamo.server.NodeState (not imported: server imports this module)


InternalFn = Callable[[NodeState, dict], Awaitable[Any]]


async def run_internal(state: NodeState, fn: InternalFn, body: Any) -> tuple[int, Any]:
    """Run one node-to-node call: (200, reply) or (400, error) for a malformed one."""
    try:
        if not isinstance(body, dict):
            raise ValueError("body must be an object")  # noqa: TRY004 - answered as 400
        return 200, await fn(state, body)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        # a field of the wrong shape (a list where an object belongs...) reaches a method call
        return 400, {"error": f"bad internal request: {type(exc).__name__}: {exc}".splitlines()[0]}


def heard_from(state: NodeState, sender: str | None) -> None:
    """A request from another member is news that it is up (gossip's failure detector)."""
    if sender in state.cfg.peers and sender != state.name:
        state.members.heard_from(sender)


async def admit_peer(state: NodeState, request: Request) -> bool:
    """Apply injected faults to an incoming peer request (False: reject it)."""
    sender = request.headers.get(SENDER_HEADER)
    if not await state.transport.admit(sender):
        return False
    heard_from(state, sender)
    return True


def internal(fn: InternalFn) -> Handler:
    """One /internal endpoint: faults, JSON body in, JSON reply out."""
    async def wrapper(request: Request) -> Response:
        state: NodeState = request.app["state"]
        denied = check_secret(request, state.secret)
        if denied is not None:
            return denied
        if not await admit_peer(state, request):
            return reply(503, {"error": "dropped by injected fault"})
        try:
            body = loads_body(await request.read())
        except ValueError as exc:
            return reply(400, {"error": f"bad internal request: {exc}"})
        status, answer = await run_internal(state, fn, body)
        return reply(status, answer)
    return wrapper


def start_put(state: NodeState, body: dict) -> asyncio.Future:
    """Validate an ``/internal/put`` and queue its merge: the storage job's future.
    ValueError/KeyError/TypeError on a malformed call (answered 400), before anything is queued."""
    key = body["key"]
    if not isinstance(key, str):
        raise TypeError("key must be a string")
    obj = state.versioning.from_text(body["state"])
    hint_for = body.get("hint_for")
    if hint_for is not None and hint_for not in state.cfg.peers:
        raise ValueError(f"unknown hint target {hint_for!r}")
    durable = body.get("durable", False)
    if not isinstance(durable, bool):
        raise TypeError("durable must be a boolean")
    return state.storage.merge_in(key, obj, hint_for, durable)


async def internal_put(state: NodeState, body: dict) -> Any:
    await start_put(state, body)
    return {"ok": True}


def get_reply(state: NodeState, body: dict, obj: Any) -> dict:
    """The answer to ``/internal/get``: ``{"same": true}`` when the caller sent the digest of its
    own copy and ours equals it (a digest read: the object need not travel), else
    ``{"state": <its canonical text>}`` (``null`` when absent)."""
    if obj is None:
        return {"state": None}
    text, digest = state.versioning.encode(obj)
    theirs = body.get("digest")
    if theirs is not None and theirs == digest.hex():
        return {"same": True}
    return {"state": text}


async def internal_get(state: NodeState, body: dict) -> Any:
    return get_reply(state, body, await state.storage.get(body["key"]))


async def internal_handoff(state: NodeState, body: dict) -> Any:
    v = state.versioning
    objects = {k: v.from_text(text) for k, text in body["objects"].items()}
    if bugs.active("handoff-skips-known"):              # bug zoo: "I have the key" taken for "I have it"
        objects = bugs.unknown_only(objects, state.storage.get_cached)
    await state.storage.merge_many(objects, durable=True)   # the sender deletes its hints next
    state.stats["hints_received"] += len(objects)
    return {"ok": True, "count": len(objects)}


async def internal_gossip(state: NodeState, body: dict) -> Any:
    table = body.get("table")
    if isinstance(table, dict):
        state.members.merge(table, sender=None)
    return {"table": state.members.table()}


async def internal_coordinate(state: NodeState, body: dict) -> Any:
    value = state.versioning_module.TOMBSTONE if body.get("delete") else body.get("value")
    try:
        answer = await state.coordinator.write(body["key"], value, body.get("context"), w=int(body["w"]),
                                               pw=int(body["pw"]), timeout=float(body["timeout"]),
                                               forwarded=True)
        return {"status": 200, "body": answer}
    except QuorumFailed as exc:
        return {"status": 503, "body": exc.to_json()}
    except TooManySiblings as exc:
        return {"status": 507, "body": {"error": str(exc)}}
    except state.versioning_module.ContextError as exc:
        return {"status": 400, "body": {"error": f"malformed context: {exc}"}}


async def internal_ae_tree(state: NodeState, body: dict) -> Any:
    return state.ae.tree_reply(body)


async def internal_ae_exchange(state: NodeState, body: dict) -> Any:
    return await state.ae.exchange_reply(body)


INTERNAL_ROUTES: dict[str, InternalFn] = {
    "/internal/put": internal_put, "/internal/get": internal_get, "/internal/handoff": internal_handoff,
    "/internal/gossip": internal_gossip, "/internal/coordinate": internal_coordinate,
    "/internal/ae/tree": internal_ae_tree, "/internal/ae/exchange": internal_ae_exchange,
}


#: Largest hello frame accepted, and how long a new peer connection has to send it: before it
#: has shown the secret, a connection may not make the node buffer or wait for much.
HELLO_MAX = 4096
HELLO_TIMEOUT = HEADER_TIMEOUT


class PeerConnection(asyncio.Protocol):
    """The serving side of one peer's framed connection: checks the hello (the sender and the
    cluster's secret), then runs each request and replies by id."""

    def __init__(self, state: NodeState) -> None:
        self.state = state
        self.sender: str | None = None
        self.transport: asyncio.Transport | None = None
        self.writer: FrameWriter | None = None
        self._reader = FrameReader(max_frame=HELLO_MAX)
        self._tasks: set[asyncio.Future] = set()
        self._hello_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)   # uvloop's is not a subclass
        self.writer = FrameWriter(self.transport)
        self._hello_timer = asyncio.get_running_loop().call_later(HELLO_TIMEOUT, self._refuse, "no hello in time")

    def _refuse(self, why: str) -> None:
        """Close the connection, telling the other end why (an error frame without an id)."""
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        if self.transport is not None and not self.transport.is_closing():
            log.warning("peer connection from %s refused: %s", self.transport.get_extra_info("peername"), why)
            self.transport.write(encode_frame([None, 403, f"peer handshake refused: {why}"]))
            self.transport.close()

    def _hello(self, frame: Any) -> bool:
        """Check the first frame: a sender name and the cluster's secret (True: go on)."""
        sender = frame.get("from") if isinstance(frame, dict) else None
        given = frame.get("secret") if isinstance(frame, dict) else None
        secret = self.state.secret
        if secret is not None and not (isinstance(given, str)
                                       and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), secret.encode())):
            self._refuse("missing secret" if given is None else "wrong secret")
            return False
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        self.sender = sender if isinstance(sender, str) else "?"
        self._reader.max_frame = MAX_FRAME
        return True

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            frames = self._reader.feed(data)
        except ValueError as exc:
            if self.sender is None:
                self._refuse(f"bad hello: {exc}")
            else:
                self.transport.abort()
            return
        for frame in frames:
            if self.sender is None:
                if not self._hello(frame):
                    return
                continue
            try:
                rid, path, body = frame
            except (TypeError, ValueError):
                continue
            if path == "/internal/get" and self._get_now(rid, body):
                continue
            if path == "/internal/put" and self._put_now(rid, body):
                continue
            task = asyncio.ensure_future(self._serve(rid, path, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        """The requester hung up: its replies go nowhere, but the requests it made run to the end.

        Cancelling them broke a forwarded write (``/internal/coordinate``) between the
        coordinator's own commit and its sends to the other replicas: a version on one replica
        only, with no hint, that only anti-entropy could spread. A coordinated write, once begun,
        finishes whatever became of its requester, as it does for a client's HTTP request; every
        other request is a merge or a read, bounded by its own timeout. The node holds the tasks
        (``NodeState.background``) until they end."""
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        for task in list(self._tasks):
            self.state.background(task)
        self._tasks.clear()

    def _get_now(self, rid: Any, body: Any) -> bool:
        """Answer a read from the cache at once when no fault applies (no task): True if answered."""
        state = self.state
        if state.transport.faults.active or not isinstance(body, dict) or not isinstance(body.get("key"), str):
            return False
        hit, obj = state.storage.get_cached(body["key"])
        if not hit:
            return False
        heard_from(self.state, self.sender)
        self._reply(rid, 200, get_reply(state, body, obj))
        return True

    def _put_now(self, rid: Any, body: Any) -> bool:
        """Queue a replica write at once when no fault applies and reply from its callback (no
        task): True if taken. The same validation and answers as the ``_serve`` path."""
        state = self.state
        if state.transport.faults.active or not isinstance(body, dict):
            return False
        heard_from(self.state, self.sender)
        try:
            fut = start_put(state, body)
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(rid, 400, {"error": f"bad internal request: {exc}"})
            return True
        fut.add_done_callback(lambda f: self._put_done(rid, f))
        return True

    def _put_done(self, rid: Any, fut: asyncio.Future) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self._reply(rid, 200, {"ok": True})
        else:
            log.error("peer call /internal/put from %s failed: %r", self.sender, exc)
            self._reply(rid, 500, {"error": f"{type(exc).__name__}: {exc}"})

    async def _serve(self, rid: Any, path: Any, body: Any) -> None:
        state = self.state
        delay = state.transport.admit_now(self.sender)
        if delay is None:
            self._reply(rid, STATUS_DROPPED, "dropped by injected fault")
            return
        if delay:
            await asyncio.sleep(delay)
        heard_from(self.state, self.sender)
        fn = INTERNAL_ROUTES.get(path) if isinstance(path, str) else None
        if fn is None:
            self._reply(rid, 404, {"error": f"unknown peer endpoint {path!r}"})
            return
        try:
            status, answer = await run_internal(state, fn, body)
        except Exception as exc:
            log.exception("peer call %s from %s failed", path, self.sender)
            status, answer = 500, {"error": f"{type(exc).__name__}: {exc}"}
        self._reply(rid, status, answer)

    def _reply(self, rid: Any, status: int, body: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            assert self.writer is not None
            self.writer.send([rid, status, body])


class ConnectionSniffer(asyncio.Protocol):
    """Protocol of the node's listening port: hands each connection to HTTP or to PeerConnection."""

    def __init__(self, http_factory: Callable[[], asyncio.Protocol], state: NodeState) -> None:
        self._http_factory = http_factory
        self._state = state
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)   # uvloop's is not a subclass
        small_reads(transport)          # peer and client HTTP connections alike
        # a connection that never says anything is closed like an idle HTTP one
        self._timer = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._transport.close)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data
        n = min(len(buf), len(MAGIC))
        if buf[:n] != MAGIC[:n]:
            self._hand_over(self._http_factory(), buf)
        elif len(buf) >= len(MAGIC):
            self._hand_over(PeerConnection(self._state), buf[len(MAGIC):])
        else:
            self._buf = buf

    def _hand_over(self, proto: asyncio.Protocol, data: bytes) -> None:
        assert self._transport is not None
        if self._timer is not None:
            self._timer.cancel()
        self._transport.set_protocol(proto)
        proto.connection_made(self._transport)
        if data:
            proto.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
