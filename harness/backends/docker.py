"""The Docker backend: one container per node, on a private bridge network.

Each cluster is a user-defined bridge network with a fixed subnet,
``internal`` (no route off the machine), fixed container IPs, every node in
every other node's hosts file and DNS pointed at 127.0.0.1 (Docker's
embedded DNS would otherwise forward unknown names off the machine).
Containers run with the least privilege the faults need: ``NET_ADMIN`` for
iptables and ``init`` so signals and orphaned daemons are handled. The
container idles; the node is a daemon started with ``docker exec`` (see
:mod:`harness.backends.remote`), so a crash is a real ``kill -9`` of the
server while the container, its clock file and its firewall rules live on,
as on a real machine.

Everything is labelled ``dynharness`` with the cluster and run id and removed
on every exit path; ``dynharness cluster down --all`` removes what a crashed
harness left behind. ``dynharness cluster up`` keeps a cluster between runs
(label ``dynharness.kept``); ``run --backend docker`` reuses it when it fits.
Every engine call has a timeout; a missing or silent engine is a UserError.
"""
from __future__ import annotations

import atexit
import io
import ipaddress
import os
import secrets
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.backends import remote
from harness.backends.base import CAPABILITIES, ClusterConfig, CommandResult, Node
from harness.backends.image import APP_DIR, LABEL, SITE_DIR, ImageRecipe, ensure_image
from harness.errors import UserError

DEFAULT_TIMEOUT = 30.0
CHAIN = "DYNHARNESS"
L_CLUSTER, L_RUN, L_NODE, L_KEPT = f"{LABEL}.cluster", f"{LABEL}.run", f"{LABEL}.node", f"{LABEL}.kept"
LAYOUT = remote.NodeLayout(app_dir=APP_DIR, pythonpath=f"{SITE_DIR}:{APP_DIR}",
                           data_dir="/var/lib/dynharness/data", clock_file="/var/lib/dynharness/clock",
                           pid_file="/var/lib/dynharness/node.pid", log_file="/var/lib/dynharness/node.log")


def connect_engine(timeout: float = DEFAULT_TIMEOUT):
    """A Docker SDK client whose every call times out; UserError saying what to do when none answers."""
    try:
        import docker
    except ImportError:
        raise UserError("the Docker SDK for Python is missing: pip install docker") from None
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as e:  # DockerException, requests' ConnectionError/ReadTimeout, socket errors
        kind = "does not answer" if "timed out" in str(e).lower() else "is not reachable"
        raise UserError(f"the Docker engine at {where} {kind}: start it (dockerd, or .ci/docker-setup.sh) "
                        "or point DOCKER_HOST at one") from None
    return client


def engine_available(timeout: float = 5.0) -> bool:
    """Whether a Docker engine answers (tests skip with a reason otherwise)."""
    try:
        connect_engine(timeout).close()
        return True
    except UserError:
        return False


def _nsenter_usable() -> bool:
    """A local engine, root and nsenter: commands can enter a container's namespaces directly."""
    host = os.environ.get("DOCKER_HOST", "")
    return (not host or host.startswith("unix://")) and os.geteuid() == 0 and shutil.which("nsenter") is not None


