"""The nemesis plug point: faults injected, probed, and always healed.

A nemesis handles some op ``f`` names (e.g. ``start-partition`` /
``stop-partition``). ``invoke`` performs the fault, *probes* that it took
effect, and returns an :class:`Outcome` saying what was actually done to
which nodes; the runner records it into the history as a nemesis op. A fault
whose probe fails is recorded as such (``probe.ok == False``), never as done.

Besides the probe, an Outcome carries ``effective_ns``: when the fault's
mechanism had taken effect (the iptables rules, transport-fault call,
SIGKILL, SIGSTOP or clock-file write returned). A probe that proves a fault
by an absence (a connect or a request timing out) confirms it a timeout
later, so fault windows open at the effect time, not at the confirmation.

``heal`` undoes everything the nemesis did; it is idempotent and is called on
every exit path (normal end, exception, Ctrl-C, SIGTERM).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from harness.backends.base import Backend, Node
from targets.adapter import Target


@dataclass(frozen=True)
class NemesisOp:
    """One scheduled fault action: ``f`` plus its parameters (JSON-able)."""

    f: str
    value: Any = None


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str
    measurements: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "measurements": dict(self.measurements)}


@dataclass(frozen=True)
class Outcome:
    """What a nemesis action actually did: ``done`` per node (JSON-able), the probe, and how."""

    done: Mapping[str, Any]
    probe: Probe
    mechanism: str              # e.g. "iptables", "in-process transport", "libfaketime", "SIGSTOP"
    #: ``time.monotonic_ns()`` once the mechanism had returned for every node and rule (the whole
    #: fault, or the whole undo, in place); None when it never ran (refused, or it raised)
    effective_ns: int | None = None


def confirmed(done: Mapping[str, Any], probe: Probe, mechanism: str, started_ns: int,
              effective_ns: int | None) -> Outcome:
    """The outcome of an action begun at ``started_ns`` whose mechanism had taken effect at
    ``effective_ns``, probed just now (all ``time.monotonic_ns()``).

    The probe's measurements gain ``mechanism_s`` (begin to in effect) and ``effect_s`` (begin to
    confirmed), so a reader sees how much of an op was the fault and how much its probe.
    """
    now = time.monotonic_ns()
    meas = {**probe.measurements, "effect_s": round((now - started_ns) / 1e9, 4)}
    if effective_ns is not None:
        meas["mechanism_s"] = round((effective_ns - started_ns) / 1e9, 4)
    return Outcome(done=done, probe=Probe(probe.ok, probe.detail, meas), mechanism=mechanism,
                   effective_ns=effective_ns)


@dataclass(frozen=True)
class NemesisContext:
    """What a nemesis works with: where the nodes run (the backend's primitives), the nodes, the
    seed, and the store under test (its admin and capabilities: a nemesis asks the target, never a
    store's endpoints, whether a fault can be done and whether it took effect)."""

    backend: Backend
    nodes: Sequence[Node]
    seed: int
    target: Target


@runtime_checkable
class Nemesis(Protocol):
    name: str
    fs: frozenset[str]

    def setup(self, ctx: NemesisContext) -> None:
        """Check this fault can be done for real here; raise CapabilityError saying why not."""

    def invoke(self, op: NemesisOp) -> Outcome: ...

    def heal(self) -> None: ...
