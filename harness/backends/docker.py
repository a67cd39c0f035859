"""The Docker backend: one container per node, on a private bridge network.

The network and containers are made by :mod:`harness.backends.docker_cluster`
(private internal bridge, fixed IPs, NET_ADMIN + init, labels). The
container idles; the node is a daemon started with ``docker exec`` (see
:mod:`harness.backends.remote`), so a crash is a real ``kill -9`` of the
server while the container, its clock file and its firewall rules live on,
as on a real machine.

A run with the power-loss fault (``features`` ``lazy-disks``) gets a cluster of its own whose
containers may mount FUSE (``/dev/fuse``, ``SYS_ADMIN``; other runs keep the minimal
privileges): each node's data dir is a lazy disk mounted inside its container
(:mod:`harness.backends.shell_lazy_disk`), so the mount and its daemon die with the container.

Everything is labelled ``dynharness`` with the cluster and run id and removed
on every exit path; ``dynharness cluster down --all`` removes what a crashed
harness left behind. ``dynharness cluster up`` keeps a cluster between runs
(label ``dynharness.kept``); ``run --backend docker`` reuses it when it fits.
Every engine call has a timeout; a missing or silent engine is a UserError.
"""
from __future__ import annotations

import atexit
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.backends import cluster_state, remote
from harness.backends.base import CAPABILITIES, ClusterConfig, CommandResult, Node
from harness.backends.docker_cluster import (CHAIN, DEFAULT_TIMEOUT, L_KEPT, L_NODE, DockerShell, cluster_containers,
                                             connect_engine, create_cluster, remove_clusters)
from harness.backends.image import APP_DIR, SITE_DIR, ImageRecipe, ensure_image, progress_lines
from harness.backends.lazy_disks import CANNOT_MOUNT
from harness.backends.shell_lazy_disk import ShellLazyDisk
from harness.errors import UserError
from targets.adapter import Target
LAYOUT = remote.NodeLayout(app_dir=APP_DIR, pythonpath=f"{SITE_DIR}:{APP_DIR}",
                           data_dir="/var/lib/dynharness/data", clock_file="/var/lib/dynharness/clock",
                           pid_file="/var/lib/dynharness/node.pid", log_file="/var/lib/dynharness/node.log")


def fuse_unavailable() -> str | None:
    """Why the engine's containers cannot be given FUSE (one line), or None. Only a local engine's
    host is looked at; on a remote one, a mount that fails inside the container says why."""
    host = os.environ.get("DOCKER_HOST", "")
    if (not host or host.startswith("unix://")) and not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing on the Docker host (no FUSE in this kernel)"
    return None


