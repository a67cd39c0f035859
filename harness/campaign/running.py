"""Running a campaign: each cell in a child process, results saved after every cell, resume.

See ``harness.campaign`` for the whole picture.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from harness.campaign.definition import CampaignDef, Cell, cell_spec
from harness.errors import ONE_LINE_ERRORS, UserError
from harness.expectations import Expectation, cell_metrics, evaluate, parse_expectations
from harness.limits import json_loads
from harness.signals import INTERRUPTED_EXIT, die_with_parent, raise_pending, shielded, signal_name, stop_on_signals

#: Cell states: pending -> running -> done | error | timeout | interrupted.
FINISHED = ("done", "error", "timeout")
#: Seconds between looks at a watched cell's stop request (see CellWatch).
WATCH_EVERY = 1.0


@dataclass
class CellResult:
    """What happened to a cell: state, its stored run, the headline metrics and the expectation outcomes."""

    state: str = "pending"
    run_dir: str | None = None
    verdict: str | None = None
    exit_code: int | None = None
    seconds: float | None = None
    error: str | None = None
    killed: bool = False            # still running after SIGTERM + grace: SIGKILLed (see SubprocessCellRunner)
    worker: str | None = None       # the Dask worker that ran it (campaign --jobs/--scheduler), else None
    metrics: dict[str, Any] = field(default_factory=dict)
    expectations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def broken(self) -> list[dict[str, Any]]:
        """The expectation outcomes that did not hold."""
        return [e for e in self.expectations if not e["ok"]]

    def to_json(self) -> dict[str, Any]:
        """The result as stored per cell in campaign.json."""
        return dict(self.__dict__)


class CellRunner(Protocol):
    """Runs one cell and says what happened (the plug point tests replace)."""

    def run(self, defn: CampaignDef, cell: Cell) -> CellResult:
        """Run one cell to the end (or its time limit) and say what happened."""


class CellWatch(Protocol):
    """How an executor running cells off the main thread (a Dask worker) follows and stops a cell.

    Signals reach only a process's main thread, so there the campaign's Ctrl-C cannot interrupt
    the wait for the cell's child; the runner asks ``stop_requested`` every WATCH_EVERY seconds
    instead, and tells ``started`` the child's pid (to report, or to reap if the worker dies)."""

    def started(self, pid: int) -> None:
        """The cell's child process is running with this pid."""

    def stop_requested(self) -> bool:
        """Whether the campaign is being stopped (the cell is then stopped like at its time limit)."""


class _StopRequested(Exception):
    """A watched cell was asked to stop (CellWatch.stop_requested)."""


def _newest_run(histories: Path, test_name: str, after: float) -> str | None:
    d = histories / test_name
    runs = [p for p in d.iterdir() if p.is_dir() and p.stat().st_mtime >= after] if d.is_dir() else []
    return str(max(runs, key=lambda p: p.stat().st_mtime)) if runs else None


