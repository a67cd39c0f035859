"""Clusters whose harness is gone (orphans): finding them, and removing everything they left.

A harness killed with ``kill -9`` leaves its cluster behind: on the local backend an iptables
chain hooked from INPUT (and OUTPUT), its nodes' cgroups and, with power loss, lazy-disk mounts
(their daemons unmount themselves when the harness dies, so one left means a daemon killed
too), on Docker containers, a network and rules inside, on SSH a chain, a node and a run
folder per host. Each cluster names its owner
(``cluster_state``), so an orphan is a cluster whose owner is dead, found from:

* the state files (``cluster.json``) under the histories folder;
* the host-wide index of local chains (``cluster_state.registered_chains``), which also
  attributes chains of runs stored elsewhere or whose run folder was deleted;
* Docker labels (``dynharness.owner`` on every container and network).

Those are *attributed*: a record names a dead owner, so removing them cannot hurt a live run.
Leftovers no record names (a ``DH-`` chain in ``iptables -S``, a cgroup under ``dynharness/``,
a lazy-disk mount (FUSE, ``lazyfs``) in this host's mount table, a container without an owner
label, a state file older than owners) may belong to a live run of
an older harness; they are listed and removed only when asked (``--all-orphans``). A cluster
whose record names a live owner, another host's process, or a cluster kept on purpose is never
an orphan.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.backends import cluster_state as cs
from harness.backends import lazy_disks, node_cgroups

_CHAIN = re.compile(r"^-N (DH-[0-9a-f]{8})$", re.M)


@dataclass(frozen=True)
class Orphan:
    """One abandoned cluster, or one leftover no record names (``attributed`` False)."""

    what: str                             # for people: "local cluster of <run dir>", "chain DH-..."
    why: str                              # "owner pid 812 is gone", "no record names it"
    backend: str
    state: Path | None = None             # its cluster.json, when it has one
    chain: str = ""                       # local, found without a state file
    cgroups: tuple[str, ...] = ()
    docker_cluster: str = ""
    attributed: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def _state_files(root: Path) -> list[Path]:
    patterns = (f"*/*/{cs.STATE_FILE}", f"explore/*/runs/*/*/{cs.STATE_FILE}")   # runs, explore's case runs
    found = {p.resolve() for pattern in patterns for p in root.glob(pattern)} if root.is_dir() else set()
    for entry in cs.registered_chains().values():
        if isinstance(entry.get("state"), str) and Path(entry["state"]).exists():
            found.add(Path(entry["state"]).resolve())
    return sorted(found)


def _from_states(root: Path, named: set[str]) -> list[Orphan]:
    out = []
    for path in _state_files(root):
        doc = cs.load(path)
        if doc is None:
            continue
        named.update(x for x in (doc.get("firewall_chain"), doc.get("cluster")) if isinstance(x, str) and x)
        mounts = _disk_mounts(doc)
        named.update(mounts)
        if doc.get("stopped"):
            continue
        status = cs.owner_status(doc.get("owner"))
        if status in (cs.DEAD, cs.UNKNOWN):
            left = lazy_disks.stale_mounts(mounts)
            what = f"{doc.get('backend', '?')} cluster of {path.parent}" + (
                f" with {len(left)} lazy-disk mount(s)" if left else "")
            out.append(Orphan(what, cs.describe_owner(doc.get("owner")), str(doc.get("backend", "?")), state=path,
                              attributed=status == cs.DEAD, extra={"mounts": left} if left else {}))
    return out


def _disk_mounts(doc: dict[str, Any]) -> list[str]:
    """The lazy-disk mount points a cluster's state names (power loss), resolved."""
    disks = doc.get("disks") if isinstance(doc.get("disks"), dict) else {}
    return [os.path.realpath(d["mount"]) for d in disks.values() if isinstance(d, dict) and isinstance(d.get("mount"), str)]


def _from_chain_index(named: set[str]) -> list[Orphan]:
    out = []
    for chain, entry in cs.registered_chains().items():
        if chain in named:
            continue                      # its state file speaks for it
        named.add(chain)
        if cs.owner_status(entry.get("owner")) == cs.DEAD:
            cgroups = tuple(v for v in (entry.get("cgroups") or {}).values() if isinstance(v, str))
            out.append(Orphan(f"local chain {chain} (run folder {Path(str(entry.get('state'))).parent} is gone)",
                              cs.describe_owner(entry.get("owner")), "local", chain=chain, cgroups=cgroups))
    return out


