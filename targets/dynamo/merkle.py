"""Merkle trees for anti-entropy: one tree per partition, leaves are hash buckets of keys.

A key lands in leaf ``bucket_of(key)`` (BLAKE2b of the key, a hash unrelated to
the ring's md5 so that the keys of one partition spread over all leaves). A leaf
hashes the sorted ``(key, digest)`` pairs in it; an inner node hashes its two
children. Two replicas exchange :meth:`MerkleTree.levels` (plain hex strings,
JSON-able) and :meth:`MerkleTree.diff` walks down only the subtrees whose hashes
differ, naming the leaf buckets whose keys must be compared. Hashes are
recomputed lazily, only along dirty paths.
"""
from __future__ import annotations

import hashlib
from typing import Any

HASH_BYTES = 16


def _h(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


EMPTY_LEAF = _h(b"")


class MerkleTree:
    """Hash tree over ``leaves`` buckets of ``key -> digest`` (``leaves`` a power of two)."""

    def __init__(self, leaves: int = 256):
        if isinstance(leaves, bool) or not isinstance(leaves, int) or leaves < 1 or (
                leaves & (leaves - 1)):
            raise ValueError(f"leaves must be a power of two >= 1, got {leaves!r}")
        self.leaves = leaves
        self._buckets: list[dict[str, bytes]] = [{} for _ in range(leaves)]
        depth = leaves.bit_length() - 1
        # _levels[0] is the root level, _levels[depth] the leaves
        self._levels: list[list[bytes]] = [[b""] * (1 << d) for d in range(depth + 1)]
        self._dirty: set[int] = set(range(leaves))

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets)

    def bucket_of(self, key: str) -> int:
        """Leaf bucket holding ``key``."""
        h = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(h, "big") % self.leaves

    def update(self, key: str, digest: bytes | None) -> None:
        """Record ``key``'s current state digest; ``None`` removes the key."""
        bucket = self.bucket_of(key)
        entries = self._buckets[bucket]
        if digest is None:
            if entries.pop(key, None) is None:
                return
        else:
            if not isinstance(digest, (bytes, bytearray)):
                raise TypeError("digest must be bytes or None")
            digest = bytes(digest)
            if entries.get(key) == digest:
                return
            entries[key] = digest
        self._dirty.add(bucket)

    def _refresh(self) -> None:
        if not self._dirty:
            return
        depth = len(self._levels) - 1
        leaf_level = self._levels[depth]
        for b in self._dirty:
            entries = self._buckets[b]
            if not entries:
                leaf_level[b] = EMPTY_LEAF
                continue
            acc = hashlib.blake2b(digest_size=HASH_BYTES)
            for key in sorted(entries):
                kb = key.encode("utf-8")
                acc.update(len(kb).to_bytes(4, "big") + kb)
                d = entries[key]
                acc.update(len(d).to_bytes(4, "big") + d)
            leaf_level[b] = acc.digest()
        dirty = set(self._dirty)
        for d in range(depth - 1, -1, -1):
            dirty = {i >> 1 for i in dirty}
            below, here = self._levels[d + 1], self._levels[d]
            for i in dirty:
                here[i] = _h(below[2 * i] + below[2 * i + 1])
        self._dirty.clear()

    def root(self) -> bytes:
        """Hash of the whole tree: equal roots mean (overwhelmingly likely) equal contents."""
        self._refresh()
        return self._levels[0][0]

    def levels(self) -> list[list[str]]:
        """Hex hashes per level, root first: what one replica sends another."""
        self._refresh()
        return [[h.hex() for h in level] for level in self._levels]

    @staticmethod
    def diff(a_levels: Any, b_levels: Any) -> list[int]:
        """Leaf buckets whose hashes differ, visiting only subtrees whose hashes differ.

        ``ValueError`` when the two trees do not have the same shape.
        """
        _check_levels(a_levels)
        _check_levels(b_levels)
        if len(a_levels) != len(b_levels):
            raise ValueError("Merkle trees have different depths")
        frontier = [0]
        for d in range(len(a_levels)):
            frontier = [i for i in frontier if a_levels[d][i] != b_levels[d][i]]
            if d + 1 < len(a_levels):
                frontier = [c for i in frontier for c in (2 * i, 2 * i + 1)]
        return frontier

    def keys_in(self, bucket: int) -> dict[str, bytes]:
        """Keys (and digests) in one leaf bucket: what replicas compare after a diff."""
        if not 0 <= bucket < self.leaves:
            raise ValueError(f"bucket must be in 0..{self.leaves - 1}")
        return dict(self._buckets[bucket])

    def to_json(self) -> dict:
        """Persistable form: leaf count and every key's digest (hashes are recomputed)."""
        keys = {k: d.hex() for bucket in self._buckets for k, d in bucket.items()}
        return {"leaves": self.leaves, "keys": dict(sorted(keys.items()))}

    @staticmethod
    def from_json(d: Any) -> "MerkleTree":
        """Inverse of :meth:`to_json`; ``ValueError`` when malformed."""
        try:
            tree = MerkleTree(d["leaves"])
            for key, hexdigest in d["keys"].items():
                if not isinstance(key, str):
                    raise ValueError("Merkle key is not a string")
                tree.update(key, bytes.fromhex(hexdigest))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed Merkle tree: {exc!r}") from None
        return tree


def _check_levels(levels: Any) -> None:
    if not isinstance(levels, list) or not levels:
        raise ValueError("Merkle levels must be a non-empty list")
    for d, level in enumerate(levels):
        if not isinstance(level, list) or len(level) != (1 << d):
            raise ValueError(f"Merkle level {d} must hold {1 << d} hashes")
