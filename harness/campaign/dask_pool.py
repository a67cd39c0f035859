"""``campaign --jobs K`` and ``--scheduler URL``: campaign cells side by side on a Dask cluster.

Why Dask (``dask.distributed``) rather than a home-made scheduler: a cell is a coarse task
(a whole cluster and a run, minutes long), and Dask already places tasks on free workers,
notices a worker that dies, runs the same code on one host (``LocalCluster``) or on many
(``dask scheduler`` + ``dask worker`` on each host), and ships results back. What a campaign
adds is here and in ``harness.campaign.dask_worker``:

* ``--jobs K`` alone starts a ``LocalCluster`` for the campaign: K worker processes with one
  thread each, scheduler and workers on 127.0.0.1, no dashboard, closed at the end. Its
  scheduler gives up on a task whose worker died at once (``allowed-failures = 0``) and never
  queues a second cell behind a busy worker (``worker-saturation = 1.0``).
* ``--scheduler tcp://HOST:8786`` uses a cluster the user started; at most one cell per worker
  thread (and at most K with ``--jobs``) is handed out at a time, so cells start in the
  campaign's order on whichever worker is free. Runs come back as tarballs
  (``ship``), unless ``--shared-histories`` says every worker writes to the same folder.
* Each result goes through ``record_cell`` as in the serial loop (expectations, campaign.json,
  pages), so a parallel campaign's folder is the serial one's, plus each cell's ``worker``.
* A worker that dies mid-cell: the cell is ``error`` with the reason; on this host the cell's
  child (which got SIGTERM when its worker died) is waited for, killed after the grace if it
  hangs, and its cluster torn down if still up, as after a time limit; the others go on.
* Ctrl-C / SIGTERM / SIGHUP: the stop Event is set, unstarted cells are cancelled (they stay
  pending), running ones stop as at their time limit (healed) and are recorded
  ``interrupted``, then the interrupt goes on up (``run_campaign`` marks the campaign).
"""
from __future__ import annotations

import asyncio
import io
import logging
import os
import queue
import secrets
import shutil
import signal
import socket
import tarfile
import time
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from harness import optional
from harness.campaign.definition import Cell
from harness.campaign.running import (WATCH_EVERY, CampaignRun, CellResult, CellRunner, Notify, _newest_run,
                                      _teardown_left, record_cell)
from harness.errors import UserError
from harness.signals import shielded

#: Seconds to wait for a scheduler given with --scheduler before saying it does not answer.
CONNECT_TIMEOUT = 10.0
#: What needs Dask, as the hint says when it is missing (``harness.optional``).
WHAT = "campaign --jobs/--scheduler"
#: Seconds, beyond the runner's grace, that stopped cells get to come back after Ctrl-C.
STOP_SLACK = 15.0


def probe_scheduler(address: str) -> None:
    """Connect to ``address`` and ask it who it is, all within CONNECT_TIMEOUT s: UserError (one
    line) unless a Dask scheduler answers. ``Client(timeout=...)`` bounds the TCP connect only: a
    listener that accepts and says nothing hung it, an HTTP server left it hanging and then a
    traceback, and another protocol's bytes read as frame sizes raised MemoryError deep inside."""
    from distributed.comm import connect

    async def ask() -> Any:
        comm = await connect(address, timeout=CONNECT_TIMEOUT)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    try:
        answer = asyncio.run(asyncio.wait_for(ask(), CONNECT_TIMEOUT))
    except Exception as e:   # noqa: BLE001 (whatever the far end did, it did not answer as a scheduler)
        raise UserError(f"the Dask scheduler at {address} does not answer ({_first_line(e)})") from None
    if not (isinstance(answer, dict) and answer.get("type") == "Scheduler"):
        raise UserError(f"{address} answers, but not as a Dask scheduler (it says it is "
                        f"{answer.get('type') if isinstance(answer, dict) else type(answer).__name__!r})")


