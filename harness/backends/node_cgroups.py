"""One cgroup (v2) per local node, so iptables can tell nodes that share a host apart by process.

Why: on the local backend every node shares the host's network. Rules ``-s A -d B`` work only
for a store whose peer connections leave from each node's own loopback address (the reference
Dynamo binds them); etcd dials from 127.0.0.1 like most stores, so address rules cannot cut
its members apart. And address rules cut *every* cluster on those addresses: two local runs
both use 127.0.0.11-15, so one run's partition cut the other's cluster.

A socket belongs to the cgroup of the process that created it (an accepted socket to its
listener's), and iptables' ``-m cgroup --path P`` matches the packets a socket in ``P`` sends.
So with each node process in a cgroup of its own (``dynharness/<run id>/<node>``), the rule
``-m cgroup --path dynharness/<run>/A -d B -j DROP`` in the OUTPUT path drops exactly what node
A of this run sends to node B, whatever address A dialled from, and nothing another run's
nodes send. The harness's probes run inside the source node's cgroup too, so they see what the
node sees.

Needs root, a writable cgroup2 hierarchy and iptables' cgroup match; :func:`available` checks
all three for real, and the backend falls back to address rules (saying so in its capabilities)
where one is missing.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence

#: Parent of every run's cgroups, relative to the cgroup2 root.
PARENT = "dynharness"


def cgroup2_root() -> Path | None:
    """Where the cgroup2 (unified) hierarchy is mounted, if it is."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return Path(parts[1])
    except OSError:
        return None
    return None


def create(run_id: str, names: Sequence[str], chain: str) -> dict[str, str] | None:
    """Make one cgroup per node and prove the iptables match on it; {node: path relative to the
    cgroup2 root}, or None when this host cannot (nothing is left behind then)."""
    root = cgroup2_root()
    if root is None or not names:
        return None
    paths = {n: f"{PARENT}/{run_id}/{n}" for n in names}
    try:
        for rel in paths.values():
            (root / rel).mkdir(parents=True, exist_ok=True)
    except OSError:
        remove(paths)
        return None
    probe = ["-m", "cgroup", "--path", next(iter(paths.values())), "-d", "127.0.0.1", "-j", "RETURN"]
    added = subprocess.run(["iptables", "-w", "5", "-A", chain, *probe], capture_output=True, timeout=15)
    if added.returncode != 0:
        remove(paths)
        return None
    subprocess.run(["iptables", "-w", "5", "-D", chain, *probe], capture_output=True, timeout=15)
    return paths


def procs_file(rel: str) -> str:
    """The file a process writes its pid to, to join the cgroup ``rel`` (found before a fork)."""
    root = cgroup2_root()
    if root is None:
        raise OSError("no cgroup2 hierarchy mounted")
    return str(root / rel / "cgroup.procs")


def join(procs: str) -> None:
    """Move the calling process into a cgroup by its ``procs_file`` (a child, before exec)."""
    with open(procs, "w", encoding="ascii") as fh:
        fh.write(str(os.getpid()))


def match(rel: str) -> list[str]:
    """iptables arguments matching the packets sent by processes in the cgroup ``rel``."""
    return ["-m", "cgroup", "--path", rel]


def remove(paths: Mapping[str, str]) -> list[str]:
    """Remove the run's cgroups (their processes must be gone); the ones still there."""
    root = cgroup2_root()
    if root is None:
        return []
    left = []
    for rel in paths.values():
        try:
            (root / rel).rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            left.append(rel)
    for rel in {str(Path(r).parent) for r in paths.values()}:
        try:
            (root / rel).rmdir()
        except OSError:
            pass
    return left


def kill(paths: Mapping[str, str]) -> None:
    """SIGKILL every process left in the run's cgroups (SIGCONT first: a paused one dies too).

    A node outlives the pid the state file names when it was restarted by another harness
    (``heal``); its cgroup still holds it, so an orphan's nodes are found by cgroup, not pid."""
    root = cgroup2_root()
    if root is None:
        return
    for rel in paths.values():
        try:
            pids = [int(p) for p in (root / rel / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if not (root / rel / "cgroup.procs").read_text().split():
                    break
            except OSError:
                break
            time.sleep(0.02)


def run_cgroups() -> dict[str, list[str]]:
    """{run id: [its node cgroups, relative to the root]} of every run on this host (for
    ``cleanup --all-orphans``: cgroups no state file names)."""
    root = cgroup2_root()
    out: dict[str, list[str]] = {}
    if root is None or not (root / PARENT).is_dir():
        return out
    for run in sorted(p for p in (root / PARENT).iterdir() if p.is_dir()):
        out[run.name] = [f"{PARENT}/{run.name}/{n.name}" for n in sorted(run.iterdir()) if n.is_dir()]
    return out
