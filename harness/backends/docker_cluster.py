"""Docker engine access and cluster plumbing: networks, containers, labels, cleanup.

A cluster is a user-defined bridge network with a fixed subnet, ``internal``
(no route off the machine), fixed container IPs (n1 = .11, n2 = .12, ...),
every node in every other node's hosts file and DNS pointed at 127.0.0.1
(Docker's embedded DNS would otherwise forward unknown names off the
machine). Containers get the least privilege the faults need: ``NET_ADMIN``
for iptables and ``init`` so signals and orphaned daemons are handled; only
a cluster made with ``fuse`` (a run with power loss: its data dirs are lazy
disks) also gets ``/dev/fuse`` and ``SYS_ADMIN``, to mount them.
Everything carries the ``dynharness`` label plus cluster/run/node labels and
the owner (``dynharness.owner``: the harness process that made it, as
``cluster_state`` records owners, so a cluster whose harness was killed is
found by its labels alone), and is removed by label, containers before their network. Every engine call has
a timeout (the client's); a missing or silent engine is a one-line UserError.
"""
from __future__ import annotations

import io
import ipaddress
import json
import os
import shutil
import subprocess
import tarfile
import time
from typing import Any, Mapping, Sequence

from harness import optional
from harness.backends import cluster_state, remote
from harness.backends.base import CommandResult
from harness.backends.image import LABEL
from harness.errors import UserError

DEFAULT_TIMEOUT = 30.0
CHAIN = "DYNHARNESS"          # the firewall chain the entrypoint creates in every node container
L_CLUSTER, L_RUN, L_NODE, L_KEPT = f"{LABEL}.cluster", f"{LABEL}.run", f"{LABEL}.node", f"{LABEL}.kept"
L_OWNER = f"{LABEL}.owner"


def connect_engine(timeout: float = DEFAULT_TIMEOUT):
    """A Docker SDK client whose every call times out; UserError saying what to do when none answers."""
    docker = optional.require("docker", "the docker backend")
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if where.startswith("ssh://"):   # the SDK's SSH transport is paramiko's
        optional.require("paramiko", "a Docker engine over SSH (DOCKER_HOST=ssh://...)")
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

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(os.path.basename(path))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
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
                   subnet: str | None = None, mode: str = "idle", env: Mapping[str, str] | None = None,
                   fuse: bool = False) -> dict[str, str]:
    """Network + one started container per node; returns {node: ip}. Removes what it made on failure.
    ``fuse``: the containers may mount FUSE file systems (``/dev/fuse``, ``SYS_ADMIN``)."""
    import docker.types
    import docker.errors
    try:
        fixed = ipaddress.ip_network(subnet) if subnet else None
    except ValueError:
        raise UserError(f"docker subnet {subnet!r} is not an IPv4 network like 10.231.5.0/24") from None
    labels = {LABEL: "1", L_CLUSTER: name, L_RUN: run_id, L_KEPT: "1" if kept else "0",
              L_OWNER: json.dumps(cluster_state.current_owner())}
    for attempt in range(5):   # another harness may take the same free subnet between our look and our create
        net_addr = fixed or _free_subnet(client)
        hosts = list(net_addr.hosts())
        if len(hosts) < 11 + len(nodes):
            raise UserError(f"subnet {net_addr} is too small for {len(nodes)} nodes")
        try:
            network = client.networks.create(
                f"dynharness-{name}", driver="bridge", internal=True, labels=labels, check_duplicate=True,
                ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(net_addr),
                                                                                  gateway=str(hosts[0]))]))
            break
        except docker.errors.APIError as e:
            if fixed or "overlap" not in str(e).lower() or attempt == 4:
                raise UserError(f"could not create the network of cluster {name} ({net_addr}): "
                                f"{e.explanation or e}") from None
    ips = {n: str(hosts[10 + i]) for i, n in enumerate(nodes)}          # n1 = .11, n2 = .12, ...
    privileges: dict[str, Any] = {"cap_add": ["NET_ADMIN"]}
    if fuse:
        privileges = {"cap_add": ["NET_ADMIN", "SYS_ADMIN"], "devices": ["/dev/fuse:/dev/fuse:rwm"]}
    try:
        for node, ip in ips.items():
            host_config = client.api.create_host_config(
                **privileges, init=True, dns=["127.0.0.1"], network_mode=network.name,
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


def label_owner(labels: Mapping[str, str]) -> dict[str, Any] | None:
    """The owner a container's or network's labels record (None: made before owners were)."""
    try:
        owner = json.loads(labels.get(L_OWNER) or "null")
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def list_clusters(client) -> dict[str, dict[str, Any]]:
    """{cluster name: {"kept", "run", "owner", "nodes": {node: (status, ip)}}} for `cluster status`."""
    out: dict[str, dict[str, Any]] = {}
    for c in cluster_containers(client):
        lab = c.labels
        info = out.setdefault(lab.get(L_CLUSTER, "?"), {"kept": lab.get(L_KEPT) == "1", "run": lab.get(L_RUN),
                                                       "owner": label_owner(lab),
                                                       "image": c.image.tags[0] if c.image.tags else c.image.id[:19],
                                                       "nodes": {}})
        nets = c.attrs.get("NetworkSettings", {}).get("Networks", {})
        ip = next((v.get("IPAddress") or (v.get("IPAMConfig") or {}).get("IPv4Address") for v in nets.values()), "")
        info["nodes"][lab.get(L_NODE, c.name)] = (c.status, ip)
    return out


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
