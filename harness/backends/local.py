"""The local backend: real node processes on this host's loopback.

Node ``i`` (1-based) listens on ``127.0.0.(10+i)`` at one port shared by all
nodes (picked free per run). Each node is its own process group, with its
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
harness killed with ``kill -9`` takes its nodes with it. The cluster state is
kept in ``<run_dir>/cluster.json`` so :func:`attach` (``dynharness heal``,
cleanup of a crashed run) can find and stop everything later.
"""
from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.backends import node_cgroups
from harness.backends.base import ClusterConfig, CommandResult, Node
from harness.errors import UserError
from targets.adapter import Target

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
STATE_FILE = "cluster.json"
_STATE_LOCK = threading.Lock()
START_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1


def host_of(i: int) -> str:
    """Loopback address of node i (1-based)."""
    return f"127.0.0.{10 + i}"


def pick_port(hosts: Sequence[str], attempts: int = 50, span: int = 1) -> int:
    """A TCP port free on every host (all nodes listen on the same port), with the ``span - 1``
    ports after it free too (a target with ``ports_per_node`` > 1 uses them)."""
    for _ in range(attempts):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        if port + span <= 65536 and all(_port_free(h, p) for h in hosts for p in range(port, port + span)):
            return port
    raise UserError(f"no TCP port free on all of {', '.join(hosts)} after {attempts} tries")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def iptables_usable() -> bool:
    """Root, an ``iptables`` binary, and a filter table it can list."""
    if os.geteuid() != 0 or not shutil.which("iptables"):
        return False
    try:
        return subprocess.run(["iptables", "-w", "5", "-L", "INPUT", "-n"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def node_cgroups_usable() -> bool:
    """Whether a local run on this host would get the ``node-cgroups`` capability (root, iptables,
    a writable cgroup2 hierarchy and iptables' cgroup match, probed for real in a throw-away chain):
    what ``setup`` would find, asked before any run starts (``harness.campaign.host_share``)."""
    if not iptables_usable():
        return False
    chain = f"DH-{secrets.token_hex(4)}"
    if subprocess.run(["iptables", "-w", "5", "-N", chain], capture_output=True, timeout=15).returncode != 0:
        return False
    try:
        paths = node_cgroups.create(chain, ["probe"], chain)
        if paths:
            node_cgroups.remove(paths)
        return bool(paths)
    finally:
        subprocess.run(["iptables", "-w", "5", "-X", chain], capture_output=True, timeout=15)


def _set_pdeathsig() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _runs_node(pid: int, data_dir: str) -> bool:
    """Whether ``pid`` is still *our* node (its command line names its data dir), not a reused pid."""
    try:
        return data_dir.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


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
        self._leave_running = False
        self._spawner: ThreadPoolExecutor | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def setup(self, config: ClusterConfig) -> list[Node]:
        """Start every node and wait until each answers its health check (UserError otherwise)."""
        self._config = config
        self.target = config.target
        self.target.check_installed()
        self._run_dir = Path(config.run_dir).resolve()
        nodes_dir = self._run_dir / "nodes"
        nodes_dir.mkdir(parents=True, exist_ok=True)
        self._leave_running = bool(config.extra.get("leave_running", False))
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
            self._nodes[name] = Node(name, host, port, str(nodes_dir / name), clock)
            Path(self._nodes[name].data_dir).mkdir(parents=True, exist_ok=True)
        if iptables_usable():
            chain = f"DH-{secrets.token_hex(4)}"
            for argv in (["-N", chain], ["-I", "INPUT", "-j", chain]):
                r = subprocess.run(["iptables", "-w", "5", *argv], capture_output=True, text=True, timeout=15)
                if r.returncode != 0:
                    raise UserError(f"iptables {' '.join(argv)} failed: {r.stderr.strip()}")
            self.firewall_chain = chain
            caps.add("iptables")
            self._cgroups = node_cgroups.create(chain, list(self._nodes), chain) or {}
            if self._cgroups:  # rules match the sending node's processes, seen on the way out
                r = subprocess.run(["iptables", "-w", "5", "-I", "OUTPUT", "-j", chain], capture_output=True,
                                   text=True, timeout=15)
                if r.returncode != 0:
                    raise UserError(f"iptables -I OUTPUT -j {chain} failed: {r.stderr.strip()}")
                caps.add("node-cgroups")
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
        left = [n for n, pid in self._pids.items() if _pid_alive(pid)]
        if self.firewall_chain:
            chain = self.firewall_chain
            for argv in (["-F", chain], ["-D", "INPUT", "-j", chain], ["-D", "OUTPUT", "-j", chain], ["-X", chain]):
                subprocess.run(["iptables", "-w", "5", *argv], capture_output=True, timeout=15)
            self.firewall_chain = ""
        if not left:
            node_cgroups.remove(self._cgroups)
        if self._spawner is not None:
            self._spawner.shutdown(wait=False)
            self._spawner = None
        self._save_state(stopped=True)
        if left:
            raise RuntimeError(f"node processes still alive after teardown: {', '.join(left)}")

    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    # -- process control --------------------------------------------------------------------
    def start(self, node: str) -> None:
        """Start a killed/stopped node with its data and wait until it is healthy."""
        self._node(node)
        if node in self._pids and _pid_alive(self._pids[node]):
            return
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

    def is_running(self, node: str) -> bool:
        pid = self._pids.get(node)
        return pid is not None and _pid_alive(pid)

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

    def _env(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        clock = self._nodes[name].clock_file
        if clock:
            env.update(LD_PRELOAD=LIBFAKETIME, FAKETIME_TIMESTAMP_FILE=clock, FAKETIME_NO_CACHE="1")
        return env

    def _spawn(self, name: str) -> None:
        argv, env = self._command(name), self._env(name)
        log = open(self._log_path(name), "ab")
        procs = node_cgroups.procs_file(self._cgroups[name]) if name in self._cgroups else None

        def in_child() -> None:
            if procs:
                node_cgroups.join(procs)
            if not self._leave_running:
                _set_pdeathsig()

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=in_child)

        try:
            if self._leave_running:
                proc = popen()
            else:  # PDEATHSIG fires when the *spawning thread* exits: spawn from one that lives on
                if self._spawner is None:
                    self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-spawner")
                proc = self._spawner.submit(popen).result()
        finally:
            log.close()
        self._procs[name] = proc
        self._pids[name] = proc.pid

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
        if pid is None or not _pid_alive(pid):
            raise RuntimeError(f"{name} is not running")
        os.killpg(pid, sig)

    def _kill_group(self, name: str) -> None:
        pid = self._pids.get(name)
        if pid is None:
            return
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        proc = self._procs.pop(name, None)
        deadline = time.monotonic() + 5
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _save_state(self, stopped: bool = False) -> None:
        if self._run_dir is None:
            return
        # nodes start and stop from several threads at once (a heal restarts them in parallel): one
        # writer at a time, each writing the state as it is then, or one thread's rename finds the
        # other's temporary file already moved (and an older snapshot could land last)
        with _STATE_LOCK:
            state = {
                "backend": self.name, "run_dir": str(self._run_dir), "stopped": stopped,
                "firewall_chain": self.firewall_chain, "capabilities": sorted(self.capabilities),
                "cgroups": self._cgroups,
                "target": self.target.name if self.target else None,
                "settings": dict(self._config.settings) if self._config else {},
                "nodes": [{"name": n.name, "host": n.host, "port": n.port, "data_dir": n.data_dir,
                           "clock_file": n.clock_file, "pid": self._pids.get(n.name)} for n in self._nodes.values()],
            }
            tmp = self._run_dir / (STATE_FILE + ".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            os.replace(tmp, self._run_dir / STATE_FILE)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], target: Target) -> "LocalBackend":
        """A backend controlling a cluster described by a ``cluster.json`` (see :func:`attach`)."""
        b = cls()
        b._run_dir = Path(state["run_dir"])
        b.firewall_chain = state.get("firewall_chain") or ""
        b._cgroups = dict(state.get("cgroups") or {})
        b.capabilities = frozenset(state.get("capabilities", b.capabilities))
        b._leave_running = True  # restarted nodes must outlive this process too
        b._faketime = "faketime" in b.capabilities
        names = tuple(n["name"] for n in state["nodes"])
        b.target = target
        b._config = ClusterConfig(target=b.target, nodes=names, settings=state.get("settings", {}), run_dir=b._run_dir)
        for n in state["nodes"]:
            b._nodes[n["name"]] = Node(n["name"], n["host"], int(n["port"]), n["data_dir"], n.get("clock_file"))
            if n.get("pid") and _runs_node(int(n["pid"]), n["data_dir"]):
                b._pids[n["name"]] = int(n["pid"])
        return b