@dataclass
class SubprocessCellRunner:
    """Run each cell through ``harness.runner.run_test`` in a child process, under its time limit.

    The child is a session of its own: at the time limit, or when the campaign is stopped, it
    alone gets SIGTERM (its in-flight iptables or docker commands must finish: they are part
    of its cleanup), heals and tears down; after ``grace`` seconds its whole process group is
    killed and, since that cleanup never finished, the cluster its run recorded is torn down
    from ``cluster.json`` here (``killed`` and the error say so)."""

    histories: Path = Path("histories")
    grace: float = 60.0   # seconds between SIGTERM at the time limit and SIGKILL
    watch: CellWatch | None = None   # set by an executor that runs cells off the main thread (harness.campaign.dask_worker)
    host_held: bool = False          # that executor holds the host for the cell (harness.backends.local_share)

    def run(self, defn: CampaignDef, cell: Cell) -> CellResult:
        """Start the child, wait (at most the time limit), and read the result it wrote."""
        out = self.histories / "campaigns" / ".cells" / f"{os.getpid()}-{cell.id}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        job = {"spec_path": defn.spec_path, "overrides": {**cell.overrides, "histories": str(self.histories)}, "out": str(out)}
        if self.watch is not None:   # no main thread to stop it: the child stops itself if its worker dies
            job["parent_pid"] = os.getpid()
        if self.host_held:
            job["host_held"] = True
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "harness.campaign", "--run-cell", json.dumps(job)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        if self.watch is not None:
            self.watch.started(proc.pid)
        state, killed = "done", False
        try:
            err = self._communicate(proc, cell.time_limit)
        except subprocess.TimeoutExpired:
            state = "timeout"
            killed, err = self._stop(proc)
        except _StopRequested:
            state = "interrupted"
            killed, err = self._stop(proc)
        except KeyboardInterrupt:  # the campaign was stopped (harness.signals): so is its cell
            killed, _ = self._stop(proc)
            out.unlink(missing_ok=True)
            if killed:
                _teardown_left(self._run_dir_of(None, cell, t0))
            raise
        res = CellResult(state=state, seconds=round(time.time() - t0, 1), killed=killed)
        if out.is_file():
            done = json.loads(out.read_text())
            out.unlink()
            res.run_dir, res.verdict, res.exit_code, res.error = (done.get("run_dir"), done.get("verdict"),
                                                                    done.get("exit_code"), done.get("error"))
        res.run_dir = self._run_dir_of(res.run_dir, cell, t0)
        if state in ("timeout", "interrupted"):
            res.error = (f"time limit of {cell.time_limit:g} s reached; stopped with SIGTERM" if state == "timeout"
                         else "campaign interrupted; the cell was stopped with SIGTERM")
            if killed:
                res.error += (f"; still running {self.grace:g} s later, so killed (SIGKILL): "
                              f"{_teardown_left(res.run_dir)}")
        elif res.error or res.exit_code in (None, 3) or proc.returncode not in (0, 1, 2):
            res.state = "error"
            lines = [ln for ln in (err or "").strip().splitlines() if ln.strip()]
            res.error = res.error or (lines[-1] if lines else f"cell process exited {proc.returncode}")
        raise_pending()   # the campaign was told to stop while this cell was being stopped
        return res

    def _communicate(self, proc: subprocess.Popen[str], limit: float | None) -> str:
        """The child's stderr once it exits; TimeoutExpired at ``limit``, _StopRequested when watched
        and asked to stop."""
        if self.watch is None:
            return proc.communicate(timeout=limit)[1]
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            step = WATCH_EVERY if deadline is None else min(WATCH_EVERY, max(deadline - time.monotonic(), 0.0))
            try:
                return proc.communicate(timeout=step)[1]
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            if self.watch.stop_requested():
                raise _StopRequested()

    def _stop(self, proc: subprocess.Popen[str]) -> tuple[bool, str]:
        """SIGTERM the cell, wait ``grace`` (not interruptible), then SIGKILL its process group.

        Returns (killed, its stderr)."""
        with shielded():
            try:
                proc.send_signal(signal.SIGTERM)
                return False, proc.communicate(timeout=self.grace)[1] or ""
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return True, proc.communicate()[1] or ""

    def _run_dir_of(self, found: str | None, cell: Cell, t0: float) -> str | None:
        """The cell's run folder, absolute (campaign.json must work from any cwd): the one the
        child reported, else (stopped before run_test returned) the newest of its test since t0."""
        found = found or _newest_run(self.histories, str(cell.overrides.get("name")), t0)
        return str(Path(found).resolve()) if found else None


def _teardown_left(run_dir: str | None) -> str:
    """Tear down the cluster a killed cell left (its nodes, iptables chain, containers): what happened."""
    state = Path(run_dir) / "cluster.json" if run_dir else None
    if state is None or not state.is_file():
        return "no cluster was set up"
    try:
        if json.loads(state.read_text()).get("stopped"):
            return "its cluster was already torn down"
        from harness.backends import attach
        attach(state).teardown()
    except Exception as e:  # noqa: BLE001 - said in the cell's result, never lost
        return f"tearing down its cluster failed ({type(e).__name__}: {e}); run: dynharness heal --teardown {run_dir}"
    return "its cluster was torn down by the campaign"


def _run_cell_child(job_json: str) -> int:
    """Child side of SubprocessCellRunner: run one spec, write run_dir/verdict/exit_code as JSON."""
    job = json.loads(job_json)
    out: dict[str, Any] = {}
    try:
        with stop_on_signals():
            if job.get("parent_pid"):
                die_with_parent(int(job["parent_pid"]))
            from harness.runner import run_test

            outcome = run_test(cell_spec(job["spec_path"], job["overrides"]), display=False,
                               take_host=not job.get("host_held"))
        out = {"run_dir": str(outcome.run_dir), "verdict": getattr(outcome.verdict, "value", outcome.verdict),
               "exit_code": outcome.exit_code, "error": getattr(outcome, "error", None)}
    except ONE_LINE_ERRORS as e:
        out = {"error": str(e), "exit_code": 3}
    except KeyboardInterrupt as e:
        out = {"error": f"interrupted by {signal_name(e)}", "exit_code": INTERRUPTED_EXIT}
    Path(job["out"]).write_text(json.dumps(out))
    return 0 if "run_dir" in out else out["exit_code"]


