"""The worker side of ``campaign --jobs K`` / ``--scheduler URL``: one campaign cell as a Dask task.

Why a module of its own: Dask pickles the task function by reference, so each worker imports
this module on its own host, with that host's ``dynharness``; the client side
(``harness.campaign.dask_pool``) stays free to import what the live table needs.

A task runs its cell through the campaign's CellRunner exactly as the serial loop does (the
default one starts ``python -m harness.campaign --run-cell`` as a session of its own, under the
cell's time limit), with three additions that only a worker needs:

* it tells the client which worker runs the cell and the child's pid (Dask's structured events,
  ``log_event`` on a topic per campaign), for the live table and for reaping after a crash;
* it stops the cell when the campaign's Dask ``Event`` is set: signals reach only the client;
* with ``ship`` (workers on other hosts) the cell runs into a temporary folder and comes back
  as a gzipped tarball of its run folder, which the client unpacks into its own histories.

A worker that dies mid-cell takes nothing along: the cell's child gets SIGTERM from the kernel
(``harness.signals.die_with_parent``) and heals. Dask would then run the task again elsewhere
(up to the scheduler's ``allowed-failures``); the first attempt leaves its name in a Dask
``Variable`` the client set to "" before submitting, so a second attempt refuses, and the cell
is an error with the reason, as a cell whose process crashed is.
"""
from __future__ import annotations

import dataclasses
import io
import os
import signal
import socket
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

from distributed import Event, Variable, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from harness.campaign.definition import CampaignDef, Cell, cell_spec
from harness.backends.local_share import HostWaitStopped, hold_host, host_need
from harness.campaign.running import CellResult
from harness.errors import UserError

#: Task result of a cell that never started (the campaign was stopped first): it stays pending.
NOT_STARTED = {"state": "pending"}


class IgnoreTerminalSignals(WorkerPlugin):
    """Local worker processes share the campaign's process group, so Ctrl-C or a hangup at the
    terminal would reach them too and kill them mid-cell; the campaign alone stops its cells
    (through the stop Event), so its workers ignore SIGINT and SIGHUP (also after a restart)."""

    name = "dynharness-ignore-terminal-signals"

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)


@dataclasses.dataclass
class _Watch:
    """CellWatch for SubprocessCellRunner on a worker: report the child's pid, poll the stop Event."""

    tell: Any
    stop: Any

    def started(self, pid: int) -> None:
        self.tell("pid", pid=pid)

    def stop_requested(self) -> bool:
        try:
            return bool(self.stop.is_set())
        except Exception:  # noqa: BLE001 - the scheduler is gone: the worker goes next, and the child with it
            return False


def whoami() -> dict[str, Any]:
    """This worker as the client shows it (``on``: ``host/name``; not ``worker``, which Dask's
    events use for the address), its address, host and pid."""
    w = get_worker()
    host = socket.gethostname()
    return {"on": f"{host}/{w.name}", "address": w.address, "host": host, "worker_pid": os.getpid()}


def run_cell_task(job: dict[str, Any]) -> dict[str, Any]:
    """Run one cell here; ``{"result": CellResult json, "on": host/worker, "tar"/"rel" when shipped}``
    (or NOT_STARTED)."""
    cell: Cell = job["cell"]
    me = whoami()
    worker = get_worker()
    stop = Event(job["stop"])
    watch = _Watch(lambda event, **kw: worker.log_event(job["topic"], {"cell": cell.id, "event": event, **me, **kw}),
                   stop)
    if watch.stop_requested():
        return NOT_STARTED
    mark = Variable(job["mark"])   # set to "" by the client before it submitted the task
    first = mark.get()
    if first:
        return {**me, "result": CellResult(state="error", worker=me["on"], error=(
            f"its first worker {first} died mid-cell; not run again (dynharness campaign --resume runs it)")).to_json()}
    mark.set(me["on"])
    with tempfile.TemporaryDirectory(prefix="dynharness-cell-") as tmp:
        runner, defn = job["runner"], job["defn"]
        if job.get("ship"):
            runner, defn = _run_here(runner, defn, job.get("spec_text"), Path(tmp))
        try:
            need = host_need(cell_spec(defn.spec_path, cell.overrides))
        except UserError:
            need = None   # the runner reports the cell's bad spec as its error
        if dataclasses.is_dataclass(runner) and hasattr(runner, "watch"):
            runner = dataclasses.replace(runner, watch=watch, host_held=need is not None)
        try:
            with hold_host(need, watch.stop_requested):
                watch.tell("started")
                res = runner.run(defn, cell)
        except HostWaitStopped:
            return NOT_STARTED
        res.worker = me["on"]
        out: dict[str, Any] = {**me, "result": res.to_json()}
        if job.get("ship") and res.run_dir:
            out["tar"], out["rel"] = _pack(Path(res.run_dir))
    return out


def _run_here(runner: Any, defn: CampaignDef, spec_text: str | None, tmp: Path) -> tuple[Any, CampaignDef]:
    """The runner and definition for a worker on another host: runs go to ``tmp/histories``, and
    the campaign's base spec file (a path on the client's host) is written under ``tmp``."""
    if dataclasses.is_dataclass(runner) and hasattr(runner, "histories"):
        runner = dataclasses.replace(runner, histories=tmp / "histories")
    if defn.spec_path and spec_text is not None:
        spec = tmp / "spec" / Path(defn.spec_path).name
        spec.parent.mkdir()
        spec.write_text(spec_text, encoding="utf-8")
        defn = dataclasses.replace(defn, spec_path=str(spec))
    return runner, defn


def _pack(run_dir: Path) -> tuple[bytes, str]:
    """The run folder as gzipped tar bytes, and its path under histories (``<test>/<time>``)."""
    rel = Path(*run_dir.parts[-2:])   # runs are always <histories>/<test name>/<time>
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(run_dir, arcname=str(rel))
    return buf.getvalue(), str(rel)
