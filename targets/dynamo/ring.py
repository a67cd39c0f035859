"""Consistent hashing with Dynamo's partitioning "strategy 3".

The md5 hash space (a ring of 2**128 positions) is cut into ``Q`` equal-size
partitions; partition ``i`` covers positions ``[i * 2**128 / Q, (i + 1) * 2**128 / Q)``.
Each partition's token is held by one physical node. Tokens are dealt round-robin
over the *sorted* node list (as Riak's initial claim does), so

* every node holds ``floor(Q/S)`` or ``ceil(Q/S)`` partitions (balance), and
* any run of consecutive partitions names distinct nodes, so a preference list is
  simply the next ``N`` distinct nodes clockwise,
* every node derives the same ring from the same membership, with no coordination.

A key's preference list is the first ``N`` *distinct physical* nodes met walking
clockwise from the key's partition; :meth:`Ring.walk` continues past them to give
the sloppy-quorum fallbacks in order.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Callable, Sequence

from targets.adapter import TargetError
from targets.dynamo import bugs

RING_BITS = 128
RING_SIZE = 1 << RING_BITS


class RingError(TargetError, ValueError):
    """A ring that cannot be built: no nodes, duplicate names, too few partitions."""


def key_position(key: str) -> int:
    """Position of ``key`` on the 2**128 ring: its md5 as a big-endian integer (as in the paper)."""
    return int.from_bytes(hashlib.md5(key.encode("utf-8")).digest(), "big")


class Ring:
    """The partition -> node map every node computes from the static membership."""

    def __init__(self, nodes: Sequence[str], partitions: int = 64):
        names = [str(n) for n in nodes]
        if not names:
            raise RingError("ring needs at least one node")
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise RingError(f"duplicate node names in ring: {', '.join(dup)}")
        if any(not n for n in names):
            raise RingError("ring node names must be non-empty")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise RingError(f"partitions must be a positive integer, got {partitions!r}")
        if partitions < len(names):
            raise RingError(
                f"partitions ({partitions}) must be at least the number of nodes ({len(names)})")
        self.nodes: tuple[str, ...] = tuple(sorted(names))
        self.partitions: int = partitions
        self._owners: tuple[str, ...] = tuple(
            self.nodes[i % len(self.nodes)] for i in range(partitions))
        self._replicas = lru_cache(maxsize=None)(self._compute_replicas)
        #: ``partition_of(key)``: :meth:`_partition_of`, remembered per key (a request asks for
        #: its key's partition several times: its plan, its row, its Merkle leaf)
        self.partition_of: Callable[[str], int] = lru_cache(maxsize=1 << 16)(self._partition_of)

    def __repr__(self) -> str:
        return f"Ring(nodes={list(self.nodes)!r}, partitions={self.partitions})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ring) and (self.nodes, self.partitions) == (
            other.nodes, other.partitions)

    def __hash__(self) -> int:
        return hash((self.nodes, self.partitions))

    def _partition_of(self, key: str) -> int:
        """Index of the partition whose range holds ``key``'s md5 position."""
        return (key_position(key) * self.partitions) >> RING_BITS

    def owner(self, partition: int) -> str:
        """Node holding ``partition``'s token (the first replica of its keys)."""
        self._check_partition(partition)
        return self._owners[partition]

    def _check_partition(self, partition: int) -> None:
        if isinstance(partition, bool) or not isinstance(partition, int) or not (
                0 <= partition < self.partitions):
            raise ValueError(f"partition must be in 0..{self.partitions - 1}, got {partition!r}")

    def _compute_replicas(self, partition: int) -> tuple[str, ...]:
        """Every distinct node walking clockwise from ``partition`` (cached per partition)."""
        seen: list[str] = []
        # bug zoo: the walk stops at the last partition instead of wrapping around
        steps = self.partitions - partition if bugs.active("ring-wrap-truncated") else self.partitions
        for step in range(steps):
            node = self._owners[(partition + step) % self.partitions]
            if node not in seen:
                seen.append(node)
                if len(seen) == len(self.nodes):
                    break
        return tuple(seen)

    def walk_partition(self, partition: int) -> list[str]:
        """Every distinct node clockwise from ``partition``: primaries first, then fallbacks."""
        self._check_partition(partition)
        return list(self._replicas(partition))

    def walk(self, key: str) -> list[str]:
        """Every distinct node clockwise from ``key``: the sloppy quorum takes the first healthy N."""
        return self.walk_partition(self.partition_of(key))

    def replicas_of_partition(self, partition: int, n: int) -> list[str]:
        """The ``n`` primary replicas of ``partition`` (all nodes if ``n`` exceeds the cluster)."""
        self._check_n(n)
        return self.walk_partition(partition)[:n]

    def preference_list(self, key: str, n: int) -> list[str]:
        """First ``n`` distinct physical nodes clockwise from ``key`` (its primary replicas)."""
        return self.replicas_of_partition(self.partition_of(key), n)

    def partitions_replicated_by(self, node: str, n: int) -> list[int]:
        """Partitions whose preference list holds ``node``: the key ranges it anti-entropies."""
        self._check_n(n)
        return [p for p in range(self.partitions) if node in self._replicas(p)[:n]]

    @staticmethod
    def _check_n(n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"replica count n must be a positive integer, got {n!r}")

    def to_json(self) -> dict:
        """The ring as the admin API shows it: nodes, Q, and the owner of every partition."""
        counts = {node: 0 for node in self.nodes}
        for node in self._owners:
            counts[node] += 1
        return {
            "hash": "md5",
            "ring_bits": RING_BITS,
            "nodes": list(self.nodes),
            "partitions": self.partitions,
            "owners": list(self._owners),
            "partitions_per_node": counts,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Ring":
        """Rebuild a ring from :meth:`to_json` output (the owners follow from nodes and Q)."""
        try:
            return cls(data["nodes"], data["partitions"])
        except (KeyError, TypeError) as exc:
            raise RingError(f"malformed ring description: {exc}") from None
