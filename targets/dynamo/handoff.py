"""Hinted handoff: give hinted replicas back to their primary once it is reachable.

A fallback that stored a write for a down primary keeps the object in its
normal store (so sloppy reads see it) plus a durable hint row
``(target, key, seq)`` in the same SQLite transaction. Every round this loop
sends each up target its hinted objects (batched), and after the target
durably merged them deletes the hint, unless it was re-queued meanwhile
(``seq`` changed). When no hint for the key remains and this node is not a
primary of the key, the local copy is deleted too, as in the paper.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from targets.dynamo.eventloop import wait_or_stop
from targets.dynamo.transport import PeerUnreachable

log = logging.getLogger("dynamo.handoff")
BATCH = 100


class Handoff:
    """Hint queue statistics and the handoff loop of one node."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.handed_off = 0
        self.rounds = 0
        self.last_error: str | None = None

    async def queues(self) -> dict[str, Any]:
        """The ``/admin/hints`` body: hinted keys per target."""
        per_target: dict[str, list[str]] = defaultdict(list)
        for target, key, _ in await self.node.storage.hints():
            per_target[target].append(key)
        return {"node": self.node.name, "total": sum(len(v) for v in per_target.values()),
                "queues": {t: {"count": len(keys), "keys": sorted(keys)[:100]} for t, keys in per_target.items()},
                "handed_off": self.handed_off, "rounds": self.rounds, "last_error": self.last_error}

    async def run_once(self) -> int:
        """Hand off every hint whose target is up; returns how many hints were delivered."""
        self.rounds += 1
        per_target: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for target, key, seq in await self.node.storage.hints():
            per_target[target].append((key, seq))
        delivered = 0
        for target, items in per_target.items():
            if not self.node.members.is_up(target):
                continue
            for start in range(0, len(items), BATCH):
                chunk = items[start:start + BATCH]
                try:
                    delivered += await self._deliver(target, chunk)
                except PeerUnreachable as exc:
                    self.node.members.record_failure(target, exc.reason)
                    self.last_error = str(exc)
                    break
        self.handed_off += delivered
        return delivered

    async def _deliver(self, target: str, chunk: list[tuple[str, int]]) -> int:
        node, v = self.node, self.node.versioning
        objects = await node.storage.objects(k for k, _ in chunk)
        payload = {"objects": {k: v.encode(o)[0] for k, o in objects.items()}}
        await node.transport.call(target, "/internal/handoff", payload, timeout=max(2.0, node.cfg.request_timeout))
        node.members.record_ok(target)
        me, n = node.name, node.cfg.n
        ring = node.ring

        def job(txn: Any) -> int:
            dropped = 0
            for key, seq in chunk:
                if txn.drop_hint(target, key, seq):
                    dropped += 1
                    if (not txn.hinted_elsewhere(key) and me not in ring.preference_list(key, n)
                            and txn.get(key) is not None):
                        txn.delete(key)
            return dropped
        return await node.storage.run(job)


async def handoff_loop(handoff: Handoff, interval: float, stopping: asyncio.Event) -> None:
    """Run :meth:`Handoff.run_once` every ``interval`` seconds until stopping."""
    while not stopping.is_set():
        try:
            await handoff.run_once()
        except Exception as exc:
            handoff.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("handoff round failed")
        if await wait_or_stop(stopping, interval):
            return
