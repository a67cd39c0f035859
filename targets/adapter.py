"""What a target (the store under test) provides to the harness: the one plug point for a store.

A target owns everything about its store, so that the harness never names one:

* its **settings**: :meth:`Target.resolve_settings` merges a spec's ``[target]`` table over the
  store's defaults and refuses, in one line (:class:`TargetError`), a setting it does not know
  or a value out of range;
* how a node **starts** (:meth:`Target.node_command`) and how many ports it needs;
* a **client** for the workloads (:class:`TargetClient`, async, one per node);
* a **node admin** for nemeses and backends (:class:`NodeAdmin`, synchronous: health, and,
  where the store has them, its clock and its in-process fault hooks);
* its **capabilities** (:data:`CAPABILITIES`), so a nemesis can refuse what the store cannot
  take instead of reporting a fault that never happened.

Targets are found by name through the ``dynharness.targets`` entry-point group
(``harness.plugins``); ``targets.dynamo`` and ``targets.etcd`` are registered the same way as a
user's own. This module is ground: it imports nothing from the harness, so a target package
that imports only this module ships into a node image alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence


#: Environment variable through which a backend hands every node of a cluster the cluster's
#: secret (made per cluster by the harness). A store that authenticates its admin and peer
#: traffic reads it at start; :attr:`Node.secret` carries the same value to the target's
#: ``NodeAdmin``. An environment variable, not an argument: a node's argv is readable by every
#: user of its host (``ps``), its environment only by its own user and root.
NODE_SECRET_ENV = "DYNHARNESS_NODE_SECRET"


class OpFailed(Exception):
    """The request definitely did not take effect (history type ``fail``)."""


class OpIndeterminate(Exception):
    """The request may or may not have taken effect: timeout, broken connection,
    or a write that missed its quorum after reaching some replicas (``info``)."""


class TargetError(Exception):
    """A setting the target does not know, a bad value, or a store this machine lacks: one line.

    The harness shows it as ``dynharness: error: ...`` and exits 3, as any bad input."""

    exit_code = 3


class AdminError(Exception):
    """An admin request that got no usable answer (refused, timed out, non-2xx): one line."""


#: What a target may declare it can do beyond starting nodes and serving clients:
#: ``clock``             NodeAdmin.clock reads the node's own wall clock (clock nemesis probe);
#: ``transport-faults``  NodeAdmin.set_faults drops/delays peer messages inside the node
#:                       (partition/loss/latency without root), probed with NodeAdmin.peer_probe;
#: ``replica-reads``     the client's ``get(r=N)`` reads every replica (final reads use it);
#: ``wipe``              a node restarted with an empty data dir rejoins by itself (Dynamo: hinted
#:                       handoff and anti-entropy refill it; etcd: no, raft needs a member change);
#: ``peer-source-address`` the node's outgoing peer connections leave from its own host address, so
#:                       iptables ``-s A -d B`` rules separate nodes that share one host (the local
#:                       backend, where it cannot put each node in a cgroup of its own). etcd dials
#:                       from the host's default 127.0.0.1.
#: ``cas``               the client has ``cas(key, expected, new) -> bool``: compare-and-set, True when
#:                       it wrote, False when the compare failed (etcd: a transaction). The
#:                       cas-register workload needs it.
#: ``replica-snapshot``  NodeAdmin.replica_snapshot shows what one node itself stores for some keys,
#:                       without coordinating or repairing anything (the convergence checker).
#: ``preference-list``   the target is a :class:`ReplicaPlacement`: it says which nodes hold a key's
#:                       replicas, before any node starts (the nemesis's ``replicas`` targets).
CAPABILITIES = ("clock", "transport-faults", "replica-reads", "wipe", "peer-source-address", "cas",
                "replica-snapshot", "preference-list")


@dataclass(frozen=True)
class ReadResult:
    """All sibling values a read returned, plus the opaque causal context."""

    values: tuple[Any, ...]          # live sibling values (tombstones excluded); () when not found
    context: str | None              # pass back on the next write to supersede what was read
    found: bool


@dataclass(frozen=True)
class WriteResult:
    context: str | None              # context of the version just written (chain writes with it)


@dataclass(frozen=True)
class Node:
    """One node as the harness sees it.

    ``host``/``port``: where clients and peers reach it (every node has its
    own IP so iptables rules between nodes mean something: 127.0.0.1x on the
    local backend, fixed container IPs on Docker, the host on SSH).
    ``clock_file``: the libfaketime control file *on the node* (None when the
    node runs without libfaketime).
    ``secret``: the cluster's node secret (:data:`NODE_SECRET_ENV`), for admin calls; kept out
    of ``repr`` so that no error message, log or report shows it.
    """

    name: str
    host: str
    port: int
    data_dir: str
    clock_file: str | None = None
    secret: str | None = field(default=None, repr=False, compare=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class TargetClient(Protocol):
    """Async client bound to one node (the coordinator of every request it sends)."""

    node: str

    async def get(self, key: str, *, r: int | None = None, pr: int | None = None,
                  timeout: float | None = None) -> ReadResult: ...

    async def put(self, key: str, value: Any, context: str | None = None, *, w: int | None = None,
                  pw: int | None = None, timeout: float | None = None) -> WriteResult: ...

    async def delete(self, key: str, context: str | None = None, *, w: int | None = None,
                     pw: int | None = None, timeout: float | None = None) -> None: ...

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


class NodeAdmin(Protocol):
    """Synchronous calls to one node outside the workload; nemeses and backends use them from
    threads and exit paths, so every call has a hard timeout.

    ``health`` is required. The rest exist only when the target declares the capability named
    beside them; the harness never calls one it was not promised."""

    def health(self, node: Node, timeout: float = 1.0) -> tuple[bool, str]:
        """(answered ok, why not): a real request through the node's serving path."""

    def clock(self, node: Node, timeout: float = 2.0) -> float:
        """``clock``: the node's wall clock, seconds since the epoch; AdminError when unanswered."""

    def faults(self, node: Node, timeout: float = 2.0) -> Mapping[str, Any]:
        """``transport-faults``: the in-process fault set the node holds now."""

    def set_faults(self, node: Node, faults: Mapping[str, Any], timeout: float = 2.0) -> None:
        """``transport-faults``: replace the node's in-process fault set ({drop, loss, peers,
        delay_ms, jitter_ms}); AdminError when refused."""

    def clear_faults(self, node: Node, timeout: float = 2.0) -> None:
        """``transport-faults``: remove every in-process fault on the node."""

    def peer_probe(self, node: Node, sender: str, timeout: float = 2.0) -> tuple[str, float]:
        """``transport-faults``: a request ``node`` treats as coming from peer ``sender``:
        ("admitted" | "rejected" | "timeout" | "error:...", seconds)."""

    def replica_snapshot(self, node: Node, keys: Sequence[str], timeout: float = 5.0) -> Mapping[str, Any]:
        """``replica-snapshot``: what ``node`` itself stores for each key, read without coordinating
        and without repairing anything (asking every node must not change what the next one shows).

        ``{key: {"held": bool, "versions": [id, ...], "values": [...], "tombstones": int,
        "preference": [node, ...]}}``: ``versions`` are opaque ids of the *live* versions this copy
        keeps (equal ids, equal versions, across nodes), ``values`` theirs, ``tombstones`` how many
        deletes it keeps, ``preference`` the nodes that should hold the key (the same from every
        node). AdminError when the node does not answer."""


