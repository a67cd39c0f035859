"""One test run, Jepsen's lifecycle, with cleanup on every exit path.

``run_test(spec)``: plan the nemesis schedule (or load the one to replay),
create the run folder, set the cluster up, wait until every node sees every
peer up (``converge``, bounded), run the clients and the nemesis
for ``duration``, heal every fault (a ``heal`` op), wait ``recovery``, wait
until no node reports pending handoffs (``settle``, bounded), take every
replica's own copy of every key until they agree (``replicas.json``, bounded,
when the target can and a checker needs it), read
every key (``final: true``) through healthy nodes until
``final_read_timeout``, tear the cluster down (unless ``leave_running``),
check, and store ``results.json``. The history is journaled as it goes.

On any exit (an exception, or SIGINT, SIGTERM or SIGHUP, each raised as
:class:`harness.signals.Interrupted` whatever the parent did to the
dispositions) the ``finally`` heals faults and tears down nodes, with further
signals ignored until cleanup is done. ``results.json`` records how the run
ended (``run_end``: completed, interrupted by which signal, or failed; when,
in which phase, whether the final reads were done), so ``dynharness check``
can tell a cut-short run from a finished one. Exit codes: 0 valid, 1
invalid, 2 unknown, 3 the run failed (130 for an interrupted run comes from
the CLI).
"""
from __future__ import annotations

import asyncio
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness import plugins, replica_snapshot
from harness.backends import local_share, make_backend
from harness.backends.base import Backend, ClusterConfig
from harness.errors import ONE_LINE_ERRORS, UserError
from harness.limits import json_loads
from harness.history import HistoryJournal
from harness.live import LiveDisplay
from harness.runs import (EXIT_CODES, HISTORY, SCHEDULE, SPEC, check_loaded, histories_root, load_run,
                          new_run_dir, point_latest, write_report, write_results)
from harness.signals import raise_pending, run_async, shielded, signal_name, stop_on_signals
from harness.spec import TestSpec, spec_json
from harness.workers import ClientPhase, NemesisWorker, converge, final_reads, heal_all, run_clients, settle
from harness.workloads import build as build_workload

RUN_FAILED = 3


@dataclass(frozen=True)
class RunOutcome:
    """What a run produced: where it is stored, its verdict and exit code, the results object."""

    run_dir: Path
    verdict: str                                  # valid / invalid / unknown / failed
    exit_code: int
    results: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None                      # why the run failed (exit code 3)


@dataclass(frozen=True)
class NemesisPlan:
    """The nemesis of a run: its parsed spec (None: no faults) and the actions to invoke."""

    nspec: Any
    schedule: tuple[Any, ...]


def plan_nemesis(spec: TestSpec, target: Any = None, keys: Sequence[str] = ()) -> NemesisPlan:
    """Parse the spec's nemesis and build (or load, for a replay) the schedule; UserError on bad input.
    ``nemesis.targets = "replicas"`` picks among the nodes holding each of ``keys`` (the workload's),
    as ``target`` (a ``preference-list`` one, else refused) places them."""
    replay = spec.replay_schedule
    if not spec.faults and not replay:
        return NemesisPlan(None, ())
    try:
        from nemeses import schedule as sched  # type: ignore[import-not-found]
    except ImportError as e:
        raise UserError(f"faults requested but the nemeses package is not available: {e}") from None
    nemesis_map: Mapping[str, Any] = spec.nemesis
    if replay:
        src = Path(replay)
        actions = sched.load_schedule(src / SCHEDULE if src.is_dir() else src)
        if not spec.faults:  # replay with the nemesis configuration of the run it came from
            stored = src / SPEC if src.is_dir() else src.parent / SPEC
            try:
                nemesis_map = json_loads(stored.read_text()).get("nemesis") or {}
            except (OSError, json.JSONDecodeError) as e:
                raise UserError(f"{stored}: cannot read the replayed run's spec: {e}") from None
        return NemesisPlan(sched.NemesisSpec.from_mapping(nemesis_map), tuple(actions))
    nspec = sched.NemesisSpec.from_mapping(nemesis_map)
    replicas = replica_sets(spec, target, keys) if nspec.targets == "replicas" else []
    return NemesisPlan(nspec, tuple(sched.build_schedule(nspec, list(spec.node_names), spec.seed, spec.duration,
                                                         replicas)))


def replica_sets(spec: TestSpec, target: Any, keys: Sequence[str]) -> list[tuple[str, ...]]:
    """The nodes holding each of ``keys``, as ``target`` places them (its preference lists); UserError
    naming why when the target cannot say."""
    from nemeses import schedule as sched  # type: ignore[import-not-found]

    target = target or plugins.target(spec.target_kind)
    why = sched.replicas_refusal(target)
    if why:
        raise UserError(why)
    return [tuple(target.preference_list(k, spec.node_names, spec.target_settings)) for k in keys]


