"""Node-to-node transport: one aiohttp client pool, source-bound, with injectable faults.

Why aiohttp: a mature asyncio HTTP stack with keep-alive connection pools; the
same library serves the node, calls its peers and backs the harness client.
Every outgoing connection binds its source address to the node's own host
(``TCPConnector(local_addr=(host, 0))``), so on the local backend, where all
nodes share loopback (127.0.0.11, .12, ...), an iptables rule ``-s A -d B``
cuts exactly the A->B traffic.

:class:`Faults` are the in-process faults of ``/admin/faults``: ``drop`` cuts
every message to and from the listed peers (outgoing calls fail at once as if
refused, incoming ``/internal`` requests are rejected), ``loss`` drops that
fraction of messages, ``delay_ms`` +/- ``jitter_ms`` delays each message (for
``peers``, or every peer when ``peers`` is empty). Both directions are checked
here, so a fault set on one node affects its traffic both ways.
"""
from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

SENDER_HEADER = "X-Dynamo-From"
#: Most calls one batch carries, and batches in flight per peer before calls queue up.
BATCH_MAX = 64
INFLIGHT_PER_PEER = 4


class PeerUnreachable(Exception):
    """A peer call did not complete (refused, timed out, dropped by a fault, or answered non-2xx)."""

    def __init__(self, peer: str, reason: str, answered: bool = False) -> None:
        super().__init__(f"{peer}: {reason}")
        self.peer = peer
        self.reason = reason
        self.answered = answered          # the peer sent an (error) HTTP response


@dataclass(frozen=True)
class Faults:
    """The transport faults currently injected (all empty/zero = none)."""

    drop: tuple[str, ...] = ()
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    peers: tuple[str, ...] = field(default=())

    @staticmethod
    def parse(body: Any, members: Mapping[str, Any]) -> Faults:
        """Validate a ``POST /admin/faults`` body (ValueError with a one-line reason)."""
        if not isinstance(body, dict):
            raise ValueError("faults body must be a JSON object")  # noqa: TRY004 - answered as 400
        unknown = set(body) - {"drop", "delay_ms", "jitter_ms", "loss", "peers"}
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")

        def names(key: str) -> tuple[str, ...]:
            value = body.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key} must be a list of node names")
            bad = [v for v in value if v not in members]
            if bad:
                raise ValueError(f"{key}: unknown node(s) {', '.join(bad)}")
            return tuple(value)

        def number(key: str, low: float, high: float) -> float:
            value = body.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"{key} must be a number in [{low}, {high}]")
            return float(value)

        return Faults(drop=names("drop"), delay_ms=number("delay_ms", 0, 600_000),
                      jitter_ms=number("jitter_ms", 0, 600_000), loss=number("loss", 0, 1),
                      peers=names("peers"))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["drop"], d["peers"] = list(self.drop), list(self.peers)
        return d

    def applies_to(self, peer: str) -> bool:
        return not self.peers or peer in self.peers

    def drops(self, peer: str) -> bool:
        """Whether one message to/from ``peer`` is lost (drop list or random loss)."""
        if peer in self.drop:
            return True
        return self.loss > 0 and self.applies_to(peer) and random.random() < self.loss

    def delay_for(self, peer: str) -> float:
        """Seconds to hold one message to/from ``peer``."""
        if not self.applies_to(peer) or (self.delay_ms <= 0 and self.jitter_ms <= 0):
            return 0.0
        ms = self.delay_ms + random.uniform(-self.jitter_ms, self.jitter_ms)
        return max(0.0, ms) / 1000.0


