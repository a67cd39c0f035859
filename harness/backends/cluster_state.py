"""A cluster's state file (``<run_dir>/cluster.json``) and the owner it records.

Why an owner: a harness killed with ``kill -9`` cannot tear down what it made, and nothing else
knew the cluster was abandoned: the next run neither removed nor mentioned it, and ``heal``
restarted its nodes with nobody left to stop them. So every state file names the process that
owns the cluster: its pid, the pid's start time (``/proc/<pid>/stat`` field 22, clock ticks since
boot, so a pid reused by another process is not mistaken for the owner) and the host name. A
cluster left running on purpose (``--leave-running``, ``heal --resurrect``) says so in ``kept``
instead: it is nobody's orphan.

The file also holds the cluster's node secret (``heal`` needs it to reach the nodes), so it is
written ``0600`` and atomically (a reader never sees half a file; node restarts in parallel
threads write it one at a time).
"""
from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any, Mapping

STATE_FILE = "cluster.json"
_LOCK = threading.Lock()

#: What :func:`owner_status` says of a cluster's owner.
ALIVE, DEAD, KEPT, ELSEWHERE, UNKNOWN = "alive", "dead", "kept", "elsewhere", "unknown"


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None when there is no such process
    (a zombie counts as gone: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == "Z":
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def current_owner(kept: str | None = None) -> dict[str, Any]:
    """This process as a cluster's owner; ``kept`` (why) for a cluster meant to outlive it."""
    pid = os.getpid()
    return {"pid": pid, "start": start_time(pid), "host": socket.gethostname(), "kept": kept}


def owner_status(owner: Mapping[str, Any] | None) -> str:
    """ALIVE, DEAD (pid gone or reused), KEPT (left running on purpose), ELSEWHERE (another
    host: cannot tell) or UNKNOWN (no owner recorded: a state file older than owners)."""
    if not isinstance(owner, Mapping) or not isinstance(owner.get("pid"), int):
        return UNKNOWN
    if owner.get("kept"):
        return KEPT
    if owner.get("host") != socket.gethostname():
        return ELSEWHERE
    started = start_time(owner["pid"])
    return ALIVE if started is not None and started == owner.get("start") else DEAD


def describe_owner(owner: Mapping[str, Any] | None) -> str:
    """A few words on the owner, for the CLI: ``owner pid 812 is gone``, ``kept (leave_running)``..."""
    status = owner_status(owner)
    if status == UNKNOWN:
        return "no owner recorded"
    assert owner is not None
    pid = owner["pid"]
    if status == KEPT:
        return f"kept ({owner['kept']})"
    if status == ELSEWHERE:
        return f"owned by pid {pid} on {owner.get('host')}"
    if status == ALIVE:
        return f"owned by live pid {pid}"
    reused = start_time(pid) is not None
    return f"owner pid {pid} is gone" + (" (its pid now belongs to another process)" if reused else "")


def write_private(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` as JSON to ``path`` atomically, readable by its owner only (0600)."""
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def save(run_dir: Path, doc: Mapping[str, Any]) -> None:
    """Write ``<run_dir>/cluster.json`` (one writer at a time in this process)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with _LOCK:
        write_private(run_dir / STATE_FILE, doc)


def load(path: Path) -> dict[str, Any] | None:
    """A state file's contents, None when it is missing or not a JSON object."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def set_owner(path: Path, owner: Mapping[str, Any]) -> None:
    """Record a new owner in an existing state file (``heal --resurrect`` keeps a cluster)."""
    doc = load(path)
    if doc is not None:
        with _LOCK:
            write_private(path, {**doc, "owner": dict(owner)})


def runtime_dir() -> Path:
    """Where the local backend indexes its chains: tmpfs, cleared at boot like the chains are."""
    return Path(os.environ.get("DYNHARNESS_RUNTIME_DIR") or "/run/dynharness") / "chains"


def register_chain(chain: str, doc: Mapping[str, Any]) -> None:
    """Index a local run's chain host-wide (owner, cgroups, state file), so that it can still be
    attributed when its run folder is deleted or lives under another histories folder."""
    d = runtime_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        write_private(d / f"{chain}.json", {**doc, "chain": chain})
    except OSError:
        pass   # the index helps find orphans; a run does not depend on it


def unregister_chain(chain: str) -> None:
    (runtime_dir() / f"{chain}.json").unlink(missing_ok=True)


def registered_chains() -> dict[str, dict[str, Any]]:
    """{chain: its index entry} for every chain a local run registered on this host."""
    out: dict[str, dict[str, Any]] = {}
    d = runtime_dir()
    if d.is_dir():
        for p in sorted(d.glob("DH-*.json")):
            doc = load(p)
            if doc is not None:
                out[p.name.removesuffix(".json")] = doc
    return out