def finish_cell(cell: Cell, res: CellResult) -> CellResult:
    """Read the run's results.json and evaluate the cell's expectations on it."""
    results = None
    if res.run_dir and (Path(res.run_dir) / "results.json").is_file():
        try:
            results = json_loads((Path(res.run_dir) / "results.json").read_text())
        except (OSError, ValueError):
            results = None
    res.metrics = cell_metrics(results)
    if results and results.get("run_error") and res.state == "done":
        res.state, res.error = "error", res.error or str(results["run_error"])
    if results and (not res.verdict or res.verdict == "failed"):
        res.verdict = results.get("verdict")
    if res.run_dir and results is not None and not (Path(res.run_dir) / "report.html").exists():
        try:  # the runner normally writes it; a campaign page must never link to nothing
            from harness.reports.html import write_run_report
            write_run_report(res.run_dir)
        except Exception as e:  # noqa: BLE001 - a report problem must not lose the cell's result
            res.error = res.error or f"report not written: {type(e).__name__}: {e}"
    exps: Sequence[Expectation] = parse_expectations(list(cell.expect))
    if res.state == "done" and results is not None:
        res.expectations = [o.to_json() for o in evaluate(exps, results)]
    else:
        why = res.error or f"cell {res.state}"
        res.expectations = [{"expect": e.text, "ok": False, "actual": None, "message": f"not evaluated: {why}"} for e in exps]
    return res


@dataclass
class CampaignRun:
    """A campaign being run (or resumed): its folder, definition and each cell's result so far."""

    defn: CampaignDef
    dir: Path
    cells: dict[str, CellResult]
    started: str
    finished: str | None = None
    interrupted: bool = False
    only: tuple[str, ...] = ()   # --cell / --shard: the cells this invocation was asked to run (others may stay pending)
    shard: tuple[int, int] | None = None   # --shard i/n: this folder holds shard i of n (harness.campaign.shards)
    host: str = ""   # the machine that ran the campaign (merged shards: theirs, comma-separated); JUnit's hostname

    def asked(self, cid: str) -> bool:
        """Whether this invocation was to run the cell (all, or those of --cell / --shard): an
        asked cell left pending makes the campaign incomplete (exit 3, JUnit ``not-run``)."""
        return not self.only or cid in self.only

    def broken(self) -> list[tuple[str, dict[str, Any]]]:
        """(cell id, expectation outcome) for every broken expectation."""
        return [(cid, e) for cid, r in self.cells.items() for e in r.broken]

    def exit_code(self) -> int:
        """130 interrupted, 3 a cell could not run, 1 an expectation broke, else 0."""
        if self.interrupted:
            return INTERRUPTED_EXIT
        if any(r.state in ("error", "timeout") or (r.state == "pending" and self.asked(cid))
               for cid, r in self.cells.items()):
            return 3
        return 1 if self.broken() else 0

    def to_json(self) -> dict[str, Any]:
        """campaign.json: the definition, where it is written, and every cell's result."""
        return {"format": 1, "definition": self.defn.to_json(), "dir": str(self.dir), "started": self.started,
                "finished": self.finished, "interrupted": self.interrupted,
                "shard": list(self.shard) if self.shard else None, "only": list(self.only), "host": self.host,
                "cells": {cid: r.to_json() for cid, r in self.cells.items()}}

    def save(self) -> None:
        """Rewrite campaign.json (atomically) and the summary.md / junit.xml / index.html beside it."""
        from harness.reports.campaign_page import write_campaign_outputs

        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "campaign.json.tmp"
        tmp.write_text(json.dumps(self.to_json(), indent=1, default=str))
        os.replace(tmp, self.dir / "campaign.json")
        try:
            write_campaign_outputs(self)
        except Exception as e:  # noqa: BLE001 - campaign.json is saved; `dynharness report DIR` can redo the pages
            sys.stderr.write(f"dynharness: campaign pages not written ({type(e).__name__}: {e}); "
                             f"rebuild with: dynharness report {self.dir}\n")

    @staticmethod
    def load(directory: str | Path) -> "CampaignRun":
        """Read a campaign folder's campaign.json (what ``--resume`` and ``report`` start from)."""
        d = Path(directory)
        try:
            obj = json_loads((d / "campaign.json").read_text())
            dd = obj["definition"]
            defn = CampaignDef(dd["name"], dd.get("description", ""), tuple(Cell.from_json(c) for c in dd["cells"]),
                               dd.get("spec_path"), dd.get("source"))
            cells = {cid: CellResult(**r) for cid, r in obj["cells"].items()}
        except OSError:
            raise UserError(f"{d} is not a campaign folder (no readable campaign.json)") from None
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{d}/campaign.json is damaged: {e}") from None
        for c in defn.cells:
            cells.setdefault(c.id, CellResult())
        shard = obj.get("shard")
        return CampaignRun(defn, d, cells, obj.get("started", ""), obj.get("finished"), obj.get("interrupted", False),
                           tuple(obj.get("only") or ()), (int(shard[0]), int(shard[1])) if shard else None,
                           obj.get("host", ""))


