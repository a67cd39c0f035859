"""Merkle-tree anti-entropy between the replicas of each partition, and tombstone reaping.

Merkle state: one :class:`MerkleTree` per partition, kept in memory and
**rebuilt from SQLite at start** (a full scan of the store), then updated after
every commit. It therefore always matches what is durably stored and survives a
restart by construction, with no second copy that could disagree.

Every ``ae_interval`` the node walks the partitions it replicates; for each it
picks one other up replica (rotating) and:

1. sends its root; the peer answers ``same`` or its tree levels;
2. diffs the levels to the leaf buckets that differ;
3. sends its objects of those buckets; the peer merges them and returns its own
   objects there whose merge differs from what it was sent; this node merges
   those. Both replicas then hold the merge of both.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from targets.dynamo import bugs
from targets.dynamo.eventloop import wait_or_stop
from targets.dynamo.merkle import MerkleTree
from targets.dynamo.transport import PeerUnreachable

log = logging.getLogger("dynamo.antientropy")


class AntiEntropy:
    """Merkle trees of one node plus the exchange protocol (both sides)."""

    def __init__(self, node: Any, leaves: int = 256) -> None:
        self.node = node
        self.trees = {p: MerkleTree(leaves=leaves) for p in range(node.cfg.partitions)}
        self.rounds = 0
        self.exchanges = 0
        self.differing = 0
        self.keys_sent = 0
        self.keys_received = 0
        self.last_round_at: float | None = None
        self.last_error: str | None = None
        self._turn = 0

    def track(self, key: str, obj: Any) -> None:
        """Keep the tree of key's partition in line with storage (obj None = deleted)."""
        tree = self.trees[self.node.ring.partition_of(key)]
        tree.update(key, None if obj is None else self.node.versioning.digest(obj))

    def status(self) -> dict[str, Any]:
        """The ``/admin/antientropy`` body."""
        return {"node": self.node.name, "interval": self.node.cfg.ae_interval, "rounds": self.rounds,
                "exchanges": self.exchanges, "partitions_differing": self.differing,
                "keys_sent": self.keys_sent, "keys_received": self.keys_received,
                "last_round_at": self.last_round_at, "last_error": self.last_error,
                "merkle_state": "rebuilt from storage at start",
                "roots": {p: self.trees[p].root().hex() for p in self.replicated()}}

    def replicated(self) -> list[int]:
        return list(self.node.ring.partitions_replicated_by(self.node.name, self.node.cfg.n))

    # -- initiator -------------------------------------------------------------------------
    async def run_once(self) -> None:
        """One round over every partition this node replicates."""
        node = self.node
        self.rounds += 1
        self._turn += 1
        partitions = self.replicated()
        # spread the round over half the interval so a round never starves client requests
        pace = node.cfg.ae_interval / 2 / max(1, len(partitions))
        for p in partitions:
            await asyncio.sleep(pace)
            peers = [x for x in node.ring.replicas_of_partition(p, node.cfg.n)
                     if x != node.name and node.members.is_up(x)]
            if not peers:
                continue
            peer = peers[self._turn % len(peers)]
            try:
                await self.sync_partition(p, peer)
            except PeerUnreachable as exc:
                node.members.record_failure(peer, exc.reason)
                self.last_error = str(exc)
        self.last_round_at = time.time()

    async def sync_partition(self, p: int, peer: str) -> None:
        """Compare partition ``p`` with ``peer`` and exchange the keys of differing buckets."""
        node, v = self.node, self.node.versioning
        timeout = max(2.0, node.cfg.request_timeout)
        tree = self.trees[p]
        self.exchanges += 1
        reply = await node.transport.call(peer, "/internal/ae/tree", {"partition": p, "root": tree.root().hex()},
                                          timeout)
        if reply.get("same"):
            return
        self.differing += 1
        buckets = MerkleTree.diff(tree.levels(), reply["levels"])
        if not buckets:
            return
        keys = [k for b in buckets for k in tree.keys_in(b)]
        mine = await node.storage.objects(keys)
        answer = await node.transport.call(peer, "/internal/ae/exchange", {
            "partition": p, "buckets": buckets, "objects": {k: v.encode(o)[0] for k, o in mine.items()}}, timeout)
        self.keys_sent += len(mine)
        theirs = answer.get("objects", {})
        self.keys_received += len(theirs)
        await node.storage.merge_many({k: v.from_text(text) for k, text in theirs.items()})

    # -- responder -------------------------------------------------------------------------
    def tree_reply(self, body: dict) -> dict:
        p = _partition(body, len(self.trees))
        tree = self.trees[p]
        if body.get("root") == tree.root().hex() or bugs.active("ae-always-in-sync"):   # bug zoo: always "same"
            return {"same": True}
        return {"same": False, "levels": tree.levels()}

    async def exchange_reply(self, body: dict) -> dict:
        node, v = self.node, self.node.versioning
        p = _partition(body, len(self.trees))
        tree = self.trees[p]
        incoming = {k: v.from_text(text) for k, text in body.get("objects", {}).items()}
        keys = set(incoming)
        for b in body.get("buckets", []):
            keys.update(tree.keys_in(int(b)))

        def job(txn: Any) -> dict:
            back = {}
            for key in keys:
                sent = incoming.get(key)
                new = txn.merge(key, sent)[1] if sent is not None else txn.get(key)
                if new is not None and (sent is None or v.digest(new) != v.digest(sent)):
                    back[key] = v.encode(new)[0]
            return back
        back = await node.storage.run(job)
        return {"objects": back}


