"""``lww`` mode: last write wins by the coordinator's wall-clock timestamp (as Cassandra does).

A key holds one version. Of two versions the one with the larger timestamp wins;
ties go to the larger coordinator name, then the larger canonical value, so every
replica picks the same winner. Contexts are checked for well-formedness (a
malformed one is still a client error) but otherwise ignored.

The point of this mode is what it loses: a write stamped earlier than the stored
version (a coordinator whose clock is behind, or a write that failed its quorum
but landed somewhere and later wins by timestamp in read repair) is silently
discarded even though it was acknowledged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from targets.dynamo import bugs

from .causal import TOMBSTONE, check_write_args, decoded, encoded, value_key
from .context import ClockEntry, decode_context, encode_context


@dataclass(frozen=True)
class LwwVersion:
    """The one version kept: value (or TOMBSTONE), coordinator timestamp and name."""

    value: Any = field(compare=False)
    ts: float
    node: str
    vkey: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vkey", value_key(self.value))

    def rank(self) -> tuple[float, str, str]:
        """Total order deciding the winner: timestamp, then node, then value."""
        return (self.ts, self.node, self.vkey)


@dataclass(frozen=True)
class LwwObj:
    """State of one key on one replica in ``lww`` mode (``version`` None = never written)."""

    version: LwwVersion | None = None
    mode: str = "lww"


class LwwVersioning:
    """Last-write-wins registers."""

    mode = "lww"

    def __init__(self, **_ignored: object) -> None:
        pass

    def _check(self, obj: Any) -> LwwObj:
        if not isinstance(obj, LwwObj):
            raise ValueError(f"expected an lww object, got {obj!r:.80}")
        return obj

    def empty(self) -> LwwObj:
        """The state of a key never written on this replica."""
        return LwwObj()

    def write(self, local: LwwObj, context: str | None, value: Any, coordinator: str,
              now: float) -> LwwObj:
        """Stamp the write with ``now`` and keep whichever of it and the stored version wins."""
        self._check(local)
        if context is not None:
            decode_context(context, self.mode)
        now = check_write_args(value, coordinator, now)
        if bugs.active("lww-second-timestamps"):        # bug zoo: whole seconds, ties go by node name
            now = float(int(now))
        return self.merge(local, LwwObj(LwwVersion(value, now, coordinator)))

    def merge(self, a: LwwObj, b: LwwObj) -> LwwObj:
        """The version with the larger (timestamp, node, value) wins."""
        va, vb = self._check(a).version, self._check(b).version
        if va is None:
            return b
        if vb is None:
            return a
        return a if va.rank() >= vb.rank() else b

    def values(self, obj: LwwObj) -> list[Any]:
        """``[value]``, or ``[]`` when absent or deleted."""
        v = self._check(obj).version
        return [] if v is None or v.value is TOMBSTONE else [v.value]

    def sibling_count(self, obj: LwwObj) -> int:
        """1 when a version (value or tombstone) is stored, else 0: LWW never has siblings."""
        return 0 if self._check(obj).version is None else 1

    def is_deleted(self, obj: LwwObj) -> bool:
        """True when absent or the stored version is a tombstone."""
        v = self._check(obj).version
        return v is None or v.value is TOMBSTONE

    def clock(self, obj: LwwObj) -> dict[str, ClockEntry]:
        """The winning version's stamp as a one-entry vector (debug views)."""
        v = self._check(obj).version
        return {} if v is None else {v.node: ClockEntry(v.node, 1, v.ts)}

    def context(self, obj: LwwObj) -> str | None:
        """A well-formed context naming the winning stamp (ignored on write)."""
        clock = self.clock(obj)
        return encode_context(self.mode, list(clock.values())) if clock else None

    def reap(self, obj: LwwObj, now: float, grace: float) -> LwwObj | None:
        """``None`` when the key is absent or a tombstone older than ``grace`` seconds."""
        v = self._check(obj).version
        if v is None or (v.value is TOMBSTONE and now - v.ts > grace):
            return None
        return obj

    def digest(self, obj: LwwObj) -> bytes:
        """SHA-256 of the canonical JSON state."""
        return self.encode(obj)[1]

    def encode(self, obj: LwwObj) -> tuple[str, bytes]:
        """Canonical JSON text of the state and its digest (:func:`.causal.encoded`: once per object)."""
        return encoded(self._check(obj), self.to_json)

    def from_text(self, text: str) -> LwwObj:
        """Inverse of :meth:`encode` (:func:`.causal.decoded`); ``ValueError`` when malformed."""
        return decoded(text, self.from_json)

    def to_json(self, obj: LwwObj) -> dict:
        """JSON form stored on disk and shipped between nodes."""
        v = self._check(obj).version
        if v is None:
            return {"mode": self.mode, "version": None}
        row: dict[str, Any] = {"node": v.node, "ts": v.ts}
        if v.value is TOMBSTONE:
            row["tombstone"] = True
        else:
            row["value"] = v.value
        return {"mode": self.mode, "version": row}

    def from_json(self, data: Any) -> LwwObj:
        """Inverse of :meth:`to_json`; ``ValueError`` when malformed."""
        try:
            if not isinstance(data, dict) or data.get("mode") != self.mode:
                raise ValueError("not an lww object")
            row = data["version"]
            if row is None:
                return LwwObj()
            node, ts = row["node"], row["ts"]
            if not isinstance(node, str) or not node:
                raise ValueError("bad node name in lww object")
            if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
                raise ValueError("bad timestamp in lww object")
            value = TOMBSTONE if row.get("tombstone") is True else row["value"]
            return LwwObj(LwwVersion(value, float(ts), node))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed lww object: {exc!r}") from None