def new_campaign_dir(histories: Path, name: str) -> Path:
    """``histories/campaigns/<name>/<YYYYmmddTHHMMSS>/`` (a suffix when that second is taken)."""
    base = histories / "campaigns" / name
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    d, i = base / stamp, 1
    while d.exists():
        i += 1
        d = base / f"{stamp}-{i}"
    return d


Notify = Callable[[CampaignRun, "str | None"], None]


class CellPool(Protocol):
    """Runs several cells side by side (``harness.campaign.dask_pool``); the serial loop is the default."""

    def run_cells(self, camp: CampaignRun, cells: Sequence[Cell], runner: CellRunner, notify: Notify) -> None:
        """Run ``cells``, each result through :func:`record_cell`; on Ctrl-C stop the running
        ones (healed, recorded ``interrupted``) and re-raise."""


def record_cell(camp: CampaignRun, cell: Cell, res: CellResult, notify: Notify) -> None:
    """A cell's result in the campaign: expectations evaluated, campaign.json and pages saved, table told."""
    camp.cells[cell.id] = finish_cell(cell, res)
    camp.save()
    notify(camp, None)


def run_campaign(defn: CampaignDef, *, histories: Path, runner: CellRunner | None = None,
                 resume: CampaignRun | None = None,
                 on_update: Notify | None = None,
                 only: Sequence[str] | None = None, pool: CellPool | None = None,
                 shard: tuple[int, int] | None = None) -> CampaignRun:
    """Run every unfinished cell in order, saving after each; Ctrl-C keeps what finished.

    ``on_update(run, running_cell_id)`` is called before and after each cell
    (the live table). With ``resume``, cells already ``done`` are kept and the
    others (pending, interrupted, error, timeout) run again. With ``pool`` the cells run
    side by side there (same results, same saving after each); ``shard`` is recorded
    in campaign.json for ``campaign merge`` (``only`` then names the shard's cells).
    """
    runner = runner or SubprocessCellRunner(histories)
    if resume is None:
        camp = CampaignRun(defn, new_campaign_dir(histories, defn.name), {c.id: CellResult() for c in defn.cells},
                           time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), host=socket.gethostname())
    else:
        camp = resume
        camp.interrupted, camp.finished, camp.host = False, None, camp.host or socket.gethostname()
    camp.only = tuple(only or ())
    camp.shard = shard or camp.shard
    camp.save()
    notify = on_update or (lambda _c, _r: None)
    todo = [c for c in camp.defn.cells if camp.cells[c.id].state != "done" and not (only and c.id not in only)]
    try:
        if pool is not None:
            pool.run_cells(camp, todo, runner, notify)
        else:
            for cell in todo:
                camp.cells[cell.id] = CellResult(state="running")
                camp.save()   # campaign.json and the pages show which cell is running
                notify(camp, cell.id)
                record_cell(camp, cell, runner.run(camp.defn, cell), notify)
    except KeyboardInterrupt:
        for r in camp.cells.values():
            if r.state == "running":
                r.state, r.error = "interrupted", "campaign interrupted"
        camp.interrupted = True
    camp.finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    camp.save()
    notify(camp, None)
    return camp
