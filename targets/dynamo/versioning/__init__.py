"""Versioning of stored values, one mode per cluster: ``vclock``, ``dvv`` or ``lww``.

A node builds one :class:`Versioning` with :func:`for_mode` and treats the
objects it returns as opaque, immutable, JSON-serialisable state of one key on
one replica. The coordinator calls :meth:`Versioning.write` for a client write
(``value`` may be :data:`TOMBSTONE` for a delete) and ships the result to the
other replicas, which :meth:`Versioning.merge` it into what they hold; read repair,
hinted handoff and anti-entropy use the same merge, which is commutative,
associative and idempotent in every mode, so replicas converge.
"""
from __future__ import annotations

from typing import Any, Protocol

from .causal import TOMBSTONE, CausalObj
from .context import ClockEntry, ContextError
from .dvv import DvvVersioning
from .lww import LwwObj, LwwVersioning
from .vclock import VClockVersioning

Obj = Any  # CausalObj in vclock/dvv mode, LwwObj in lww mode; opaque to callers

MODES = ("vclock", "dvv", "lww")


class Versioning(Protocol):
    """How one node versions values (see module docstring)."""

    mode: str

    def empty(self) -> Obj:
        """State of a key never written here."""

    def write(self, local: Obj, context: str | None, value: Any, coordinator: str,
              now: float) -> Obj:
        """Apply a client write coordinated here; ContextError on a bad context."""

    def merge(self, a: Obj, b: Obj) -> Obj:
        """Replica merge: commutative, associative, idempotent."""

    def values(self, obj: Obj) -> list[Any]:
        """Live sibling values (tombstones excluded), deterministic order."""

    def sibling_count(self, obj: Obj) -> int:
        """Versions kept, tombstones included."""

    def is_deleted(self, obj: Obj) -> bool:
        """Every sibling is a tombstone (or there is none)."""

    def context(self, obj: Obj) -> str | None:
        """Opaque string covering every version in ``obj``."""

    def clock(self, obj: Obj) -> dict[str, ClockEntry]:
        """The object's version vector (for admin/debug views)."""

    def reap(self, obj: Obj, now: float, grace: float) -> Obj | None:
        """Drop tombstones older than ``grace``; None = the whole key can go."""

    def digest(self, obj: Obj) -> bytes:
        """Stable hash of the state (Merkle leaves)."""

    def encode(self, obj: Obj) -> tuple[str, bytes]:
        """Canonical JSON text of the state (what storage writes and peers exchange) and its
        :meth:`digest`; computed once per object."""

    def from_text(self, text: str) -> Obj:
        """Inverse of encode (a stored row, a peer's message); ValueError when malformed."""

    def to_json(self, obj: Obj) -> Any:
        """JSON form (what encode serialises; admin views)."""

    def from_json(self, data: Any) -> Obj:
        """Inverse of to_json; ValueError when malformed."""


def for_mode(mode: str, *, vclock_max: int = 10) -> Versioning:
    """The versioning a cluster runs; ``ValueError`` on an unknown mode."""
    if mode == "vclock":
        return VClockVersioning(vclock_max=vclock_max)
    if mode == "dvv":
        return DvvVersioning()
    if mode == "lww":
        return LwwVersioning()
    raise ValueError(f"unknown versioning mode {mode!r} (expected one of {', '.join(MODES)})")


__all__ = ["TOMBSTONE", "ContextError", "ClockEntry", "Versioning", "for_mode", "MODES",
           "CausalObj", "LwwObj", "VClockVersioning", "DvvVersioning", "LwwVersioning"]
