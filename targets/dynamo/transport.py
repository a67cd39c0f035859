"""Node-to-node transport: length-prefixed JSON frames over persistent TCP, source-bound, with faults.

Why not HTTP between nodes: one aiohttp round trip cost ~0.6 ms of CPU here, and a
quorum operation needs several, so node-to-node HTTP capped the store near 500 ops/s
on two cores. Peers now talk a small framed protocol on the node's own port:

* A connection opens with :data:`MAGIC` (a NUL byte first: no HTTP request starts so,
  which is how the node's listener tells peer connections from client HTTP ones),
  then a hello frame ``{"from": name, "secret": the cluster's secret}``; the serving side
  closes a connection whose hello lacks the secret, or comes late (``peer_api``).
* Every frame is a 4-byte big-endian length and compact JSON. Requests are
  ``[id, path, payload]``, replies ``[id, status, body]``; many requests are in
  flight at once on one connection (replies carry the id, in any order), and the
  frames written in one loop iteration leave in one ``send``.
* Each node keeps one outgoing connection per peer, opened lazily and bound to the
  node's own host as source address (``local_addr=(host, 0)``), so on the local
  backend, where all nodes share loopback (127.0.0.11, .12, ...), an iptables rule
  ``-s A -d B`` cuts exactly the A->B traffic. A connection that breaks (peer
  killed, restarted) fails its pending calls at once and is reopened by the next
  call; a call that times out with nothing received since it was sent (a partition
  that silently drops packets) aborts the connection, so a healed link is reopened.
  Connecting is bounded by :data:`CONNECT_TIMEOUT`.

Every failure (refused, timed out, dropped, non-200 reply) is :class:`PeerUnreachable`.

:class:`~targets.dynamo.faults.Faults` (``/admin/faults``) are applied both ways: outgoing in
:meth:`Transport.call`, incoming in :meth:`Transport.admit`, which the serving side calls for
every request.
"""
from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Mapping
from typing import Any, cast

from targets.dynamo.faults import Faults

SENDER_HEADER = "X-Dynamo-From"
#: First bytes of a peer connection (HTTP requests never start with NUL).
MAGIC = b"\x00DYNP1\n"
#: Largest frame accepted (anti-entropy and handoff batches can be big).
MAX_FRAME = 256 << 20
#: Seconds a (re)connection attempt may take before the calls waiting on it fail.
CONNECT_TIMEOUT = 1.0
#: Reply status of a request the receiving node dropped by an injected fault.
STATUS_DROPPED = 0

#: Bytes asked of each recv(). asyncio asks 256 KiB, which glibc serves with mmap/mremap/munmap
#: on every read (three syscalls and page faults per message); 64 KiB comes from the heap.
RECV_SIZE = 64 * 1024

_LENGTH = struct.Struct("!I")


def small_reads(transport: asyncio.BaseTransport) -> None:
    """Make a selector transport read at most :data:`RECV_SIZE` bytes per recv (see there)."""
    if hasattr(transport, "max_size"):
        transport.max_size = RECV_SIZE  # type: ignore[attr-defined]
_std_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value`` (lone surrogates kept, as the HTTP API accepts them).

    Why stdlib json and not orjson: orjson turns NaN into null and reads integers over 64 bits
    as floats, and client values may hold both; the node must store exactly what it was sent."""
    return _std_encode(value).encode("utf-8", "surrogatepass")


def json_value(data: bytes) -> Any:
    """Decode what :func:`json_bytes` wrote (ValueError when it is not JSON, or nested past
    the recursion limit: a frame must never raise anything else into the protocol)."""
    try:
        return json.loads(data.decode("utf-8", "surrogatepass"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


class PeerUnreachable(Exception):
    """A peer call did not complete (refused, timed out, dropped by a fault, or answered non-2xx)."""

    def __init__(self, peer: str, reason: str, answered: bool = False, maybe_delivered: bool = False) -> None:
        super().__init__(f"{peer}: {reason}")
        self.peer = peer
        self.reason = reason
        self.answered = answered          # the peer sent an (error) response
        # the request may have reached the peer and taken effect there (timed out, or the
        # connection broke after it was sent): a caller must not report it as surely not done
        self.maybe_delivered = maybe_delivered


def encode_frame(message: Any) -> bytes:
    """One wire frame: 4-byte big-endian length, then compact UTF-8 JSON."""
    data = json_bytes(message)
    return _LENGTH.pack(len(data)) + data


class FrameReader:
    """Splits a byte stream into decoded frames (ValueError on an oversized or malformed one)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame        # smaller before a peer has authenticated

    def feed(self, data: bytes) -> list[Any]:
        """Add received bytes; every frame now complete, decoded, in order."""
        buf = self._buf
        buf += data
        out = []
        pos, size = 0, len(buf)
        while size - pos >= 4:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length > self.max_frame:
                raise ValueError(f"frame of {length} bytes exceeds {self.max_frame}")
            end = pos + 4 + length
            if end > size:
                break
            out.append(json_value(bytes(buf[pos + 4:end])))
            pos = end
        if pos:
            del buf[:pos]
        return out


