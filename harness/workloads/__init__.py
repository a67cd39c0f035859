"""Workloads: what clients do to the store, and which checkers judge it.

A workload is built from the spec's ``[workload]`` table and gives the
runner three things: a :class:`~harness.generators.Generator` of ops (all
randomness from the worker's own stream), ``execute`` (one op against a
:class:`~targets.adapter.TargetClient`, returning a :class:`Completion`),
and the keys the final reads cover. Op fields per workload are fixed by
``docs/contracts.md`` section 2.

Registry: ``WORKLOADS`` names them; :func:`build` makes one.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Awaitable, Mapping, Protocol, Sequence

from harness.generators import Generator, OpRequest
from harness.ops import FAIL, INFO, OK

if TYPE_CHECKING:
    from harness.spec import WorkloadSpec
    from targets.adapter import TargetClient

#: name -> (module, default op mix, checker names)
WORKLOADS: Mapping[str, tuple[str, Mapping[str, float], tuple[str, ...]]] = MappingProxyType({
    "cart": ("harness.workloads.cart", {"add": 6.0, "remove": 1.0, "read": 3.0},
             ("lost-writes", "resurrections", "siblings", "perf")),
    "register": ("harness.workloads.register", {"write": 1.0, "read": 1.0},
                 ("linearizable", "staleness", "siblings", "perf")),
    "session": ("harness.workloads.session", {"write": 1.0, "read": 2.0},
                ("session", "staleness", "siblings", "perf")),
})

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def default_mix(name: str) -> dict[str, float]:
    """The op weights a workload uses when the spec gives none."""
    return dict(WORKLOADS[name][1]) if name in WORKLOADS else {}


def checker_names(name: str) -> tuple[str, ...]:
    """The checkers that judge a workload's histories (contracts section 3)."""
    return WORKLOADS[name][2]


@dataclass(frozen=True)
class Completion:
    """How an op ended: the completion's type and the fields the workload records."""

    type: str
    value: Any = None
    error: str | None = None
    siblings: int | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @staticmethod
    def ok(value: Any = None, siblings: int | None = None, **extra: Any) -> "Completion":
        return Completion(OK, value, None, siblings, MappingProxyType(extra) if extra else _EMPTY)

    @staticmethod
    def fail(error: str, value: Any = None, siblings: int | None = None, **extra: Any) -> "Completion":
        return Completion(FAIL, value, error, siblings, MappingProxyType(extra) if extra else _EMPTY)

    @staticmethod
    def info(error: str, value: Any = None, siblings: int | None = None, **extra: Any) -> "Completion":
        return Completion(INFO, value, error, siblings, MappingProxyType(extra) if extra else _EMPTY)


class Workload(Protocol):
    """One workload, built for a given spec, concurrency and node list."""

    name: str
    checkers: tuple[str, ...]

    def generator(self) -> Generator:
        """The op generator every worker draws from (per-worker state lives in ``GenContext.state``)."""

    def final_keys(self) -> list[str]:
        """Every key the final reads must cover."""

    async def execute(self, client: "TargetClient", req: OpRequest, session: dict[str, Any]) -> Completion:
        """Run one op; ``session`` is the worker's private state (e.g. contexts per key)."""

    async def final_read(self, client: "TargetClient", key: str) -> Completion:
        """One final read of ``key`` (f ``read``), value as the workload's reads record it."""


def build(spec: "WorkloadSpec", concurrency: int, node_names: Sequence[str]) -> Workload:
    """The workload named in the spec (modules imported lazily)."""
    module = importlib.import_module(WORKLOADS[spec.name][0])
    return module.build(spec, concurrency, tuple(node_names))


def sorted_values(values: Sequence[Any]) -> list[Any]:
    """Sibling values in a stable order, even when types are mixed (a corrupt store)."""
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)


def error_text(e: BaseException) -> str:
    """One line describing a client error (the ``error`` field of fail/info ops)."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg and type(e).__name__ not in ("OpFailed", "OpIndeterminate") else (msg or type(e).__name__)


async def attempt(call: Awaitable[Any], value: Any = None, siblings: int | None = None,
                  prefix: str = "", indeterminate_is_fail: bool = False) -> tuple[Any, Completion | None]:
    """Await one client call: ``(result, None)``, or ``(None, completion)`` when the store said no.

    ``OpFailed`` becomes ``fail`` and ``OpIndeterminate`` ``info`` (or ``fail``
    when nothing can have been written, e.g. the read of a read-modify-write).
    """
    from targets.adapter import OpFailed, OpIndeterminate

    try:
        return await call, None
    except OpFailed as e:
        return None, Completion.fail(prefix + error_text(e), value, siblings)
    except OpIndeterminate as e:
        if indeterminate_is_fail:
            return None, Completion.fail(prefix + error_text(e), value, siblings)
        return None, Completion.info(prefix + error_text(e), value, siblings)
