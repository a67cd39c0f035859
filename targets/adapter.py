"""What a target (the store under test) provides to the harness.

The harness is target-agnostic: it starts nodes with ``node_command``, talks
to them through a :class:`TargetClient`, and asks ``clock`` to verify clock
skew. ``targets.dynamo`` is the reference implementation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence


class OpFailed(Exception):
    """The request definitely did not take effect (history type ``fail``)."""


class OpIndeterminate(Exception):
    """The request may or may not have taken effect: timeout, broken connection,
    or a write that missed its quorum after reaching some replicas (``info``)."""


@dataclass(frozen=True)
class ReadResult:
    """All sibling values a read returned, plus the opaque causal context."""

    values: tuple[Any, ...]          # live sibling values (tombstones excluded); () when not found
    context: str | None              # pass back on the next write to supersede what was read
    found: bool


@dataclass(frozen=True)
class WriteResult:
    context: str | None              # context of the version just written (chain writes with it)


class TargetClient(Protocol):
    """Async client bound to one node (the coordinator of every request it sends)."""

    node: str

    async def get(self, key: str, *, r: int | None = None, pr: int | None = None,
                  timeout: float | None = None) -> ReadResult: ...

    async def put(self, key: str, value: Any, context: str | None = None, *, w: int | None = None,
                  pw: int | None = None, timeout: float | None = None) -> WriteResult: ...

    async def delete(self, key: str, context: str | None = None, *, w: int | None = None,
                     pw: int | None = None, timeout: float | None = None) -> None: ...

    async def clock(self) -> float:
        """The node's current wall clock (seconds since the epoch, as the node sees it)."""

    async def health(self) -> bool: ...

    async def peers_down(self) -> list[str]:
        """Peers this node currently considers down. Before clients start, the harness waits
        (bounded) until every node reports none, as Jepsen waits for a cluster to converge: a
        node that started before its peers must not make start-up look like a fault. A target
        without membership returns []."""

    async def pending_handoffs(self) -> int:
        """Work the node still owes its peers after faults heal (e.g. hinted handoffs not yet
        delivered). The harness waits, bounded, until every node says 0 before the final reads, so
        an acknowledged write still in transit is not counted as lost. A target without such
        state returns 0."""

    async def close(self) -> None: ...


class Target(Protocol):
    name: str

    def node_command(self, node: str, host: str, port: int, data_dir: str,
                     peers: Mapping[str, str], settings: Mapping[str, Any],
                     python: str = "python3") -> Sequence[str]:
        """argv that starts one node in the foreground (the backend daemonizes/supervises it)."""

    def client(self, node: str, url: str, *, timeout: float) -> TargetClient: ...
