"""Local runs side by side on one host: when they may, and how they wait when they may not.

Why: every local run puts its nodes on 127.0.0.11-15. Where the host can put each node in a
cgroup of its own (the local backend's ``node-cgroups`` capability: root, cgroup2 and
iptables' cgroup match), a partition's rules match the sending node's processes and touch
that run only, so runs may go side by side freely. Where it cannot, but iptables works,
partition and packet-loss rules are written on addresses, and one run's partition cuts
every local cluster on the host (seen for real before the cgroups). Without iptables the
faults are in-process, per node, and harmless to neighbours.

So on a host without node cgroups a local run with a partition or loss fault needs the host
*alone*, and every other local run must not run while it does: a readers-writer lock on a
file (``flock``), shared by every process on the host (``dynharness run``, each campaign cell,
every Dask worker). ``harness.runner.run_test`` takes it for the whole run; a Dask cell takes
it before its child process starts (so it can stop waiting when its campaign stops) and tells
the child it holds it. A run waiting for the host alone holds a gate that stops new sharers,
so it is not starved by a stream of short runs. Docker and SSH runs have networks of their
own and never wait.
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
    """``ALONE``, ``SHARED`` or None (no waiting) for a run's spec on this host."""
    if getattr(spec, "backend", None) != "local" or isolated():
        return None
    return ALONE if DROP_FAULTS & set(spec.faults) else SHARED


def lock_paths() -> tuple[Path, Path]:
    """The lock file and its gate (one pair per host: every run on it must see the same)."""
    base = Path(tempfile.gettempdir())
    return base / "dynharness-local-cells.lock", base / "dynharness-local-cells.gate"


def _acquire(fh: IO[str], how: int, stopping: Callable[[], bool], waiting: Callable[[], None]) -> None:
    while True:
        try:
            fcntl.flock(fh, how | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if stopping():
                raise HostWaitStopped() from None
            waiting()
            time.sleep(POLL)


@contextmanager
def hold_host(need: str | None, stopping: Callable[[], bool] = lambda: False,
              on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold this host as ``need`` says while the run goes on (nothing when None); HostWaitStopped
    when ``stopping()`` turns true while waiting; ``on_wait(why)`` once if it has to wait."""
    if need is None:
        yield
        return
    lock_path, gate_path = lock_paths()
    waiting = _Waiting(on_wait, need)
    with open(lock_path, "a", encoding="utf-8") as lock, open(gate_path, "a", encoding="utf-8") as gate:
        _acquire(gate, fcntl.LOCK_EX, stopping, waiting)   # a waiting ALONE run holds the gate: no new sharers
        try:
            _acquire(lock, fcntl.LOCK_EX if need == ALONE else fcntl.LOCK_SH, stopping, waiting)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield   # closing the file releases the lock


class _Waiting:
    """Says once, through ``on_wait``, that a run waits for the host, and why."""

    def __init__(self, on_wait: Callable[[str], None] | None, need: str) -> None:
        self.on_wait, self.need, self.said = on_wait, need, False

    def __call__(self) -> None:
        if self.on_wait is not None and not self.said:
            self.said = True
            self.on_wait("this host has no node cgroups, so partition and loss rules match the loopback "
                         "addresses every local run shares; " + (
                             "this run's faults need the host alone: waiting for the other local runs to end"
                             if self.need == ALONE else
                             "a local run with partition or loss faults holds the host: waiting for it to end"))