def versions() -> dict[str, Any]:
    """Versions recorded with every run (harness, Python, git commit of the checkout)."""
    try:
        from importlib.metadata import version
        harness_version = version("dynharness")
    except Exception:  # noqa: BLE001 - not installed as a package
        harness_version = "0.1.0"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    return {"dynharness": harness_version, "python": platform.python_version(), "git_commit": commit}


def run_test(spec: TestSpec, *, display: bool | str = False, backend: Backend | None = None,
             target: Any = None, histories: Path | None = None, take_host: bool = True) -> RunOutcome:
    """Run one test end to end and store it (see the module docstring).

    ``display``: True for the live panel on a terminal (plain lines elsewhere), ``"plain"`` for
    plain progress lines on stderr, False (the Python API's default) for none: a library call
    prints nothing.

    ``backend``/``target`` replace the spec's backend and the target its ``[target] kind``
    names (a store not registered as a plugin; tests use an in-process fake; build the spec
    with ``load_spec(..., target=...)`` so its settings are that target's). Bad input raises
    UserError before anything starts; a run that fails later returns exit
    code 3 with ``error`` set; SIGINT/SIGTERM/SIGHUP clean up and re-raise
    (:class:`harness.signals.Interrupted`, a KeyboardInterrupt).

    On a host where local runs cannot keep their faults to themselves (no node cgroups) the run
    first waits its turn (:mod:`harness.backends.local_share`; it says so unless ``display`` is
    False); ``take_host=False``: the caller already holds the host for it (a Dask cell).
    """
    if target is None:
        target = plugins.target(spec.target_kind)
    elif target.name != spec.target_kind:
        raise UserError(f"the spec tests {spec.target_kind!r} but the run was given the {target.name!r} target "
                        f"(build the spec with load_spec(..., target=...))")
    workload = build_workload(spec.workload, spec.concurrency, spec.node_names)
    plan = plan_nemesis(spec, target, workload.final_keys())
    backend = backend or make_backend(spec)
    need = local_share.host_need(spec) if take_host else None
    say = (lambda why: print(f"dynharness: {why}", file=sys.stderr, flush=True)) if display else None
    with stop_on_signals(), local_share.hold_host(need, on_wait=say):
        return _start_and_run(spec, plan, workload, backend, target, histories, display)


def _start_and_run(spec: TestSpec, plan: NemesisPlan, workload: Any, backend: Backend, target: Any,
                   histories: Path | None, display: bool | str) -> RunOutcome:
    """The run's folder, its facts, then the run itself (see :func:`run_test`)."""
    root = histories if histories is not None else histories_root(spec.histories)
    run_dir = new_run_dir(root, spec.name)
    point_latest(root, run_dir)
    facts = {"run_dir": str(run_dir), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "versions": versions(), "backend_capabilities": None,
             "nemesis_resolved": plan.nspec.to_json() if plan.nspec is not None else None,
             "target_capabilities": sorted(target.capabilities)}
    (run_dir / SPEC).write_text(spec_json(spec, **facts))
    (run_dir / HISTORY).touch()  # a run that fails in setup still leaves a (empty) readable history
    state = _RunState(spec, plan, workload, backend, run_dir)
    return _run_and_check(state, spec, facts, display, target)