def _first_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@dataclass
class DaskPool:
    """A connected Dask client and how to use it for cells (see the module docstring)."""

    client: Any
    histories: Path
    jobs: int | None = None          # at most this many cells at once (None: one per worker thread)
    ship: bool = False               # workers on other hosts: runs come back as tarballs
    local: bool = True               # the workers run on this host (LocalCluster)
    started: dict[str, dict[str, Any]] = field(default_factory=dict)   # cell id -> its worker's "started"/"pid" events
    recorded: set[str] = field(default_factory=set)   # cells whose task came back (a late event must not revive them)

    @classmethod
    @contextmanager
    def open(cls, *, jobs: int | None, scheduler: str | None, histories: Path,
             shared_histories: bool = False) -> Iterator["DaskPool"]:
        """Start a LocalCluster of ``jobs`` workers, or connect to ``scheduler``; closed on exit."""
        dask = optional.require("dask", WHAT)
        distributed = optional.require("distributed", WHAT)
        Client, LocalCluster = distributed.Client, distributed.LocalCluster

        from harness.campaign.dask_worker import IgnoreTerminalSignals

        quiet = logging.getLogger("distributed")
        level = quiet.level
        quiet.setLevel(logging.ERROR)   # a killed worker is reported in its cell, not as a log storm over the table
        cluster = client = None
        try:
            with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                                  "distributed.scheduler.worker-saturation": 1.0}):
                if scheduler:
                    probe_scheduler(scheduler)
                    try:
                        client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
                    except (OSError, TimeoutError, ValueError) as e:
                        raise UserError(f"the Dask scheduler at {scheduler} does not answer "
                                        f"({_first_line(e)})") from None
                else:
                    cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None, silence_logs=logging.ERROR)
                    client = Client(cluster, set_as_default=False)
                    client.register_plugin(IgnoreTerminalSignals())
            yield cls(client, histories, jobs, ship=bool(scheduler) and not shared_histories, local=not scheduler)
        finally:
            with shielded():
                if client is not None:
                    client.close()
                if cluster is not None:
                    cluster.close()
                quiet.setLevel(level)

    def slots(self) -> int:
        """How many cells may be out at once: one per worker thread (LocalCluster: K), at most --jobs."""
        if self.local and self.jobs:
            return self.jobs
        threads = sum(self.client.nthreads().values()) or 1
        return min(threads, self.jobs) if self.jobs else threads

    def run_cells(self, camp: CampaignRun, cells: Sequence[Cell], runner: CellRunner, notify: Notify) -> None:
        """Run the cells on the cluster, recording each as it comes back (see the module docstring)."""
        from distributed import Event, Variable

        from harness.campaign.dask_worker import run_cell_task

        topic = f"dynharness-{secrets.token_hex(4)}"
        self.started, self.recorded = {}, set()
        stop = Event(f"{topic}-stop", client=self.client)
        events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.client.subscribe_topic(topic, lambda ev: events.put(ev[1]))
        if is_dataclass(runner) and isinstance(getattr(runner, "histories", None), Path) and not self.ship:
            runner = replace(runner, histories=runner.histories.resolve())   # workers may not share our cwd
        spec_text = (Path(camp.defn.spec_path).read_text(encoding="utf-8")
                     if self.ship and camp.defn.spec_path else None)
        todo, out = list(cells), {}
        try:
            while todo or out:
                while todo and len(out) < self.slots():
                    cell = todo.pop(0)
                    job = {"runner": runner, "defn": camp.defn, "cell": cell, "topic": topic, "stop": stop.name,
                           "ship": self.ship, "spec_text": spec_text, "mark": f"{topic}-{cell.id}"}   # = the task's key
                    Variable(job["mark"], client=self.client).set("")   # the task's first attempt writes its worker
                    out[self.client.submit(run_cell_task, job, key=f"{topic}-{cell.id}", pure=False)] = cell
                done = _some_done(out)
                self._drain(events, camp, notify)
                for fut in done:
                    self._record(camp, out.pop(fut), fut, notify)
        except KeyboardInterrupt:
            with shielded():
                self._stop(stop, out, events, camp, notify, getattr(runner, "grace", 60.0))
            raise
        finally:
            self.client.unsubscribe_topic(topic)

    def _drain(self, events: "queue.SimpleQueue[dict[str, Any]]", camp: CampaignRun, notify: Notify) -> None:
        """Apply the workers' events: a cell started on a worker (the table shows it), its child's pid."""
        while True:
            try:
                ev = events.get_nowait()
            except queue.Empty:
                return
            cid = ev.get("cell")
            if cid not in camp.cells:
                continue
            self.started.setdefault(cid, {"t0": time.time()}).update(ev)
            if ev.get("event") == "started" and cid not in self.recorded:
                camp.cells[cid] = CellResult(state="running", worker=ev.get("on"))
                camp.save()
                notify(camp, cid)

    def _record(self, camp: CampaignRun, cell: Cell, fut: Any, notify: Notify) -> None:
        """Record what a finished task says (or why it failed) for its cell."""
        from distributed import Variable

        self.recorded.add(cell.id)
        try:
            Variable(fut.key, client=self.client).delete()   # the task's re-run mark (its key, see run_cells)
        except Exception:  # noqa: BLE001 - only tidying the scheduler
            pass
        try:
            got = fut.result()
        except CancelledError:
            got = {"state": "pending"}
        except Exception as e:  # noqa: BLE001 - KilledWorker or the task raised: the cell's error, never lost
            record_cell(camp, cell, self._lost(cell, e), notify)
            return
        if "result" not in got:   # never started (stopped first): pending again
            camp.cells[cell.id] = CellResult()
            camp.save()
            notify(camp, None)
            return
        res = CellResult(**got["result"])
        if got.get("tar"):
            res.run_dir = self._unpack(got["tar"], got["rel"])
        record_cell(camp, cell, res, notify)

    def _lost(self, cell: Cell, exc: BaseException) -> CellResult:
        """The result of a cell whose task never came back: its worker died, or the task raised."""
        from distributed import KilledWorker

        info = self.started.get(cell.id, {})
        worker = info.get("on") or "?"
        if isinstance(exc, KilledWorker):   # Dask's own message is a paragraph: the name says it
            msg = f"its worker {worker} died mid-cell (Dask: KilledWorker)"
        else:
            msg = f"its Dask task failed on worker {worker} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        res = CellResult(state="error", worker=info.get("on"))
        if not info.get("event"):
            res.error = msg + "; the cell had not started"
        elif info.get("host") == socket.gethostname() and not self.ship:
            res.run_dir = _newest_run(self.histories, str(cell.overrides.get("name")), info["t0"] - 5)
            res.run_dir = str(Path(res.run_dir).resolve()) if res.run_dir else None
            res.error = f"{msg}; {_reap(info.get('pid'), res.run_dir)}"
        else:
            res.error = (f"{msg}; the cell's process got SIGTERM when its worker died and heals on "
                         f"{info.get('host')}, where `dynharness ls` reports anything it left")
        return res

    def _unpack(self, tar: bytes, rel: str) -> str:
        """Put a shipped run folder at ``histories/<test>/<time>`` (a suffix if that is taken)."""
        incoming = self.histories / f".incoming-{secrets.token_hex(4)}"
        try:
            with tarfile.open(fileobj=io.BytesIO(tar), mode="r:gz") as tf:
                if hasattr(tarfile, "data_filter"):   # a worker's tarball must not write outside its folder
                    tf.extractall(incoming, filter="data")
                else:   # Python < 3.11.4: the same rule by hand (plain files and folders, inside only)
                    tf.extractall(incoming, members=[m for m in tf.getmembers() if (m.isfile() or m.isdir())
                                                     and not Path(m.name).is_absolute() and ".." not in Path(m.name).parts])
            dest, i = self.histories / rel, 1
            while dest.exists():
                i += 1
                dest = self.histories / f"{rel}-{i}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(incoming / rel, dest)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        return str(dest.resolve())

    def _stop(self, stop: Any, out: dict[Any, Cell], events: "queue.SimpleQueue[dict[str, Any]]",
              camp: CampaignRun, notify: Notify, grace: float) -> None:
        """Ctrl-C: stop every running cell as at its time limit and record it; unstarted ones stay pending."""
        stop.set()
        self._drain(events, camp, notify)
        self.client.cancel([f for f, c in out.items() if c.id not in self.started])
        deadline = time.monotonic() + grace + STOP_SLACK
        while out and time.monotonic() < deadline:
            done = _some_done(out)
            self._drain(events, camp, notify)
            for fut in done:
                self._record(camp, out.pop(fut), fut, notify)
        for fut, cell in list(out.items()):
            record_cell(camp, cell, CellResult(state="interrupted", error="campaign interrupted; its worker did "
                                               f"not answer within {grace + STOP_SLACK:g} s"), notify)


def _some_done(futures: dict[Any, Cell]) -> set[Any]:
    """The futures done within WATCH_EVERY seconds (maybe none: the caller then looks at events).
    Polls each future's own state: ``distributed.wait`` would need a process-wide default client."""
    deadline = time.monotonic() + WATCH_EVERY
    while True:
        done = {f for f in futures if f.done()}
        if done or time.monotonic() >= deadline:
            return done
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is still a campaign cell's process (not gone, not a zombie, not a reused pid)."""
    try:
        if b"--run-cell" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _reap(pid: int | None, run_dir: str | None, grace: float = 60.0) -> str:
    """After its worker died, on this host: wait for the cell's process to heal and exit (it got
    SIGTERM), kill its group after ``grace``, and tear down what it left. What happened, in words."""
    if not pid:
        return f"no process of the cell was reported; {_teardown_left(run_dir)}"
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)   # a session of its own: its group is its pid
        except ProcessLookupError:
            pass
        return f"its process (pid {pid}) did not stop within {grace:g} s, so killed: {_teardown_left(run_dir)}"
    return f"its process stopped on SIGTERM; {_teardown_left(run_dir)}"
