"""The in-process transport faults a node holds (``/admin/faults``): drop, loss, delay.

:class:`Faults` are the in-process faults of ``/admin/faults``: ``drop`` cuts
every message to and from the listed peers (outgoing calls fail at once as if
refused, incoming requests are rejected), ``loss`` drops that fraction of
messages, ``delay_ms`` +/- ``jitter_ms`` delays each message (for ``peers``, or
every peer when ``peers`` is empty). Both directions are checked (outgoing in
:meth:`Transport.call`, incoming in :meth:`Transport.admit`, which the serving side
calls for every request), so a fault set on one node affects its traffic both ways.

Split from :mod:`targets.dynamo.transport` (which applies them to every message) so that each
module keeps to one concern: this one only parses, validates and answers questions about a
fault set.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


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

    @property
    def active(self) -> bool:
        """Whether any fault is set at all (fast paths skip the per-message checks when not)."""
        return bool(self.drop or self.delay_ms or self.jitter_ms or self.loss)

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