def _run_and_check(state: "_RunState", spec: TestSpec, facts: dict[str, Any], display: bool | str,
                   target: Any) -> RunOutcome:
    """Execute, clean up (shielded from signals), record how the run ended, check and store."""
    run_dir, backend = state.run_dir, state.backend
    error: str | None = None
    interrupted: KeyboardInterrupt | None = None
    try:
        state.execute(display, target)
        end = state.ended("completed")
    except KeyboardInterrupt as e:
        interrupted, end = e, state.ended("interrupted", signal=signal_name(e))
    except ONE_LINE_ERRORS as e:
        error = str(e)
        end = state.ended("failed", error=error)
    except Exception as e:  # noqa: BLE001 - recorded as a failed run, never a traceback at the user
        error = f"{type(e).__name__}: {e}"
        end = state.ended("failed", error=error)
    finally:
        with shielded():
            cleanup_errors = state.cleanup()
    facts["backend_capabilities"] = sorted(getattr(backend, "capabilities", ()))
    (run_dir / SPEC).write_text(spec_json(spec, **facts))
    if interrupted is not None or error is not None:
        why = "interrupted" if interrupted is not None else error
        results = {"verdict": "unknown", "summary": {}, "checkers": {}, "run_error": why, "run_end": end,
                   "cleanup_errors": cleanup_errors}
        write_results(run_dir, results)
        if interrupted is not None:
            raise interrupted
        write_report(run_dir)
        return RunOutcome(run_dir, "failed", RUN_FAILED, results, error)
    recorded = {"run_end": end, "final_reads_missing": state.missing_final, "settle": state.settle,
                "converge": state.converge, "nemesis_errors": state.nemesis_errors,
                **({"replica_snapshot_s": state.replicas_waited} if state.replicas_waited is not None else {}),
                **({"cleanup_errors": cleanup_errors} if cleanup_errors else {})}
    try:
        raise_pending()   # a signal during the teardown of a finished run: stop before checking
        run = load_run(run_dir)
        results = check_loaded(run)
    except KeyboardInterrupt as e:   # the run is complete: only its check is left to do
        write_results(run_dir, {"verdict": "unknown", "summary": {}, "checkers": {}, **recorded,
                                "check_error": f"checking interrupted by {signal_name(e)}; "
                                               f"check it with: dynharness check {run_dir}"})
        raise
    results.update(recorded)
    write_results(run_dir, results)
    report_error = write_report(run_dir, run.history)
    if report_error:
        results["report_error"] = report_error
        write_results(run_dir, results)
    return RunOutcome(run_dir, results["verdict"], EXIT_CODES.get(results["verdict"], 2), results)


def _setup_line(line: str) -> None:
    """What a backend says about a slow setup step, before the live display starts."""
    print(f"[setup] {line}", file=sys.stderr, flush=True)