class FrameWriter:
    """Queues frames on an asyncio transport and writes them together once per loop iteration."""

    #: Frames and writes so far, all writers of the process (``/admin/stats``: frames per send).
    frames = 0
    writes = 0

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []

    def send(self, message: Any) -> None:
        """Queue one message; the queue leaves in a single write at the end of this iteration."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(encode_frame(message))

    def _flush(self) -> None:
        data, self._pending = self._pending, []
        FrameWriter.frames += len(data)
        FrameWriter.writes += 1
        if not self._transport.is_closing():
            self._transport.write(b"".join(data))


class _PeerLink(asyncio.Protocol):
    """The client side of one outgoing connection to a peer: request ids -> waiting futures."""

    def __init__(self, owner: Transport, peer: str) -> None:
        self.owner = owner
        self.peer = peer
        self.open = False
        self.transport: asyncio.Transport | None = None
        self.writer: FrameWriter | None = None
        self._reader = FrameReader()
        self._pending: dict[int, tuple[asyncio.Future, asyncio.TimerHandle]] = {}
        self._next_id = 0
        self.rx_count = 0                # frames received so far (to spot a silently dead link)
        self._closed_because = ""        # why this side aborted it, if it did

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)   # uvloop's is not a subclass
        self.open = True
        self.writer = FrameWriter(self.transport)
        small_reads(transport)
        hello = {"from": self.owner.name, **({"secret": self.owner.secret} if self.owner.secret else {})}
        transport.write(MAGIC + encode_frame(hello))

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except ValueError as exc:
            self.abort(f"bad frame from peer: {exc}")
            return
        self.rx_count += len(frames)
        pending, settle = self._pending, self.owner._settle
        for frame in frames:
            entry = pending.pop(frame[0], None)
            if entry is not None:
                entry[1].cancel()
                settle(entry[0], self.peer, frame[1], frame[2])

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.owner._links.get(self.peer) is self:
            del self.owner._links[self.peer]
        error = PeerUnreachable(self.peer, f"connection lost ({exc or self._closed_because or 'closed by peer'})",
                                maybe_delivered=True)
        pending, self._pending = self._pending, {}
        for fut, timer in pending.values():
            timer.cancel()
            self.owner._fail(fut, error)

    def abort(self, reason: str) -> None:
        """Drop the connection now (pending calls fail; the next call reconnects)."""
        if self.transport is not None and self.open:
            self.open = False
            self._closed_because = f"aborted: {reason}"
            if self.owner._links.get(self.peer) is self:
                del self.owner._links[self.peer]
            self.transport.abort()

    def send(self, path: str, payload: Any, timeout: float) -> asyncio.Future:
        """Send one request; a future of the reply body (:class:`PeerUnreachable` on failure).

        No task and no coroutine: the reply (or the timeout timer, or the connection's loss)
        settles the future. A timeout with nothing at all received on the link since the
        request was sent means the link is presumed dead and is aborted."""
        writer = self.writer
        assert writer is not None
        self._next_id += 1
        rid = self._next_id
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        timer = loop.call_at(loop.time() + timeout, self._expire, rid, self.rx_count, timeout)
        self._pending[rid] = (fut, timer)
        writer.send([rid, path, payload])
        return fut

    def _expire(self, rid: int, rx_at_send: int, timeout: float) -> None:
        entry = self._pending.pop(rid, None)
        if entry is None:
            return
        if self.rx_count == rx_at_send:        # nothing at all came back since: link presumed dead
            self.abort("no reply before timeout")
        self.owner._fail(entry[0], PeerUnreachable(self.peer, f"timed out after {timeout:.3g}s",
                                                   maybe_delivered=True))


class Transport:
    """Calls other nodes' peer endpoints (``/internal/...`` paths) over framed TCP links."""

    def __init__(self, name: str, host: str, peers: Mapping[str, tuple[str, int]], secret: str | None = None) -> None:
        self.name = name
        self.secret = secret              # sent in the hello of every link this node opens
        self.host = host
        self.peers = dict(peers)
        self.faults = Faults()
        self.sent = 0
        self.failed = 0
        self.connects = 0
        self._links: dict[str, _PeerLink] = {}
        self._connecting: dict[str, asyncio.Future] = {}
        self._started = False

    async def start(self) -> None:
        """Ready to call (connections open lazily, on first use)."""
        self._started = True

    async def close(self) -> None:
        """Close every link and cancel connection attempts."""
        self._started = False
        for fut in list(self._connecting.values()):
            fut.cancel()
        for link in list(self._links.values()):
            link.abort("transport closed")

    async def _connect(self, peer: str) -> _PeerLink:
        host, port = self.peers[peer]
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, link = await loop.create_connection(lambda: _PeerLink(self, peer), host, port,
                                                   local_addr=(self.host, 0))
        self.connects += 1
        self._links[peer] = link
        return link

    async def _link(self, peer: str) -> _PeerLink:
        link = self._links.get(peer)
        if link is not None and link.open:
            return link
        connecting = self._connecting.get(peer)
        if connecting is None:
            connecting = asyncio.ensure_future(self._connect(peer))
            self._connecting[peer] = connecting
            connecting.add_done_callback(lambda _f: self._connecting.pop(peer, None))
        return await asyncio.shield(connecting)

    def request(self, peer: str, path: str, payload: Any, timeout: float) -> asyncio.Future:
        """:meth:`call` as a future (the coordinator's hot path): with no fault set and the link
        to ``peer`` open, the request is written at once and no task is made; otherwise it
        runs :meth:`call` in a task."""
        link = self._links.get(peer)
        if link is None or not link.open or self.faults.active:
            return asyncio.ensure_future(self.call(peer, path, payload, timeout))
        assert self._started, "Transport.start() first"
        self.sent += 1
        return link.send(path, payload, timeout)

    async def call(self, peer: str, path: str, payload: Any, timeout: float) -> Any:
        """Send ``payload`` to ``peer``'s ``path``; the decoded JSON reply, or PeerUnreachable."""
        assert self._started, "Transport.start() first"
        self.sent += 1
        faults = self.faults
        if faults.drops(peer):
            self.failed += 1
            raise PeerUnreachable(peer, "dropped by injected fault")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout(timeout):
                delay = faults.delay_for(peer)
                if delay:
                    await asyncio.sleep(delay)
                link = self._links.get(peer)
                if link is None or not link.open:
                    link = await self._link(peer)
        except TimeoutError:
            self.failed += 1
            raise PeerUnreachable(peer, f"timed out after {timeout:.3g}s", maybe_delivered=True) from None
        except OSError as exc:
            self.failed += 1
            raise PeerUnreachable(peer, f"connect failed: {exc.strerror or exc}") from None
        return await link.send(path, payload, max(0.0, deadline - loop.time()))

    def _settle(self, fut: asyncio.Future, peer: str, status: int, body: Any) -> None:
        """A reply arrived for ``fut``: its body, or PeerUnreachable for any status but 200."""
        if status == 200:
            if not fut.done():
                fut.set_result(body)
        elif status == STATUS_DROPPED:
            self._fail(fut, PeerUnreachable(peer, f"rejected: {body}"))
        else:
            self._fail(fut, PeerUnreachable(peer, f"status {status}: {str(body)[:200]}", answered=True))

    def _fail(self, fut: asyncio.Future, error: PeerUnreachable) -> None:
        self.failed += 1
        if not fut.done():
            fut.set_exception(error)

    def admit_now(self, sender: str | None) -> float | None:
        """Incoming faults for one request from ``sender``: None = drop it, else seconds to delay it."""
        if sender is None or sender not in self.peers:
            return 0.0
        faults = self.faults
        if faults.drops(sender):
            return None
        return faults.delay_for(sender)

    async def admit(self, sender: str | None) -> bool:
        """Apply faults to an incoming request from ``sender``: False = reject it."""
        delay = self.admit_now(sender)
        if delay is None:
            return False
        if delay:
            await asyncio.sleep(delay)
        return True