def _from_docker(client: Any, named: set[str]) -> list[Orphan]:
    from harness.backends.docker_cluster import L_CLUSTER, L_KEPT, LABEL, label_owner

    groups: dict[str, dict[str, Any]] = {}
    things = list(client.containers.list(all=True, filters={"label": [f"{LABEL}=1"]}))
    things += list(client.networks.list(filters={"label": [f"{LABEL}=1"]}))
    for thing in things:
        labels = thing.attrs.get("Labels") or thing.attrs.get("Config", {}).get("Labels") or {}
        name = labels.get(L_CLUSTER)
        if name and name not in groups:
            groups[name] = {"kept": labels.get(L_KEPT) == "1", "owner": label_owner(labels)}
    out = []
    for name, info in sorted(groups.items()):
        if name in named or info["kept"]:
            continue
        status = cs.owner_status(info["owner"])
        if status in (cs.DEAD, cs.UNKNOWN):
            out.append(Orphan(f"docker cluster {name}", cs.describe_owner(info["owner"]) if status == cs.DEAD
                              else "no owner label", "docker", docker_cluster=name, attributed=status == cs.DEAD))
    return out


def _unnamed_local(named: set[str]) -> list[Orphan]:
    """Chains and cgroups of the local backend that no state file or index entry names."""
    out = []
    cgroups = node_cgroups.run_cgroups()
    if shutil.which("iptables"):
        listed = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True, timeout=15).stdout
        for chain in _CHAIN.findall(listed):
            if chain not in named:
                out.append(Orphan(f"local chain {chain}", "no record names it", "local", chain=chain,
                                  cgroups=tuple(cgroups.pop(chain, ())), attributed=False))
    for run, paths in cgroups.items():
        if run not in named:
            out.append(Orphan(f"cgroups {node_cgroups.PARENT}/{run}", "no record names them", "local",
                              cgroups=tuple(paths), attributed=False, extra={"run": run}))
    for mount in lazy_disks.lazy_mounts():
        if mount not in named:
            out.append(Orphan(f"lazy-disk mount {mount}", "no record names it", "local", attributed=False,
                              extra={"mounts": [mount]}))
    return out


def find(root: Path, *, docker_client: Any = None, unattributed: bool = False) -> list[Orphan]:
    """Every orphan found under the histories folder ``root``, in the chain index and (given a
    client) among Docker's labelled clusters; with ``unattributed`` also what no record names."""
    named: set[str] = set()
    out = _from_states(root, named) + _from_chain_index(named)
    if docker_client is not None:
        out += _from_docker(docker_client, named)
    if unattributed:
        out += _unnamed_local(named)
    return out if unattributed else [o for o in out if o.attributed]


def summary_line(orphans: list[Orphan], limit: int = 3) -> str:
    """One line naming orphans, for the start of a run and ``ls``."""
    names = [f"{o.what} ({o.why})" for o in orphans[:limit]]
    more = f" and {len(orphans) - limit} more" if len(orphans) > limit else ""
    return (f"{len(orphans)} orphaned cluster(s) left by a killed harness: {'; '.join(names)}{more}; "
            "`dynharness cleanup` removes them")


def remove(orphan: Orphan, docker_client: Callable[[], Any] | None = None) -> None:
    """Remove everything ``orphan`` left: through its backend when it has a state file (nodes,
    rules, containers, remote folders), else its chain and cgroups, or its Docker cluster."""
    from harness.backends import attach
    from harness.backends import local_chain

    if orphan.state is not None:
        attach(orphan.state).teardown()      # unmounts its lazy disks, or says which stay
        return
    for mount in orphan.extra.get("mounts", ()):
        subprocess.run(["fusermount3", "-u", "-z", mount], capture_output=True, timeout=30)
    if orphan.docker_cluster:
        from harness.backends.docker_cluster import remove_clusters
        assert docker_client is not None
        remove_clusters(docker_client(), orphan.docker_cluster)
        return
    paths = {str(i): p for i, p in enumerate(orphan.cgroups)}
    node_cgroups.kill(paths)
    if orphan.chain:
        local_chain.remove(orphan.chain)
        cs.unregister_chain(orphan.chain)
    node_cgroups.remove(paths)
    run = orphan.chain or orphan.extra.get("run")
    root = node_cgroups.cgroup2_root()
    if run and root is not None:
        try:
            (root / node_cgroups.PARENT / run).rmdir()
        except OSError:
            pass
