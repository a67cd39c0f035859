"""Gossip membership and failure detection.

Membership is the static peer list; gossip decides who is *healthy*. Every
``gossip_interval`` a node bumps its own heartbeat and exchanges its heartbeat
table with one random peer (both sides keep the larger heartbeat per node).
A peer is **down** when either

* its heartbeat has not advanced for ``SUSPECT_ROUNDS`` intervals (it crashed,
  or nobody can reach it), or
* this node's own last call to it failed and no call has succeeded since
  (Dynamo's local failure detection: a partition one node cannot see through
  must not be hidden by third parties still hearing the peer).

A down peer is probed once per round so it comes back as soon as it answers.
This view decides the replicas of sloppy quorums and when hints are handed off.
Heartbeats are ``[incarnation, counter]``; a node's own entry, received from the
node itself, is taken as is, so a restarted node is believed at once.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from targets.dynamo import bugs
from targets.dynamo.eventloop import wait_or_stop
from targets.dynamo.transport import PeerUnreachable

log = logging.getLogger("dynamo.gossip")

SUSPECT_ROUNDS = 4


class Membership:
    """Heartbeat table plus local reachability for one node."""

    def __init__(self, name: str, members: list[str], interval: float,
                 now: Callable[[], float]) -> None:
        self.name = name
        self.members = list(members)
        self.interval = interval
        self._now = now
        started = now()
        self.heartbeats: dict[str, list[int]] = {m: [0, 0] for m in members}
        self.heartbeats[name] = [time.time_ns() // 1000, 0]
        self.last_advanced: dict[str, float] = {m: started for m in members}
        self.unreachable: dict[str, str] = {}        # peer -> reason of the failed call
        self.rounds = 0

    # -- failure detection ----------------------------------------------------------------
    def is_up(self, node: str) -> bool:
        """Whether ``node`` counts as healthy for sloppy quorums and handoff."""
        if node == self.name:
            return True
        if node in self.unreachable:
            return False
        return self._now() - self.last_advanced.get(node, float("-inf")) < SUSPECT_ROUNDS * self.interval

    def record_ok(self, node: str) -> None:
        """A direct call to ``node`` succeeded."""
        if bugs.active("unreachable-never-cleared"):    # bug zoo: a suspected peer stays suspected
            return
        if self.unreachable.pop(node, None) is not None:
            log.info("%s reachable again", node)
        self.last_advanced[node] = self._now()

    def heard_from(self, node: str) -> None:
        """``node`` called us: it is alive, but that does not prove we can reach it (one-way cuts)."""
        self.last_advanced[node] = self._now()

    def record_failure(self, node: str, reason: str = "call failed") -> None:
        """A direct call to ``node`` failed."""
        if node not in self.unreachable:
            log.info("%s unreachable: %s", node, reason)
        self.unreachable[node] = reason

    # -- heartbeat exchange -----------------------------------------------------------------
    def merge(self, table: Mapping[str, Any], sender: str | None) -> None:
        """Take in a peer's table: larger heartbeats win; the sender's own entry is taken as is."""
        now = self._now()
        for node, beat in table.items():
            if node == self.name or node not in self.heartbeats or not _is_beat(beat):
                continue
            beat = [int(beat[0]), int(beat[1])]
            if beat > self.heartbeats[node] or (node == sender and beat != self.heartbeats[node]):
                self.heartbeats[node] = beat
                self.last_advanced[node] = now

    def table(self) -> dict[str, list[int]]:
        return {node: list(beat) for node, beat in self.heartbeats.items()}

    def beat(self) -> None:
        self.heartbeats[self.name][1] += 1

    def view(self) -> dict[str, Any]:
        """The ``/admin/members`` body."""
        now = self._now()
        return {"node": self.name, "interval": self.interval, "rounds": self.rounds,
                "members": {m: {"up": self.is_up(m), "heartbeat": self.heartbeats[m],
                                "last_heard_s": round(now - self.last_advanced[m], 3) if m != self.name else 0.0,
                                "unreachable": self.unreachable.get(m)}
                            for m in self.members}}


def _is_beat(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in value))


async def gossip_loop(members: Membership, transport: Any, stopping: asyncio.Event) -> None:
    """Every interval: beat, gossip with one random peer, probe one down peer."""
    peers = [m for m in members.members if m != members.name]
    while not stopping.is_set():
        members.beat()
        members.rounds += 1
        if peers:
            chosen = random.choice(peers)
            targets = [chosen]
            down = [p for p in peers if not members.is_up(p) and p != chosen]
            if down:
                targets.append(random.choice(down))
            await asyncio.gather(*(exchange(members, transport, p) for p in targets))
        if await wait_or_stop(stopping, members.interval):
            return


async def exchange(members: Membership, transport: Any, peer: str) -> None:
    """One gossip exchange with ``peer`` (updates reachability either way)."""
    try:
        reply = await transport.call(peer, "/internal/gossip", {"table": members.table()},
                                     timeout=max(1.0, 2 * members.interval))
    except PeerUnreachable as exc:
        members.record_failure(peer, exc.reason)
        return
    members.record_ok(peer)
    table = reply.get("table") if isinstance(reply, dict) else None
    if isinstance(table, dict):
        members.merge(table, sender=peer)