class Transport:
    """Calls other nodes' ``/internal`` endpoints with JSON bodies."""

    def __init__(self, name: str, host: str, peers: Mapping[str, tuple[str, int]]) -> None:
        self.name = name
        self.host = host
        self.peers = dict(peers)
        self.faults = Faults()
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        self.failed = 0
        self.batches = 0
        self._queues: dict[str, list[tuple[str, Any, asyncio.Future, float]]] = {}
        self._inflight: dict[str, int] = {}
        self._senders: set[asyncio.Future] = set()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(local_addr=(self.host, 0), limit=0, limit_per_host=64,
                                         keepalive_timeout=30, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(connector=connector, headers={SENDER_HEADER: self.name},
                                              json_serialize=_dumps)

    async def close(self) -> None:
        for task in list(self._senders):
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, peer: str, path: str, payload: Any, timeout: float) -> Any:
        """Send ``payload`` to ``peer``'s ``path``; the decoded JSON reply, or PeerUnreachable.

        Calls are queued per peer and sent as ``POST /internal/batch``: with nothing queued a
        call goes out at once, alone; while ``INFLIGHT_PER_PEER`` batches are in flight, new
        calls to that peer wait and leave together in the next batch (one HTTP round trip for
        many replica messages under load, none added when idle).
        """
        assert self._session is not None, "Transport.start() first"
        self.sent += 1
        faults = self.faults
        if faults.drops(peer):
            self.failed += 1
            raise PeerUnreachable(peer, "dropped by injected fault")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                delay = faults.delay_for(peer)
                if delay:
                    await asyncio.sleep(delay)
                fut: asyncio.Future = loop.create_future()
                self._queues.setdefault(peer, []).append((path, payload, fut, loop.time() + timeout))
                self._pump(peer)
                status, body = await fut
        except PeerUnreachable:
            self.failed += 1
            raise
        except TimeoutError:
            self.failed += 1
            raise PeerUnreachable(peer, f"timed out after {timeout:.3g}s") from None
        if status != 200:
            self.failed += 1
            raise PeerUnreachable(peer, f"HTTP {status}: {str(body)[:200]}", answered=True)
        return body

    def _pump(self, peer: str) -> None:
        if self._queues.get(peer) and self._inflight.get(peer, 0) < INFLIGHT_PER_PEER:
            self._inflight[peer] = self._inflight.get(peer, 0) + 1
            task = asyncio.ensure_future(self._send_batches(peer))
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)

    async def _send_batches(self, peer: str) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.peers[peer]
        try:
            while self._queues.get(peer):
                queue = self._queues[peer]
                items = [item for item in queue[:BATCH_MAX] if not item[2].done()]
                del queue[:BATCH_MAX]
                if not items:
                    continue
                self.batches += 1
                timeout = max(0.01, max(item[3] for item in items) - loop.time())
                body = {"items": [[path, payload] for path, payload, _, _ in items]}
                try:
                    async with asyncio.timeout(timeout):
                        async with self._session.post(f"http://{host}:{port}/internal/batch",
                                                      json=body) as resp:
                            if resp.status != 200:
                                raise PeerUnreachable(peer, f"HTTP {resp.status}: {(await resp.text())[:200]}")
                            replies = (await resp.json(loads=_loads))["replies"]
                    for (_, _, fut, _), (status, answer) in zip(items, replies):
                        if not fut.done():
                            fut.set_result((status, answer))
                except Exception as exc:  # noqa: BLE001 - every waiting call gets the failure
                    if isinstance(exc, PeerUnreachable):
                        error = exc
                    elif isinstance(exc, TimeoutError):
                        error = PeerUnreachable(peer, f"timed out after {timeout:.3g}s")
                    else:
                        error = PeerUnreachable(peer, f"{type(exc).__name__}: {exc}")
                    for _, _, fut, _ in items:
                        if not fut.done():
                            fut.set_exception(error)
        finally:
            self._inflight[peer] -= 1

    async def admit(self, sender: str | None) -> bool:
        """Apply faults to an incoming /internal request from ``sender``: False = reject it."""
        if sender is None or sender not in self.peers:
            return True
        faults = self.faults
        if faults.drops(sender):
            return False
        delay = faults.delay_for(sender)
        if delay:
            await asyncio.sleep(delay)
        return True


def _dumps(obj: Any) -> str:
    import json
    return json.dumps(obj, separators=(",", ":"))


def _loads(text: str) -> Any:
    import json
    return json.loads(text)