def _partition(body: dict, count: int) -> int:
    p = body.get("partition")
    if not isinstance(p, int) or not 0 <= p < count:
        raise ValueError(f"bad partition {p!r}")
    return p


async def antientropy_loop(ae: AntiEntropy, interval: float, stopping: asyncio.Event) -> None:
    """Run an anti-entropy round every ``interval`` seconds until stopping."""
    while not await wait_or_stop(stopping, interval):
        try:
            await ae.run_once()
        except Exception as exc:
            ae.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("anti-entropy round failed")


async def reaper_loop(node: Any, grace: float, stopping: asyncio.Event) -> None:
    """Sweep the store every ``max(1, grace/2)`` s and reap tombstones older than ``grace``.

    A key this node still holds a hint for is not reaped, however old its tombstones: the hint
    is the only way a delete taken by this fallback reaches the primary that was cut off, and
    reaping it would leave the hint nothing to hand off, so the primary's older copy would come
    back through anti-entropy once the other replicas reaped theirs (seen in
    ``examples/cart-deletes.toml``: a ~13 s outage of a primary against a 12 s grace). The
    tombstone goes with the fallback's copy once handoff delivered it; the primary that received
    it reaps it at its own next sweep.
    """
    v = node.versioning
    if bugs.active("tombstone-grace-ms"):               # bug zoo: the grace read as milliseconds
        grace = grace / 1000                            # (so the sweep runs every second too)
    interval = max(1.0, min(grace / 2, 30.0))
    while not await wait_or_stop(stopping, interval):
        after = ""
        for _ in range(100_000):
            keys = await node.storage.keys_page(after, 200)
            if not keys:
                break
            after = keys[-1]

            def job(txn: Any, keys: list[str] = keys) -> int:
                reaped = 0
                now = time.time()
                for key in keys:
                    obj = txn.get(key)
                    if obj is None:
                        continue
                    left = v.reap(obj, now, grace)
                    if left is not obj and txn.hinted_elsewhere(key):
                        continue                # a pending hint still has to carry it (docstring)
                    if left is None:
                        txn.delete(key)
                        reaped += 1
                    elif v.digest(left) != v.digest(obj):
                        txn.put(key, left)
                        reaped += 1
                return reaped
            node.stats["tombstones_reaped"] += await node.storage.run(job)