@dataclass(frozen=True)
class ZooScenario:
    """A short run meant to expose bugs of a target's bug zoo, as data for ``dynharness selftest``.

    ``overrides`` are dotted test-spec fields (``{"workload.name": "register", "duration": 10}``);
    ``needs`` names plug-ins the scenario cannot catch anything without, as ``group:name``
    (``checkers:convergence``): until they are registered the scenario is listed, not run."""

    name: str
    summary: str
    overrides: Mapping[str, Any]
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ZooBug:
    """A deliberate bug a target can be started with (its ``bug`` setting) and the scenarios
    meant to expose it."""

    name: str
    area: str
    summary: str
    scenarios: tuple[str, ...]


@dataclass(frozen=True)
class BugZoo:
    """A target's bug zoo: the optional ``Target.zoo`` member that ``dynharness selftest`` reads.
    A run with ``[target] bug = NAME`` starts every node with that bug."""

    bugs: Mapping[str, ZooBug]
    scenarios: Mapping[str, ZooScenario]


class Target(Protocol):
    """One store under test. See the module docstring; ``docs/contracts.md`` section 1."""

    name: str
    capabilities: frozenset[str]
    admin: NodeAdmin
    #: TCP ports each node listens on: the backend gives node_command ``port`` and keeps
    #: ``port+1 .. port+ports_per_node-1`` free for it too (e.g. etcd's peer port).
    ports_per_node: int
    #: Python packages a node runs from (shipped into node images); () for a store installed
    #: from the system's packages.
    node_packages: tuple[str, ...]
    #: Debian packages a node needs (installed into node images; checked before a local run).
    system_packages: tuple[str, ...]

    def resolve_settings(self, given: Mapping[str, Any], nodes: int) -> dict[str, Any]:
        """Every setting the nodes run with: ``given`` over the defaults, validated for a cluster
        of ``nodes`` nodes. TargetError (one line) for an unknown setting or a bad value."""

    def summary(self, settings: Mapping[str, Any]) -> str:
        """One line naming the settings that matter, for the CLI and reports (``N=3 R=2 W=2 ...``)."""

    def check_installed(self) -> None:
        """TargetError with a one-line hint when this machine cannot start a node locally."""

    def node_command(self, node: str, host: str, port: int, data_dir: str,
                     peers: Mapping[str, str], settings: Mapping[str, Any],
                     python: str = "python3") -> Sequence[str]:
        """argv that starts one node in the foreground (the backend daemonizes/supervises it).
        ``peers`` maps every node name to its ``host:port``."""

    def client(self, node: str, url: str, *, timeout: float, settings: Mapping[str, Any],
               secret: str | None = None) -> TargetClient:
        """An async client whose requests ``node`` serves. ``secret``: the cluster's secret
        (:attr:`Node.secret`), for whatever the client reads that the store guards with it (the
        reference Dynamo's ``/admin`` views). Optional: the harness passes it only to a ``client``
        that takes a ``secret`` parameter, so a target without one works as before."""


class ReplicaPlacement(Protocol):
    """A target with the ``preference-list`` capability: where the store puts a key's replicas."""

    def preference_list(self, key: str, nodes: Sequence[str], settings: Mapping[str, Any]) -> tuple[str, ...]:
        """The nodes that hold ``key``'s replicas in a cluster of ``nodes`` running with ``settings``
        (its home replicas, before any fallback a failure brings in), computed as the store does."""
