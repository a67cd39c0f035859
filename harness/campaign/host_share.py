"""Local campaign cells side by side on one host: when they may, and how they wait when they may not.

Why: every local run puts its nodes on 127.0.0.11-15. Where the host can put each node in a
cgroup of its own (the local backend's ``node-cgroups`` capability: root, cgroup2 and
iptables' cgroup match), a partition's rules match the sending node's processes and touch
that run only, so cells may run side by side freely. Where it cannot, but iptables works,
partition and packet-loss rules are written on addresses, and one cell's partition cuts
every local cluster on the host (seen for real before the cgroups). Without iptables the
faults are in-process, per node, and harmless to neighbours.

So on a host without node cgroups a local cell with a partition or loss fault needs the host
*alone*, and every other local cell must not run while it does: a readers-writer lock on a
file (``flock``), shared by every process on the host (all Dask workers of one or several
campaigns). A cell waiting for the host alone holds a gate that stops new sharers, so it is
not starved by a stream of short cells. Docker and SSH cells have networks of their own and
never wait. ``harness.campaign.dask_pool`` says so in one line before the campaign starts.
"""
from __future__ import annotations

import fcntl
import functools
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

#: Faults that drop packets by iptables rules on the local backend (nemeses.firewall).
DROP_FAULTS = frozenset({"partition", "loss"})
ALONE, SHARED = "alone", "shared"
#: Seconds between tries of a busy lock (each try also asks whether the campaign is stopping).
POLL = 0.5


class HostWaitStopped(Exception):
    """The campaign was stopped while the cell waited for the host: it never started."""


@functools.cache
def isolated() -> bool:
    """Whether local runs on this host keep to themselves (or cannot disturb anyone): node
    cgroups, or no iptables at all. Probed once per process."""
    from harness.backends.local_chain import iptables_usable, node_cgroups_usable

    return node_cgroups_usable() or not iptables_usable()


def host_need(spec: Any) -> str | None:
    """``ALONE``, ``SHARED`` or None (no waiting) for a cell's spec on this host."""
    if getattr(spec, "backend", None) != "local" or isolated():
        return None
    return ALONE if DROP_FAULTS & set(spec.faults) else SHARED


def lock_paths() -> tuple[Path, Path]:
    """The lock file and its gate (one pair per host: every campaign on it must see the same)."""
    base = Path(tempfile.gettempdir())
    return base / "dynharness-local-cells.lock", base / "dynharness-local-cells.gate"


def _acquire(fh: IO[str], how: int, stopping: Callable[[], bool]) -> None:
    while True:
        try:
            fcntl.flock(fh, how | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if stopping():
                raise HostWaitStopped() from None
            time.sleep(POLL)


@contextmanager
def hold_host(need: str | None, stopping: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Hold this host as ``need`` says while the cell runs (nothing when None); HostWaitStopped
    when ``stopping()`` turns true while waiting."""
    if need is None:
        yield
        return
    lock_path, gate_path = lock_paths()
    with open(lock_path, "a", encoding="utf-8") as lock, open(gate_path, "a", encoding="utf-8") as gate:
        _acquire(gate, fcntl.LOCK_EX, stopping)   # a waiting ALONE cell holds the gate: no new sharers
        try:
            _acquire(lock, fcntl.LOCK_EX if need == ALONE else fcntl.LOCK_SH, stopping)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield   # closing the file releases the lock
