"""Workloads: what clients do to the store, and which checkers judge it.

A workload is built from the spec's ``[workload]`` table and gives the
runner three things: a :class:`~harness.generators.Generator` of ops (all
randomness from the worker's own stream), ``execute`` (one op against a
:class:`~targets.adapter.TargetClient`, returning a :class:`Completion`),
and the keys the final reads cover. Op fields per workload are fixed by
``docs/contracts.md`` section 2.

Workloads are the ``dynharness.workloads`` entry-point group (``harness.plugins``): each names a
:class:`WorkloadKind`; :func:`build` makes the one a spec names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Protocol, Sequence

from harness import plugins
from harness.generators import Generator, OpRequest
from harness.ops import FAIL, INFO, OK

if TYPE_CHECKING:
    from harness.spec import WorkloadSpec
    from targets.adapter import TargetClient

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class WorkloadKind:
    """One workload as the ``dynharness.workloads`` entry-point group registers it.

    What the harness must know before building it (the spec's op mix is checked against ``mix``;
    ``checkers`` judge its histories, ``docs/contracts.md`` section 3) and how to build it for a
    spec, a client count and the node names.
    """

    name: str
    build: "Callable[[WorkloadSpec, int, tuple[str, ...]], Workload]"
    mix: Mapping[str, float]            # op f -> default weight; the ops the workload can issue
    checkers: tuple[str, ...]
    needs: tuple[str, ...] = ()         # target capabilities it needs (e.g. ``cas``): checked by the spec


def kind(name: str) -> WorkloadKind:
    """The registered workload called ``name`` (UserError naming the known ones otherwise)."""
    return plugins.load("workloads", name, "workload")


def names() -> tuple[str, ...]:
    """Every registered workload name."""
    return plugins.names("workloads")


def default_mix(name: str) -> dict[str, float]:
    """The op weights a workload uses when the spec gives none."""
    return dict(kind(name).mix)


def checker_names(name: str) -> tuple[str, ...]:
    """The checkers that judge a workload's histories (contracts section 3)."""
    return tuple(kind(name).checkers)


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
    """The workload named in the spec (its module imported only now)."""
    return kind(spec.name).build(spec, concurrency, tuple(node_names))


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
