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
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import aiohttp

SENDER_HEADER = "X-Dynamo-From"


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
    def parse(body: Any, members: Mapping[str, Any]) -> "Faults":
        """Validate a ``POST /admin/faults`` body (ValueError with a one-line reason)."""
        if not isinstance(body, dict):
            raise ValueError("faults body must be a JSON object")
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

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(local_addr=(self.host, 0), limit=0, limit_per_host=64,
                                         keepalive_timeout=30, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(connector=connector, headers={SENDER_HEADER: self.name},
                                              json_serialize=_dumps)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, peer: str, path: str, payload: Any, timeout: float) -> Any:
        """POST ``payload`` to ``peer``'s ``path``; the decoded JSON reply, or PeerUnreachable."""
        assert self._session is not None, "Transport.start() first"
        self.sent += 1
        faults = self.faults
        if faults.drops(peer):
            self.failed += 1
            raise PeerUnreachable(peer, "dropped by injected fault")
        host, port = self.peers[peer]
        try:
            async with asyncio.timeout(timeout):
                delay = faults.delay_for(peer)
                if delay:
                    await asyncio.sleep(delay)
                async with self._session.post(f"http://{host}:{port}{path}", json=payload) as resp:
                    if resp.status != 200:
                        text = (await resp.text())[:200]
                        raise PeerUnreachable(peer, f"HTTP {resp.status}: {text}", answered=True)
                    return await resp.json(loads=_loads)
        except PeerUnreachable:
            self.failed += 1
            raise
        except TimeoutError:
            self.failed += 1
            raise PeerUnreachable(peer, f"timed out after {timeout:.3g}s") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            self.failed += 1
            raise PeerUnreachable(peer, f"{type(exc).__name__}: {exc}") from None

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
