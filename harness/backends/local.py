"""The local backend: real node processes on this host's loopback.

Node ``i`` (1-based) listens on ``127.0.0.(10+i)`` at one port shared by all
nodes (picked free per run, below the ephemeral range: ``local_ports``). Each node is its own process group, with its
data dir and log under ``<run_dir>/nodes/``, started under libfaketime when
the library exists (clock file ``nodes/<name>.faketime``, initially ``+0``).
As root with a working ``iptables``, setup creates a chain ``DH-<run id>``
jumped from INPUT for the partition nemesis; teardown flushes, unhooks and
deletes it. Where the host has a writable cgroup2 hierarchy, each node runs
in a cgroup of its own and the chain is jumped from OUTPUT too: rules then
match the sending node's processes (``node_cgroups`` says why: any store, and
never another run's nodes); elsewhere rules ``-s A -d B`` match addresses,
which separates nodes only of a store that dials from its own address.

Unless the cluster is to be left running, nodes are spawned with
``PR_SET_PDEATHSIG = SIGKILL`` from one long-lived spawner thread, so a
harness killed with ``kill -9`` takes its nodes with it (``local_procs``).
When a fault needs it (``features`` ``lazy-disks``: power loss), each node's
data dir is the mount of a lazy file system (``lazy_disks``), mounted before
the nodes start and unmounted at teardown. The cluster state is kept in
``<run_dir>/cluster.json`` (with its owner: ``cluster_state``) so :func:`attach`
(``dynharness heal``, ``dynharness cleanup`` of a crashed run) can find and stop everything
later; the chain is also indexed host-wide (``cluster_state.register_chain``), so a chain is
attributed to its owner even when its run folder is gone.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.backends import cluster_state, lazy_disks, local_chain, node_cgroups
from harness.backends.local_chain import iptables_usable  # noqa: F401 - also this module's API
from harness.backends.local_ports import pick_port  # noqa: F401 - also this module's API
from harness.backends.local_procs import Spawner, kill_group, pid_alive, runs_with_arg
from harness.backends.base import ClusterConfig, CommandResult, Node
from harness.errors import UserError
from targets.adapter import NODE_SECRET_ENV, Target

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
STATE_FILE = cluster_state.STATE_FILE
START_TIMEOUT = 30.0


def host_of(i: int) -> str:
    """Loopback address of node i (1-based)."""
    return f"127.0.0.{10 + i}"


class LocalBackend:
    """Node processes on this host (see the module docstring)."""

    name = "local"

    def __init__(self, options: Mapping[str, Any] | None = None, *, python: str | None = None):
        self.options = dict(options or {})
        self.python = python or sys.executable
        self.capabilities: frozenset[str] = frozenset({"signals", "wipe", "shared-host"})
        self.firewall_chain = ""
        self.target: Target | None = None
        self._nodes: dict[str, Node] = {}
        self._pids: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._cgroups: dict[str, str] = {}   # node -> its cgroup (node_cgroups), when this host has them
        self._config: ClusterConfig | None = None
        self._run_dir: Path | None = None
        self._faketime = False
        self._spawner = Spawner()
        self._disks: lazy_disks.DiskSet | None = None     # with the power-loss fault only
        self._owner: dict[str, Any] | None = None
        self._secret: str | None = None      # the cluster's node secret (targets.adapter.NODE_SECRET_ENV)

    # -- lifecycle -------------------------------------------------------------------------
    def setup(self, config: ClusterConfig) -> list[Node]:
        """Start every node and wait until each answers its health check (UserError otherwise)."""
        self._config = config
        self.target = config.target
        self.target.check_installed()
        self._run_dir = Path(config.run_dir).resolve()
        nodes_dir = self._run_dir / "nodes"
        nodes_dir.mkdir(parents=True, exist_ok=True)
        leave_running = bool(config.extra.get("leave_running", False))
        self._owner = cluster_state.current_owner("leave_running" if leave_running else None)
        self._secret = secrets.token_urlsafe(32)
        self._spawner = Spawner(outlive=leave_running)
        self._faketime = bool(config.faketime) and os.path.exists(LIBFAKETIME)
        caps = {"signals", "wipe", "shared-host"}
        if self._faketime:
            caps.add("faketime")
        hosts = [host_of(i) for i in range(1, len(config.nodes) + 1)]
        port = int(config.extra.get("port") or pick_port(hosts, span=self.target.ports_per_node))
        for name, host in zip(config.nodes, hosts):
            clock = str(nodes_dir / f"{name}.faketime") if self._faketime else None
            if clock:
                Path(clock).write_text("+0\n")
            self._nodes[name] = Node(name, host, port, str(nodes_dir / name), clock, self._secret)
            Path(self._nodes[name].data_dir).mkdir(parents=True, exist_ok=True)
        if iptables_usable():
            chain = self.firewall_chain = local_chain.create()
            caps.add("iptables")
            self._register_chain()            # attributable from here on, even if the rest fails
            self._cgroups = node_cgroups.create(chain, list(self._nodes), chain) or {}
            if self._cgroups:  # rules match the sending node's processes, seen on the way out
                local_chain.hook_output(chain)
                caps.add("node-cgroups")
            self._register_chain()
        if "lazy-disks" in config.extra.get("features", ()):
            why = lazy_disks.unavailable()
            if why:
                raise UserError(f"{lazy_disks.CANNOT_MOUNT}: {why}")
            self._disks = lazy_disks.DiskSet.mount_all(nodes_dir, list(self._nodes), secrets.token_hex(4),
                                                       self._launch)
            caps.add("power-loss")
        self.capabilities = frozenset(caps)
        self._save_state()
        for name in self._nodes:
            self._spawn(name)
        self._save_state()
        self._wait_healthy(list(self._nodes), START_TIMEOUT)
        return self.nodes()

    def teardown(self) -> None:
        """Kill every node (SIGCONT, then SIGKILL of its group), remove the iptables chain; idempotent."""
        for name in list(self._pids):
            self._kill_group(name)
        node_cgroups.kill(self._cgroups)     # whatever else runs in the nodes' cgroups (a stale pid file)
        left = [n for n, pid in self._pids.items() if pid_alive(pid)]
        mounted = self._disks.unmount_all() if self._disks is not None else []
        if self.firewall_chain:
            local_chain.remove(self.firewall_chain)
            if not left:
                cluster_state.unregister_chain(self.firewall_chain)
            self.firewall_chain = ""
        if not left:
            node_cgroups.remove(self._cgroups)
        self._spawner.close()
        self._save_state(stopped=True)
        if left:
            raise RuntimeError(f"node processes still alive after teardown: {', '.join(left)}")
        if mounted:
            raise RuntimeError(f"lazy disks still mounted after teardown: {', '.join(mounted)}")

    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    # -- process control --------------------------------------------------------------------
    def start(self, node: str) -> None:
        """Start a killed/stopped node with its data and wait until it is healthy."""
        self._node(node)
        if node in self._pids and pid_alive(self._pids[node]):
            return
        if self._disks is not None:      # a harness killed meanwhile took its disk's daemon along
            self._disks.ensure(node, self._launch)
        self._spawn(node)
        self._save_state()
        self._wait_healthy([node], START_TIMEOUT)

    def kill(self, node: str) -> None:
        """SIGKILL the node's whole process group (SIGCONT first so a paused node dies too)."""
        self._node(node)
        self._kill_group(node)
        self._save_state()

    def pause(self, node: str) -> None:
        self._signal(node, signal.SIGSTOP)

    def resume(self, node: str) -> None:
        self._signal(node, signal.SIGCONT)

    def wipe(self, node: str) -> None:
        """Delete the node's data dir (refused while the node runs)."""
        n = self._node(node)
        if self.is_running(node):
            raise RuntimeError(f"cannot wipe {node}: it is running")
        shutil.rmtree(n.data_dir, ignore_errors=True)
        Path(n.data_dir).mkdir(parents=True, exist_ok=True)

    def power_loss(self, node: str, torn: bool = False) -> dict[str, Any]:
        """Drop what the node's disk never fsynced and mount what is left (the node must be down);
        the lazy file system's report of what it dropped."""
        self._node(node)
        if self._disks is None:
            raise RuntimeError("this cluster's data dirs are not on lazy disks")
        if self.is_running(node):
            raise RuntimeError(f"{node} is running: kill it before its power goes")
        try:
            return self._disks.power_loss(node, self._launch, torn)
        finally:
            self._save_state()

    def is_running(self, node: str) -> bool:
        pid = self._pids.get(node)
        return pid is not None and pid_alive(pid)

    def run(self, node: str, argv: Sequence[str], timeout: float = 10.0) -> CommandResult:
        """Run argv on this host (every node shares the host's network and root), inside the
        node's cgroup when nodes have one, so a probe's packets are the node's to iptables."""
        self._node(node)
        procs = node_cgroups.procs_file(self._cgroups[node]) if node in self._cgroups else None
        try:
            p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                               preexec_fn=(lambda: node_cgroups.join(procs)) if procs else None)
        except subprocess.TimeoutExpired as e:
            return CommandResult(tuple(argv), 124, "", f"timed out after {timeout}s: {e}")
        except OSError as e:
            return CommandResult(tuple(argv), 127, "", str(e))
        return CommandResult(tuple(argv), p.returncode, p.stdout, p.stderr)

    def source_match(self, node: str) -> list[str]:
        """iptables arguments matching what ``node`` sends: its cgroup when nodes have one (any
        store, this run only), else its loopback address (stores that dial from it)."""
        rel = self._cgroups.get(node)
        return node_cgroups.match(rel) if rel else ["-s", self._node(node).host]

    def write_file(self, node: str, path: str, data: bytes) -> None:
        self._node(node)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def fetch_logs(self, dest: Path) -> None:
        """Logs are written straight into ``<run_dir>/nodes/``; copy them when dest differs."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for name in self._nodes:
            src = self._log_path(name)
            if src.exists() and src.resolve() != (dest / f"{name}.log").resolve():
                shutil.copyfile(src, dest / f"{name}.log")

    # -- internals ---------------------------------------------------------------------------
    def _node(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise UserError(f"no node named {name!r} (nodes: {', '.join(self._nodes)})") from None

    def _log_path(self, name: str) -> Path:
        assert self._run_dir is not None
        return self._run_dir / "nodes" / f"{name}.log"

    def _command(self, name: str) -> list[str]:
        assert self._config is not None and self.target is not None
        n = self._nodes[name]
        peers = {m.name: m.address for m in self._nodes.values()}
        return list(self.target.node_command(name, n.host, n.port, n.data_dir, peers,
                                             dict(self._config.settings), python=self.python))

    def _env(self, name: str | None) -> dict[str, str]:
        """A node's environment (this checkout first on the path, its clock); None: a helper's."""
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        if self._secret:
            env[NODE_SECRET_ENV] = self._secret
        clock = self._nodes[name].clock_file if name else None
        if clock:
            env.update(LD_PRELOAD=LIBFAKETIME, FAKETIME_TIMESTAMP_FILE=clock, FAKETIME_NO_CACHE="1")
        return env

    def _spawn(self, name: str) -> None:
        proc = self._launch(self._command(name), self._log_path(name), self._env(name), self._cgroups.get(name))
        self._procs[name] = proc
        self._pids[name] = proc.pid

    def _launch(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
                cgroup: str | None = None) -> subprocess.Popen[bytes]:
        """Start a node or (no ``env``) a lazy disk daemon, which on the harness's death gets SIGTERM
        and unmounts itself (``local_procs``: what outlives the harness and why)."""
        procs = node_cgroups.procs_file(cgroup) if cgroup else None
        return self._spawner.launch(argv, log_path, env or self._env(None),
                                    (lambda: node_cgroups.join(procs)) if procs else None,
                                    signal.SIGKILL if env else signal.SIGTERM)

    def _wait_healthy(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(names)
        while waiting:
            for name in list(waiting):
                if not self.is_running(name):
                    tail = self._log_tail(name)
                    raise UserError(f"node {name} exited during startup: {tail}")
                if self.target.admin.health(self._nodes[name], timeout=1.0)[0]:
                    waiting.remove(name)
            if waiting and time.monotonic() > deadline:
                raise UserError(f"nodes {', '.join(waiting)} not healthy within {timeout:g}s "
                                f"(see {self._log_path(waiting[0])})")
            if waiting:
                time.sleep(0.1)

    def _log_tail(self, name: str) -> str:
        try:
            lines = [ln for ln in self._log_path(name).read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no log"
        return lines[-1][:300] if lines else "empty log"

    def _signal(self, name: str, sig: int) -> None:
        self._node(name)
        pid = self._pids.get(name)
        if pid is None or not pid_alive(pid):
            raise RuntimeError(f"{name} is not running")
        os.killpg(pid, sig)

    def _kill_group(self, name: str) -> None:
        pid = self._pids.get(name)
        if pid is not None:
            kill_group(pid, self._procs.pop(name, None))

    def _save_state(self, stopped: bool = False) -> None:
        if self._run_dir is None:
            return
        # nodes start and stop from several threads at once (a heal restarts them in parallel):
        # cluster_state.save writes one snapshot at a time, each the state as it is then
        cluster_state.save(self._run_dir, {
            "backend": self.name, "run_dir": str(self._run_dir), "stopped": stopped, "owner": self._owner,
            "firewall_chain": self.firewall_chain, "capabilities": sorted(self.capabilities),
            "cgroups": self._cgroups, "secret": self._secret,
            "disks": self._disks.state() if self._disks else {},
            "target": self.target.name if self.target else None,
            "settings": dict(self._config.settings) if self._config else {},
            "nodes": [{"name": n.name, "host": n.host, "port": n.port, "data_dir": n.data_dir,
                       "clock_file": n.clock_file, "pid": self._pids.get(n.name)} for n in self._nodes.values()],
        })

    def _register_chain(self) -> None:
        assert self._run_dir is not None
        cluster_state.register_chain(self.firewall_chain, {
            "state": str(self._run_dir / STATE_FILE), "owner": self._owner, "cgroups": self._cgroups})

    @classmethod
    def from_state(cls, state: Mapping[str, Any], target: Target) -> "LocalBackend":
        """A backend controlling a cluster described by a ``cluster.json`` (see :func:`attach`)."""
        b = cls()
        b._run_dir = Path(state["run_dir"])
        b.firewall_chain = state.get("firewall_chain") or ""
        b._cgroups = dict(state.get("cgroups") or {})
        b._owner = state.get("owner")
        b._secret = state.get("secret")
        if state.get("disks"):
            b._disks = lazy_disks.DiskSet.from_state(b._run_dir / "nodes", state["disks"])
        b.capabilities = frozenset(state.get("capabilities", b.capabilities))
        b._spawner = Spawner(outlive=True)  # restarted nodes must outlive this process too
        b._faketime = "faketime" in b.capabilities
        names = tuple(n["name"] for n in state["nodes"])
        b.target = target
        b._config = ClusterConfig(target=b.target, nodes=names, settings=state.get("settings", {}), run_dir=b._run_dir)
        for n in state["nodes"]:
            b._nodes[n["name"]] = Node(n["name"], n["host"], int(n["port"]), n["data_dir"], n.get("clock_file"),
                                       b._secret)
            if n.get("pid") and runs_with_arg(int(n["pid"]), n["data_dir"]):
                b._pids[n["name"]] = int(n["pid"])
        return b