class _RunState:
    """Everything one run holds, so the cleanup can undo exactly what was done."""

    def __init__(self, spec: TestSpec, plan: NemesisPlan, workload: Any, backend: Backend,
                 run_dir: Path):
        self.spec, self.plan, self.workload, self.backend = spec, plan, workload, backend
        self.run_dir = run_dir
        self.journal: HistoryJournal | None = None  # opened once the cluster is up: time 0 = start of the test
        self.nemesis: Any = None
        self.worker: NemesisWorker | None = None
        self.display: LiveDisplay | None = None
        self.set_up = False
        self.healed = False
        self.missing_final: list[str] = []
        self.settle: dict[str, Any] | None = None
        self.converge: dict[str, Any] | None = None
        self.replicas_waited: float | None = None
        self.nemesis_errors: list[str] = []
        self.final_reads_done = False

    def ended(self, state: str, **why: str) -> dict[str, Any]:
        """How the run ended, for ``results.json`` (``run_end``): completed / interrupted / failed,
        when (seconds of history time; None before the history started) and in which phase."""
        at = round(self.journal.now() / 1e9, 3) if self.journal is not None else None
        phase = self.display.phase if self.display is not None else "setup"
        return {"state": state, **why, "at_s": at, "phase": phase, "final_reads_done": self.final_reads_done}

    def execute(self, display: bool | str, target: Any) -> None:
        spec = self.spec
        self.set_up = True  # from here on, teardown is owed even if setup fails half-way
        nodes = self.backend.setup(ClusterConfig(
            target=target, nodes=spec.node_names, settings=spec.target_settings, run_dir=self.run_dir,
            # libfaketime only under a store that reports its own clock: a skew no probe can see is not offered
            faketime="clock" in target.capabilities,
            extra={"leave_running": spec.leave_running, "features": self._backend_features(),
                   **({"progress": _setup_line} if display else {})}))
        if self.plan.nspec is not None:
            from nemeses import registry  # type: ignore[import-not-found]
            from nemeses.base import NemesisContext

            if self.spec.replay_schedule and hasattr(registry, "faults_of"):
                # a replayed schedule may use faults the current spec does not name: handle them all
                self.nemesis = registry.build_for(set(self.plan.nspec.faults) | registry.faults_of(self.plan.schedule))
            else:
                self.nemesis = registry.build(self.plan.nspec)
            self.nemesis.setup(NemesisContext(self.backend, nodes, spec.seed, target))
        journal = self.journal = HistoryJournal(self.run_dir / HISTORY)  # time 0: cluster up, nemesis ready
        if self.nemesis is not None:
            self.worker = NemesisWorker(journal, self.nemesis, self.plan.schedule)
        worker = self.worker
        self.display = LiveDisplay(
            journal, duration=spec.duration, node_names=list(spec.node_names),
            is_running=self.backend.is_running, active_faults=lambda: dict(worker.active) if worker else {},
            rich_panel=display is True, title=f"dynharness {spec.name} ({spec.workload.name}, seed {spec.seed})")
        if display:  # the display also names the phase an error happened in, so it exists regardless
            self.display.start()
        run_async(self._drive(target, nodes, journal))   # a stop signal cancels it, then raises

    def _backend_features(self) -> frozenset[str]:
        """What the faults of this run (a replayed schedule's too) need the backend to set up."""
        if self.plan.nspec is None:
            return frozenset()
        from nemeses import fault_kind, registry  # type: ignore[import-not-found]

        faults = set(self.plan.nspec.faults) | registry.faults_of(self.plan.schedule)
        return fault_kind.backend_features(sorted(faults))

    async def _drive(self, target: Any, nodes: list[Any], journal: HistoryJournal) -> None:
        spec = self.spec
        clients = {n.name: plugins.node_client(target, n, timeout=spec.client_timeout, settings=spec.target_settings)
                   for n in nodes}
        try:
            assert self.display is not None
            self.display.set_phase("converge")
            self.converge = await converge(clients, spec.final_read_timeout)
            self.display.set_phase("main")
            if self.worker is not None:
                self.worker.start()
            phase = ClientPhase(spec.seed, spec.concurrency, spec.rate, spec.duration, spec.client_timeout)
            last_process = await run_clients(journal, self.workload, clients, spec.node_names, phase)
            self.display.set_phase("heal")
            await asyncio.to_thread(self._stop_nemesis_and_heal)
            self.display.set_phase("recovery")
            await asyncio.sleep(spec.recovery)
            self.display.set_phase("settle")
            self.settle = await settle(clients, spec.final_read_timeout)
            await self._replica_snapshot(target, nodes, journal)
            self.display.set_phase("final reads")
            self.missing_final = await final_reads(
                journal, self.workload, clients, self.workload.final_keys(), last_process + 1,
                spec.final_read_timeout, spec.client_timeout, read_all=self._read_all(target))
            self.final_reads_done = True
        finally:
            await asyncio.gather(*(c.close() for c in clients.values()), return_exceptions=True)

    async def _replica_snapshot(self, target: Any, nodes: list[Any], journal: HistoryJournal) -> None:
        """Before the final reads repair anything: every replica's own copy of the final keys, polled
        until they agree or ``final_read_timeout`` passes (``harness.replica_snapshot``)."""
        if not replica_snapshot.wanted(self.workload.checkers):
            return
        if replica_snapshot.CAPABILITY not in target.capabilities:
            replica_snapshot.write(self.run_dir, replica_snapshot.not_taken(
                f"the {target.name} target cannot show one replica's copy ({replica_snapshot.CAPABILITY})"))
            return
        assert self.display is not None
        self.display.set_phase("replica snapshot")
        snap = await replica_snapshot.take_snapshot(target.admin, nodes, self.workload.final_keys(),
                                                    self.spec.final_read_timeout, journal.now,
                                                    request_timeout=self.spec.client_timeout)
        replica_snapshot.write(self.run_dir, snap)
        self.replicas_waited = snap["waited_s"]

    def _read_all(self, target: Any) -> int | None:
        """Final reads ask every replica (r = N) of a target that can; None: its default read."""
        if "replica-reads" not in target.capabilities:
            return None
        return int(self.spec.target_settings.get("n") or 0) or None

    def _stop_nemesis_and_heal(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.nemesis_errors = list(self.worker.errors)
        if self.nemesis is not None and not self.healed:
            heal_all(self.journal, self.nemesis, self.nemesis_errors.append)
            if self.worker is not None:
                self.worker.active.clear()
        self.healed = True

    def cleanup(self) -> list[str]:
        """Stop the nemesis, heal, collect logs, tear down, close the journal; returns what failed."""
        errors: list[str] = []
        if self.display is not None:
            self.display.set_phase("teardown")
        try:
            if self.worker is not None:
                self.worker.stop(timeout=30)
            if self.nemesis is not None and not self.healed:
                heal_all(self.journal, self.nemesis, errors.append)
                self.healed = True
        except Exception as e:  # noqa: BLE001
            errors.append(f"heal: {e}")
        if self.display is not None:
            self.display.stop()
        if self.set_up:
            try:
                self.backend.fetch_logs(self.run_dir / "nodes")
            except Exception as e:  # noqa: BLE001
                errors.append(f"fetch logs: {e}")
            if not self.spec.leave_running:
                try:
                    self.backend.teardown()
                except Exception as e:  # noqa: BLE001
                    errors.append(f"teardown: {e}")
        if self.journal is not None:
            self.journal.close()
        if self.worker is not None:
            try:
                from nemeses.schedule import dump_schedule  # type: ignore[import-not-found]
                dump_schedule(self.run_dir / SCHEDULE, self.worker.ran)
            except Exception as e:  # noqa: BLE001
                errors.append(f"nemesis schedule: {e}")
        return errors