class DockerShell:
    """:class:`remote.NodeShell` into one container (root there, with its NET_ADMIN).

    With a local engine and root, commands enter the container's namespaces with ``nsenter``
    (~10 ms; a ``docker exec`` is ~75 ms idle and several hundred ms on a loaded machine, which
    is most of a fault's latency); otherwise, or if that fails, ``docker exec``.
    """

    def __init__(self, container, fast: bool | None = None) -> None:
        self.container = container
        self.fast = _nsenter_usable() if fast is None else fast
        self._pid: int | None = None
        self._env: list[str] = []

    def _nsenter_prefix(self) -> list[str] | None:
        if self._pid is None:
            try:
                self.container.reload()
            except Exception:
                return None
            self._pid = int(self.container.attrs["State"].get("Pid") or 0) or None
            self._env = list(self.container.attrs["Config"].get("Env") or [])
        if self._pid is None:
            return None
        return ["nsenter", "-t", str(self._pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "env", "-i", *self._env]

    def exec(self, argv: Sequence[str], timeout: float = 10.0, privileged: bool = False) -> CommandResult:
        wrapped = ["timeout", "-s", "KILL", f"{timeout:g}", *argv]
        prefix = self._nsenter_prefix() if self.fast else None
        if prefix:
            try:
                proc = subprocess.run([*prefix, *wrapped], capture_output=True, timeout=timeout + 5)
            except subprocess.TimeoutExpired:
                return CommandResult(tuple(argv), 124, "", "timed out\n")
            if not proc.stderr.startswith(b"nsenter:"):
                return CommandResult(tuple(argv), proc.returncode, proc.stdout.decode(errors="replace"),
                                     proc.stderr.decode(errors="replace") + ("timed out\n" if proc.returncode == 137 else ""))
            self._pid = None                 # the container was restarted or is gone: ask the engine
        try:
            code, (out, err) = self.container.exec_run(wrapped, demux=True)
        except Exception as e:  # engine gone, container gone, API timeout
            return CommandResult(tuple(argv), 125, "", f"docker exec failed: {e}")
        return CommandResult(tuple(argv), code, (out or b"").decode(errors="replace"),
                             (err or b"").decode(errors="replace") + ("timed out\n" if code == 137 else ""))

    def put_file(self, path: str, data: bytes) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(os.path.basename(path))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if not self.container.put_archive(os.path.dirname(path) or "/", buf.getvalue()):
            raise RuntimeError(f"could not write {path} in {self.container.name}")

    def get_file(self, path: str) -> bytes:
        try:
            stream, _ = self.container.get_archive(path)
        except Exception:
            return b""
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            f = tar.extractfile(member) if member else None
            return f.read() if f else b""

    def close(self) -> None:
        pass


def _free_subnet(client) -> ipaddress.IPv4Network:
    used = []
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            try:
                used.append(ipaddress.ip_network(cfg.get("Subnet", ""), strict=False))
            except ValueError:
                pass
    for third in range(1, 255):
        candidate = ipaddress.ip_network(f"10.231.{third}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise UserError("no free 10.231.x.0/24 subnet for a new cluster: run `dynharness cluster down --all`")


def create_cluster(client, name: str, nodes: Sequence[str], image: str, *, run_id: str, kept: bool,
                   subnet: str | None = None, mode: str = "idle", env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Network + one started container per node; returns {node: ip}. Removes what it made on failure."""
    import docker.types
    net_addr = ipaddress.ip_network(subnet) if subnet else _free_subnet(client)
    hosts = list(net_addr.hosts())
    if len(hosts) < 11 + len(nodes):
        raise UserError(f"subnet {net_addr} is too small for {len(nodes)} nodes")
    ips = {n: str(hosts[10 + i]) for i, n in enumerate(nodes)}          # n1 = .11, n2 = .12, ...
    labels = {LABEL: "1", L_CLUSTER: name, L_RUN: run_id, L_KEPT: "1" if kept else "0"}
    try:
        network = client.networks.create(
            f"dynharness-{name}", driver="bridge", internal=True, labels=labels, check_duplicate=True,
            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(net_addr), gateway=str(hosts[0]))]))
        for node, ip in ips.items():
            host_config = client.api.create_host_config(
                cap_add=["NET_ADMIN"], init=True, dns=["127.0.0.1"], network_mode=network.name,
                extra_hosts={other: oip for other, oip in ips.items() if other != node})
            created = client.api.create_container(
                image, command=[mode], name=f"dynharness-{name}-{node}", hostname=node, detach=True,
                labels={**labels, L_NODE: node}, environment={"DYNHARNESS_CHAIN": CHAIN, **(env or {})},
                host_config=host_config,
                networking_config=client.api.create_networking_config(
                    {network.name: client.api.create_endpoint_config(ipv4_address=ip)}))
            client.api.start(created["Id"])
    except UserError:
        remove_clusters(client, name)
        raise
    except Exception as e:
        remove_clusters(client, name)
        raise UserError(f"could not create the Docker cluster {name}: {e}") from None
    return ips


def cluster_containers(client, name: str | None = None) -> list:
    """Containers of cluster ``name`` (every dynharness container when None), running or not."""
    flt = [f"{LABEL}=1"] + ([f"{L_CLUSTER}={name}"] if name else [])
    return client.containers.list(all=True, filters={"label": flt})


def remove_clusters(client, name: str | None = None) -> tuple[int, int]:
    """Remove the containers then the networks of cluster ``name`` (all dynharness ones when None)."""
    containers = cluster_containers(client, name)
    for c in containers:
        try:
            c.remove(force=True, v=True)
        except Exception:
            pass
    flt = [f"{LABEL}=1"] + ([f"{L_CLUSTER}={name}"] if name else [])
    networks = client.networks.list(filters={"label": flt})
    for n in networks:
        try:
            n.remove()
        except Exception:
            pass
    return len(containers), len(networks)


def list_clusters(client) -> dict[str, dict[str, Any]]:
    """{cluster name: {"kept", "run", "nodes": {node: (status, ip)}}} for `cluster status`."""
    out: dict[str, dict[str, Any]] = {}
    for c in cluster_containers(client):
        lab = c.labels
        info = out.setdefault(lab.get(L_CLUSTER, "?"), {"kept": lab.get(L_KEPT) == "1", "run": lab.get(L_RUN),
                                                       "image": c.image.tags[0] if c.image.tags else c.image.id[:19],
                                                       "nodes": {}})
        nets = c.attrs.get("NetworkSettings", {}).get("Networks", {})
        ip = next((v.get("IPAddress") or (v.get("IPAMConfig") or {}).get("IPv4Address") for v in nets.values()), "")
        info["nodes"][lab.get(L_NODE, c.name)] = (c.status, ip)
    return out


class DockerBackend:
    """Backend over a Docker engine (local, or remote through DOCKER_HOST=ssh://...)."""

    name = "docker"
    firewall_chain = CHAIN

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        opts = dict(options or {})
        self.image = opts.get("image")
        self.base_image = opts.get("base_image")
        self.subnet = opts.get("subnet")
        self.cluster = str(opts.get("cluster", "default"))     # the kept cluster to reuse / create
        self.keep = bool(opts.get("keep", False))              # create a kept cluster (cluster up)
        self.reuse = bool(opts.get("reuse", True))
        self.port = int(opts.get("port", 7000))
        self.timeout = float(opts.get("timeout", DEFAULT_TIMEOUT))
        self.health_timeout = float(opts.get("health_timeout", 40.0))
        self.capabilities = frozenset(CAPABILITIES)
        self._client = None
        self._name: str | None = None
        self._owned = False            # remove the cluster at teardown
        self._nodes: dict[str, Node] = {}
        self._argv: dict[str, list[str]] = {}
        self._shells: dict[str, DockerShell] = {}
        self._run_dir: Path | None = None
        self.image_build = None

    # -- life cycle -------------------------------------------------------------------------
    def setup(self, config: ClusterConfig) -> list[Node]:
        """Create (or reuse a kept) cluster, start every node, return once all are healthy."""
        self._client = client = connect_engine(self.timeout)
        if self.image:
            tag = self.image
        else:
            self.image_build = ensure_image(client, ImageRecipe(base_image=self.base_image))
            tag = self.image_build.tag
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"
        ips = self._reusable(client, config.nodes, tag) if (self.reuse or self.keep) else None
        try:
            if ips is None:
                self._name = self.cluster if self.keep else f"run-{run_id}"
                self._owned = not self.keep
                if self._owned and not config.extra.get("leave_running"):
                    atexit.register(self.teardown)      # a backstop: the runner tears down first
                else:
                    remove_clusters(client, self._name)        # a stale kept cluster (other image/size)
                ips = create_cluster(client, self._name, config.nodes, tag, run_id=run_id, kept=self.keep,
                                     subnet=self.subnet)
            by_node = {c.labels[L_NODE]: c for c in cluster_containers(client, self._name)}
            self._shells = {n: DockerShell(by_node[n]) for n in config.nodes}
            self._nodes = {n: Node(n, ips[n], self.port, LAYOUT.data_dir, LAYOUT.clock_file if config.faketime else None)
                           for n in config.nodes}
            peers = {n: node.address for n, node in self._nodes.items()}
            for n, node in self._nodes.items():
                self._reset(n)
                self._argv[n] = remote.node_argv(config, n, node.host, node.port, peers, LAYOUT.data_dir)
                remote.start_daemon(self._shells[n], LAYOUT, self._argv[n], faketime=config.faketime)
            remote.wait_healthy(list(self._nodes.values()), self.health_timeout, self._log_tails())
            self._run_dir = Path(config.run_dir)
            self._write_cluster_json()
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
            self._write_cluster_json(stopped=True)
        finally:
            client.close()

    def _write_cluster_json(self, stopped: bool = False) -> None:
        """``<run_dir>/cluster.json``: what :func:`harness.backends.attach` needs to find this cluster."""
        if self._run_dir is None:
            return
        remote.save_cluster_state(self._run_dir, {
            "backend": "docker", "cluster": self._name, "owned": self._owned, "stopped": stopped,
            "run_dir": str(self._run_dir), "docker_host": os.environ.get("DOCKER_HOST"),
            "capabilities": sorted(self.capabilities), "argv": self._argv}, list(self._nodes.values()))

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "DockerBackend":
        """Re-attach to a cluster from its ``cluster.json`` (``dynharness heal``, cleanup after a crash)."""
        b = cls({"reuse": False})
        b._name, b._owned = state["cluster"], bool(state.get("owned", True))
        b._run_dir = Path(state["run_dir"]) if state.get("run_dir") else None
        b._argv = {k: list(v) for k, v in (state.get("argv") or {}).items()}
        b._client = client = connect_engine(b.timeout)
        by_node = {c.labels.get(L_NODE): c for c in cluster_containers(client, b._name)}
        for n in state["nodes"]:
            b._nodes[n["name"]] = Node(n["name"], n["host"], int(n["port"]), n["data_dir"], n.get("clock_file"))
            if n["name"] in by_node:
                b._shells[n["name"]] = DockerShell(by_node[n["name"]])
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
            remote.start_daemon(shell, LAYOUT, self._argv[node], faketime=self._nodes[node].clock_file is not None)
        remote.wait_healthy([self._nodes[node]], self.health_timeout, self._log_tails())

    def kill(self, node: str) -> None:
        """SIGKILL the server process (the container, its clock file and firewall rules stay)."""
        shell = self._shell(node)
        if remote.signal_daemon(shell, LAYOUT, "KILL"):
            remote.wait_gone(shell, LAYOUT)

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


def sshd_hosts(client, name: str, count: int, image: str, authorized_key: str,
               timeout: float = 30.0) -> tuple[dict[str, str], list[str]]:
    """Containers running sshd (own host keys each) for the SSH backend's tests and benchmarks.

    Returns ({node: ip}, known_hosts lines read from inside each container, i.e. out of band,
    as an operator would): verification against them means something.
    """
    nodes = [f"n{i}" for i in range(1, count + 1)]
    ips = create_cluster(client, name, nodes, image, run_id=name, kept=False, mode="sshd",
                         env={"DYNHARNESS_AUTHORIZED_KEY": authorized_key})
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    for node, ip in ips.items():
        shell = DockerShell(client.containers.get(f"dynharness-{name}-{node}"))
        while True:
            key = shell.get_file("/etc/ssh/ssh_host_ed25519_key.pub").decode().split()
            if len(key) >= 2 and remote.port_open(ip, 22):
                break
            if time.monotonic() > deadline:
                remove_clusters(client, name)
                raise UserError(f"sshd in {node} did not come up within {timeout:.0f}s")
            time.sleep(0.1)
        lines.append(f"{ip} {key[0]} {key[1]}")
    return ips, lines