class DockerBackend:
    """Backend over a Docker engine (local, or remote through DOCKER_HOST=ssh://...)."""

    name = "docker"
    firewall_chain = CHAIN

    OPTIONS: Mapping[str, tuple[type, Any]] = {
        "image": (str, None), "base_image": (str, None), "subnet": (str, None), "cluster": (str, "default"),
        "keep": (bool, False), "reuse": (bool, True), "port": (int, 7000), "timeout": (float, DEFAULT_TIMEOUT),
        "health_timeout": (float, 60.0)}

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        opts = remote.parse_options("docker", options, self.OPTIONS)
        self.image, self.base_image, self.subnet = opts["image"], opts["base_image"], opts["subnet"]
        self.cluster = opts["cluster"]                 # the kept cluster to reuse / create
        self.keep, self.reuse = opts["keep"], opts["reuse"]   # keep: create a kept cluster (cluster up)
        self.port, self.timeout, self.health_timeout = opts["port"], opts["timeout"], opts["health_timeout"]
        # each container has its own network (no shared host, no cgroups needed); lazy disks when asked
        self.capabilities = frozenset(CAPABILITIES) - {"shared-host", "node-cgroups", "power-loss"}
        self.target: Target | None = None
        self._client = None
        self._name: str | None = None
        self._owned = False            # remove the cluster at teardown
        self._nodes: dict[str, Node] = {}
        self._argv: dict[str, list[str]] = {}
        self._shells: dict[str, DockerShell] = {}
        self._run_dir: Path | None = None
        self.image_build = None
        self._owner: dict[str, Any] | None = None
        self._secret: str | None = None       # the cluster's node secret (targets.adapter.NODE_SECRET_ENV)
        self._disks: dict[str, ShellLazyDisk] = {}      # with the power-loss fault only

    # -- life cycle -------------------------------------------------------------------------
    def setup(self, config: ClusterConfig) -> list[Node]:
        """Create (or reuse a kept) cluster, start every node, return once all are healthy."""
        self.target = config.target
        self._owner = cluster_state.current_owner("leave_running" if config.extra.get("leave_running") else None)
        self._secret = secrets.token_urlsafe(32)
        lazy = "lazy-disks" in config.extra.get("features", ())
        if lazy and (why := fuse_unavailable()):
            raise UserError(f"{CANNOT_MOUNT}: {why}")
        self._client = client = connect_engine(self.timeout)
        if self.image:
            tag = self.image
        else:
            say = config.extra.get("progress")
            self.image_build = ensure_image(client, ImageRecipe.for_target(self.target, self.base_image),
                                            on_step=progress_lines(say) if callable(say) else None)
            tag = self.image_build.tag
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"
        self._run_dir = Path(config.run_dir)
        # a kept cluster's containers cannot mount FUSE: a run with lazy disks makes its own
        ips = self._reusable(client, config.nodes, tag) if (self.reuse or self.keep) and not lazy else None
        try:
            if ips is None:
                self._name = self.cluster if self.keep else f"run-{run_id}"
                self._owned = not self.keep
                if self.keep:
                    remove_clusters(client, self._name)        # a stale kept cluster (other image/size)
                elif not config.extra.get("leave_running"):
                    atexit.register(self.teardown)             # a backstop: the runner tears down first
                ips = create_cluster(client, self._name, config.nodes, tag, run_id=run_id, kept=self.keep,
                                     subnet=self.subnet, fuse=lazy)
            by_node = {c.labels[L_NODE]: c for c in cluster_containers(client, self._name)}
            self._shells = {n: DockerShell(by_node[n]) for n in config.nodes}
            self._nodes = {n: Node(n, ips[n], self.port, LAYOUT.data_dir,
                                   LAYOUT.clock_file if config.faketime else None, self._secret)
                           for n in config.nodes}
            peers = {n: node.address for n, node in self._nodes.items()}
            self._argv = {n: remote.node_argv(config, n, node.host, node.port, peers, LAYOUT.data_dir)
                          for n, node in self._nodes.items()}
            if lazy:
                self._disks = {n: ShellLazyDisk(self._shells[n], LAYOUT) for n in config.nodes}
                self.capabilities = self.capabilities | {"power-loss"}
            self._write_cluster_json()                         # from here on attach() finds the cluster
            for n in self._nodes:
                self._reset(n)
                self._mount_disk(n)
                remote.start_daemon(self._shells[n], LAYOUT, self._argv[n], faketime=config.faketime,
                                    secret=self._secret)
            remote.wait_healthy(self.target.admin, list(self._nodes.values()), self.health_timeout, self._log_tails)
            return list(self._nodes.values())
        except BaseException:
            self.teardown()
            raise

    def _reusable(self, client, nodes: Sequence[str], tag: str) -> dict[str, str] | None:
        """IPs of the kept cluster when it runs the wanted image and has every wanted node."""
        found = {c.labels.get(L_NODE): c for c in cluster_containers(client, self.cluster)
                 if c.labels.get(L_KEPT) == "1"}
        try:
            image_id = client.images.get(tag).id
        except Exception:
            return None
        if not all(n in found and found[n].status == "running" and found[n].image.id == image_id for n in nodes):
            if found:
                sys.stderr.write(f"dynharness: kept cluster {self.cluster!r} does not fit this run (nodes, state or an "
                                 "older node image): using a cluster of its own; `dynharness cluster up` refreshes it\n")
            return None
        self._name, self._owned = self.cluster, False
        nets = {n: found[n].attrs["NetworkSettings"]["Networks"] for n in nodes}
        return {n: next(v["IPAddress"] for v in nets[n].values()) for n in nodes}

    def _reset(self, node: str) -> None:
        """Fresh node state on a (possibly reused) container: no server, data, rules, skew or log."""
        shell = self._shells[node]
        if remote.signal_daemon(shell, LAYOUT, "KILL"):
            remote.wait_gone(shell, LAYOUT)
        script = ('rm -rf -- "$1" && mkdir -p -- "$1" && echo +0 > "$2" && : > "$3" && '
                  'iptables -w 5 -F "$4" 2>/dev/null; true')
        shell.exec(remote.sh(script, LAYOUT.data_dir, LAYOUT.clock_file, LAYOUT.log_file, CHAIN)).check()
        remote.ensure_chain(shell, CHAIN)

    def _mount_disk(self, node: str) -> None:
        """Mount the node's lazy disk when this cluster has them (UserError, one line, when it fails)."""
        if node in self._disks:
            try:
                self._disks[node].start()
            except RuntimeError as e:
                raise UserError(f"{CANNOT_MOUNT}: {e}") from None

    def teardown(self) -> None:
        """Remove the run's cluster; on a kept cluster only stop the nodes and undo the faults."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self._owned and self._name:
                remove_clusters(client, self._name)
            else:
                for n, shell in self._shells.items():
                    remote.signal_daemon(shell, LAYOUT, "CONT")
                    remote.signal_daemon(shell, LAYOUT, "KILL")
                    shell.exec(remote.sh('echo +0 > "$1"; iptables -w 5 -F "$2"', LAYOUT.clock_file, CHAIN))
                    if n in self._disks:
                        self._disks[n].unmount()
            self._write_cluster_json(stopped=True)
        finally:
            client.close()

    def _write_cluster_json(self, stopped: bool = False) -> None:
        """``<run_dir>/cluster.json``: what :func:`harness.backends.attach` needs to find this cluster."""
        if self._run_dir is None:
            return
        remote.save_cluster_state(self._run_dir, {
            "backend": "docker", "cluster": self._name, "owned": self._owned, "stopped": stopped, "owner": self._owner,
            "run_dir": str(self._run_dir), "docker_host": os.environ.get("DOCKER_HOST"),
            "capabilities": sorted(self.capabilities), "argv": self._argv, "secret": self._secret,
            "lazy_disks": bool(self._disks), "target": self.target.name if self.target else None},
            list(self._nodes.values()))

    @classmethod
    def from_state(cls, state: Mapping[str, Any], target: Target) -> "DockerBackend":
        """Re-attach to a cluster from its ``cluster.json`` (``dynharness heal``, cleanup after a crash)."""
        b = cls({"reuse": False})
        b._name, b._owned = state["cluster"], bool(state.get("owned", True))
        b._owner = state.get("owner")
        b._secret = state.get("secret")
        b._run_dir = Path(state["run_dir"]) if state.get("run_dir") else None
        b._argv = {k: list(v) for k, v in (state.get("argv") or {}).items()}
        b.target = target
        b._client = client = connect_engine(b.timeout)
        by_node = {c.labels.get(L_NODE): c for c in cluster_containers(client, b._name)}
        for n in state["nodes"]:
            b._nodes[n["name"]] = Node(n["name"], n["host"], int(n["port"]), n["data_dir"], n.get("clock_file"),
                                       b._secret)
            if n["name"] in by_node:
                b._shells[n["name"]] = DockerShell(by_node[n["name"]])
                if state.get("lazy_disks"):
                    b._disks[n["name"]] = ShellLazyDisk(b._shells[n["name"]], LAYOUT)
        b.capabilities = frozenset(state.get("capabilities", b.capabilities))
        return b

    def _log_tails(self) -> dict[str, str]:
        return {n: s.get_file(LAYOUT.log_file).decode(errors="replace")[-2000:] for n, s in self._shells.items()}

    # -- node primitives --------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    def _shell(self, node: str) -> DockerShell:
        try:
            return self._shells[node]
        except KeyError:
            raise UserError(f"no node {node!r} in this cluster (nodes: {', '.join(self._shells)})") from None

    def start(self, node: str) -> None:
        """Start the node's server again with its data (no-op when it runs); waits for health."""
        shell = self._shell(node)
        if remote.daemon_pid(shell, LAYOUT) is None:
            if node in self._disks and not self._disks[node].serving():    # its daemon died: mount again
                self._disks[node].unmount()
                self._mount_disk(node)
            remote.start_daemon(shell, LAYOUT, self._argv[node], faketime=self._nodes[node].clock_file is not None,
                                secret=self._secret)
        remote.wait_healthy(self.target.admin, [self._nodes[node]], self.health_timeout, self._log_tails)

    def kill(self, node: str) -> None:
        """SIGKILL the server process (the container, its clock file and firewall rules stay)."""
        shell = self._shell(node)
        if remote.signal_daemon(shell, LAYOUT, "KILL"):
            remote.wait_gone(shell, LAYOUT)

    def power_loss(self, node: str, torn: bool = False) -> dict[str, Any]:
        """Drop what the node's disk never fsynced and mount what is left (the node must be down);
        the lazy file system's report of what it dropped."""
        self._shell(node)
        if node not in self._disks:
            raise RuntimeError("this cluster's data dirs are not on lazy disks")
        if self.is_running(node):
            raise RuntimeError(f"{node} is running: kill it before its power goes")
        return self._disks[node].power_loss(torn)

    def pause(self, node: str) -> None:
        remote.signal_daemon(self._shell(node), LAYOUT, "STOP")

    def resume(self, node: str) -> None:
        remote.signal_daemon(self._shell(node), LAYOUT, "CONT")

    def wipe(self, node: str) -> None:
        remote.wipe(self._shell(node), LAYOUT)

    def is_running(self, node: str) -> bool:
        return remote.daemon_pid(self._shell(node), LAYOUT) is not None

    def run(self, node: str, argv: Sequence[str], timeout: float = 10.0) -> CommandResult:
        """Run argv inside the node's container (root, NET_ADMIN): iptables, date, cat..."""
        return self._shell(node).exec(list(argv), timeout=timeout, privileged=True)

    def write_file(self, node: str, path: str, data: bytes) -> None:
        remote.write_file(self._shell(node), path, data)

    def fetch_logs(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for n, shell in self._shells.items():
            (dest / f"{n}.log").write_bytes(shell.get_file(LAYOUT.log_file))
