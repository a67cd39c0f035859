"""The cluster backend plug point: where nodes run and how faults reach them.

A backend owns node *processes* (local processes, containers, remote
daemons) and offers the primitives every nemesis is built from: signals,
a command run in the node's network/clock context, a file written on the
node. Nemeses never talk to Docker or SSH directly; they go through this.

Backends: ``local`` (harness.backends.local), ``docker`` and ``ssh``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol, Sequence, runtime_checkable

from targets.adapter import Node, Target

__all__ = ["Backend", "CAPABILITIES", "ClusterConfig", "CommandResult", "Node"]  # Node: targets.adapter


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "CommandResult":
        """Raise RuntimeError with the command's stderr when it failed."""
        if self.returncode != 0:
            raise RuntimeError(f"{' '.join(self.argv)} exited {self.returncode}: {self.stderr.strip()[:300]}")
        return self


@dataclass(frozen=True)
class ClusterConfig:
    """What a backend needs to start a cluster: the store, names, its settings, where to put things."""

    target: Target                              # the store under test: how a node starts, its health check
    nodes: tuple[str, ...]                      # ("n1", "n2", ...)
    settings: Mapping[str, object]              # the target's resolved settings (Target.resolve_settings)
    run_dir: Path                               # node logs and local data dirs live under here
    faketime: bool = True                       # start nodes under libfaketime when available (the runner:
                                                # only for a target with the ``clock`` capability)
    extra: Mapping[str, object] = field(default_factory=dict)   # leave_running, features, and
                                                # progress: a callable(str) for one line about a slow
                                                # setup step (the Docker image build), when the run
                                                # shows progress


#: Capability names a backend may offer; nemeses refuse (CapabilityError) what is missing. What the
#: store itself can take (in-process transport faults, a clock to probe) is the target's:
#: ``targets.adapter.CAPABILITIES``.
#: ``shared-host``: every node shares one host's network (the local backend's loopback addresses).
#: ``node-cgroups``: (local) every node runs in a cgroup of its own and drop rules match the sender's
#: processes (``harness.backends.node_cgroups``), so any store's nodes, and only this run's, are cut.
#: ``power-loss``: the nodes' data dirs are lazy disks (set up when ``ClusterConfig.extra["features"]``
#: names ``lazy-disks``), and ``backend.power_loss(node, torn)`` drops what a down node never fsynced.
CAPABILITIES = ("signals", "iptables", "faketime", "wipe", "shared-host", "node-cgroups", "power-loss")


@runtime_checkable
class Backend(Protocol):
    """Where nodes run. Every method is safe to call on any exit path."""

    name: str
    capabilities: frozenset[str]
    #: iptables chain this run owns on each node (local: one chain on the host shared by all nodes).
    firewall_chain: str
    #: the store the nodes run (from setup's ClusterConfig, or the cluster state on re-attach)
    target: Target

    def setup(self, config: ClusterConfig) -> list[Node]:
        """Create and start every node; return once all answer health checks (UserError otherwise)."""

    def teardown(self) -> None:
        """Stop every node and remove everything the backend created (idempotent)."""

    def nodes(self) -> list[Node]: ...

    def start(self, node: str) -> None:
        """Start a stopped/killed node with its data (waits for health)."""

    def kill(self, node: str) -> None:
        """SIGKILL the node's server process."""

    def pause(self, node: str) -> None:
        """SIGSTOP the node's server process."""

    def resume(self, node: str) -> None:
        """SIGCONT the node's server process."""

    def wipe(self, node: str) -> None:
        """Delete the node's data directory (the node must be down)."""

    def is_running(self, node: str) -> bool:
        """Whether the node's server process exists (it may be paused)."""

    def run(self, node: str, argv: Sequence[str], timeout: float = 10.0) -> CommandResult:
        """Run argv in the node's network and clock context (local: on the host; docker: in the
        container; ssh: on the host, quoted, with sudo when needed)."""

    def write_file(self, node: str, path: str, data: bytes) -> None:
        """Write a file on the node (e.g. the libfaketime control file)."""

    def fetch_logs(self, dest: Path) -> None:
        """Copy each node's log to dest/<node>.log."""
