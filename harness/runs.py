"""Stored runs: the run folder, ``histories/latest``, checking a stored history
(listing them: :mod:`harness.run_index`).

A run lives in ``<histories>/<test-name>/<YYYYmmddTHHMMSS>/`` (contracts
section 4): ``spec.json``, ``history.jsonl``, ``results.json``,
``nemesis-schedule.json``, ``nodes/<name>.log``, ``replicas.json`` (the replica snapshot, when
the target can take one). ``<histories>/latest`` is a
relative symlink to the newest. :func:`check_run` (re)runs the workload's
checkers on a stored history, the same code the runner uses at the end of a
run, so ``dynharness check`` and a live run always agree.

A run cut short (interrupted, failed, its harness killed) is checked for what
it has, never for what it lacks: without final reads, the checkers that need
them (``needs_final_reads``) answer ``unknown`` with the reason instead of
judging from the last ordinary reads, and the run's verdict can be invalid
(an anomaly found is real) or unknown, never valid. What the run itself
recorded in ``results.json`` (``RUN_RECORDED``: how it ended, its error) is
kept next to the new verdicts.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.errors import UserError
from harness.history import History, read_history
from harness.limits import json_loads
from harness.ops import INVOKE, NEMESIS

RESULTS = "results.json"
SPEC = "spec.json"
HISTORY = "history.jsonl"
SCHEDULE = "nemesis-schedule.json"
EXIT_CODES = {"valid": 0, "invalid": 1, "unknown": 2}
#: What a run records about itself in results.json; a later check keeps it beside its own verdicts.
RUN_RECORDED = ("run_end", "run_error", "final_reads_missing", "settle", "converge", "nemesis_errors",
                "cleanup_errors")


def histories_root(spec_histories: str | None = None) -> Path:
    """Where runs are stored: ``$DYNHARNESS_HISTORIES``, else the spec's ``histories`` field."""
    return Path(os.environ.get("DYNHARNESS_HISTORIES") or spec_histories or "histories")


def new_run_dir(root: Path, test_name: str) -> Path:
    """Create ``root/<name>/<timestamp>`` (suffixed ``-2``, ``-3``... when two runs share a second).

    The path returned is absolute: node processes, ``cluster.json`` and
    ``attach`` must not depend on the current directory.
    """
    d = new_stamped_dir(root.resolve() / test_name)
    (d / "nodes").mkdir()
    return d


def new_stamped_dir(base: Path) -> Path:
    """Create and return ``base/<UTC timestamp>`` (``-2``, ``-3``... when one exists already)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    base.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        d = base / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            d.mkdir()
        except FileExistsError:
            continue
        return d
    raise UserError(f"cannot create a folder under {base}")


def point_latest(root: Path, run_dir: Path) -> None:
    """Make ``root/latest`` a relative symlink to run_dir (replaced atomically)."""
    root = root.resolve()
    link = root / "latest"
    tmp = root / f".latest.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(run_dir, root), tmp)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)


def resolve_run_dir(path: str | Path) -> Path:
    """A run folder from a user's argument: the folder, ``latest``, or the history file inside."""
    p = Path(path)
    if p.is_file() and p.name == HISTORY:
        p = p.parent
    if p.is_file():
        raise UserError(f"{path}: a history file outside a run folder (check it with its path ending .jsonl)")
    if not p.is_dir():
        raise UserError(f"{path}: no such run folder")
    if not (p / HISTORY).exists():
        raise UserError(f"{path}: not a run folder (no {HISTORY})")
    return p.resolve()


def read_spec_json(run_dir: Path) -> dict[str, Any]:
    """The stored spec (``{}`` when the file is missing, e.g. an imported history)."""
    try:
        obj = json_loads((run_dir / SPEC).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{run_dir / SPEC}: unreadable spec: {e}") from None
    return obj if isinstance(obj, dict) else {}


def build_checkers(names: Sequence[str]) -> tuple[list[Any], dict[str, Any]]:
    """Checkers by name, plus ``unknown`` results for the ones that cannot be built (with why)."""
    from checkers import registry
    from checkers.base import Result, Verdict

    built: list[Any] = []
    missing: dict[str, Any] = {}
    for n in names:
        try:
            built.extend(registry.build([n]))
        except Exception as e:  # noqa: BLE001 - one unbuildable checker must not hide the others
            missing[n] = Result(n, Verdict.UNKNOWN, reason=f"checker {n!r} unavailable: {e}")
    return built, missing


def applicable(names: Sequence[str], spec: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The checkers a stored run can use, and why each other one is skipped: a checker whose
    ``needs`` (target capabilities) the run's target lacks has nothing to judge, and running it
    would only turn the verdict unknown (etcd has no per-replica snapshot for ``convergence``)."""
    from checkers import registry

    caps = spec.get("target_capabilities")
    kind = (spec.get("target") or {}).get("kind") or "this"
    use: list[str] = []
    skipped: dict[str, str] = {}
    for n in names:
        missing = [c for c in registry.needs(n) if caps is None or c not in caps]
        if not missing:
            use.append(n)
        elif caps is None:
            skipped[n] = f"needs the target capability {missing[0]}, and this run recorded none (an older or imported history)"
        else:
            skipped[n] = f"needs the target capability {missing[0]}, which the {kind} target does not have"
    return use, skipped


def check_history(history: History, workload: str, settings: Mapping[str, Any],
                  options: Mapping[str, Any], names: Sequence[str] | None = None,
                  no_final_reads: str | None = None,
                  replicas: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run the workload's checkers on a history; returns the ``results.json`` object.

    ``no_final_reads``: why a history that should end in final reads has none (see
    :func:`cut_short`); the checkers that need them answer unknown with it, unrun.
    ``replicas``: the run's replica snapshot (``replicas.json``) for the checkers that judge it."""
    from checkers.base import CheckContext, Result, Verdict, compose, merge_results
    from harness.workloads import checker_names

    if names is None:
        names = checker_names(workload)
    built, results = build_checkers(names)
    if no_final_reads:
        results.update({c.name: Result(c.name, Verdict.UNKNOWN, reason=no_final_reads)
                        for c in built if getattr(c, "needs_final_reads", False)})
        built = [c for c in built if not getattr(c, "needs_final_reads", False)]
    limit = options.get("time_limit")
    ctx = CheckContext(settings=dict(settings), options=dict(options),
                       time_limit=float(limit) if isinstance(limit, (int, float)) else None, replicas=replicas)
    results.update(compose(*built).check_all(history, ctx))
    ordered = {n: results[n] for n in names if n in results}
    ordered.update({n: r for n, r in results.items() if n not in ordered})
    merged = merge_results(ordered)
    return {"verdict": merged.verdict.value, "summary": dict(merged.counts),
            "checkers": {n: r.to_json() for n, r in ordered.items()},
            "history_warnings": list(history.warnings)}


def infer_workload(history: History) -> str:
    """The workload a history came from, by its op names and keys (for bare ``.jsonl`` files)."""
    fs = {o.f for o in history.client_ops()}
    if fs & {"add", "remove"}:
        return "cart"
    if any(o.key and o.key.startswith("s") and "-k" in o.key for o in history.client_ops()):
        return "session"
    return "register"


@dataclass(frozen=True)
class LoadedRun:
    """A stored run read once: its folder (None for a bare ``*.jsonl`` history), spec, history,
    and what the run recorded about itself (``RUN_RECORDED`` keys of its results.json)."""

    dir: Path | None
    spec: Mapping[str, Any]
    history: History
    recorded: Mapping[str, Any] = field(default_factory=dict)
    replicas: Mapping[str, Any] | None = None   # replicas.json (harness.replica_snapshot), if stored


def load_run(run_dir: str | Path) -> LoadedRun:
    """Read a run folder (or a bare ``*.jsonl`` history) once, for checking and reporting."""
    p = Path(run_dir)
    if p.is_file() and p.suffix == ".jsonl" and p.name != HISTORY:
        return LoadedRun(None, {}, read_history(p))
    from harness import replica_snapshot

    d = resolve_run_dir(run_dir)
    try:
        stored = json.loads((d / RESULTS).read_text())
    except (OSError, ValueError):   # none yet (a run being checked at its end, or killed), or damaged
        stored = {}
    recorded = {k: stored[k] for k in RUN_RECORDED if isinstance(stored, dict) and k in stored}
    return LoadedRun(d, read_spec_json(d), read_history(d / HISTORY), recorded, replica_snapshot.read(d))


def cut_short(run: LoadedRun) -> tuple[str | None, bool]:
    """Why a stored run did not finish (None: it did, or it is an imported or bare history), and
    whether it lacks final reads altogether.

    Only a harness run (its spec.json has the run facts) owes final reads; an imported history
    uses the last-ordinary-read rule documented in docs/checkers.md. How it ended comes from
    ``run_end`` (``run_error`` in runs older than it); a run that recorded nothing was killed or
    is still running, and its history's last op says how far it got."""
    if run.dir is None or "started" not in run.spec:
        return None, False
    end = run.recorded.get("run_end") or {}
    has_finals = any(o.get("final") for o in run.history.client_ops())
    state = end.get("state") or ("failed" if run.recorded.get("run_error") else None)
    if state == "completed" or end.get("final_reads_done") or (state is None and has_finals):
        return None, False   # its data is complete, whatever happened after the final reads
    if state == "interrupted" or run.recorded.get("run_error") == "interrupted":
        how = f"run interrupted by {end.get('signal') or 'a signal'}"
    elif state == "failed":
        how = f"run failed ({end.get('error') or run.recorded.get('run_error')})"
    else:
        how = "the run recorded no end (its harness was killed, or it is still running)"
    at = end.get("at_s")
    if at is None and run.history.ops:
        at = run.history.ops[-1].time / 1e9
    where = f" at {at:.1f} s" if at is not None else " before its history started"
    phase = f" (phase: {end['phase']})" if end.get("phase") else ""
    return f"{'final reads incomplete' if has_finals else 'no final reads'}: {how}{where}{phase}", not has_finals


def fault_rows(history: History) -> list[dict[str, Any]]:
    """Each completed nemesis action as it ran: time (s, probe-confirmed), when it took effect (s),
    action, what it did to whom (``did``: nodes, sides, offsets, rates), outcome, mechanism and probe.

    Kept in results.json so the run and check commands print the faults without reading the
    history again, and so a fault whose probe failed is on record beside the verdict."""
    from nemeses import fault_kind

    try:
        kinds = fault_kind.registered()
    except UserError:  # a broken plug-in must not cost the record of the faults: describe generically
        kinds = {}
    asked = {comp.index: inv.value for inv, comp in history.pairs() if inv.process == NEMESIS and comp is not None}
    rows = []
    for o in history.nemesis_ops():
        if o.type == INVOKE:
            continue
        eff = o.extra.get("effective")
        rows.append({"t": round(o.time / 1e9, 3), "f": o.f, "type": o.type,
                     "did": fault_kind.describe_op(o.f, asked.get(o.index), o.value, kinds),
                     "effective": round(eff / 1e9, 3) if isinstance(eff, int) else None,
                     "mechanism": o.extra.get("mechanism"), "probe": o.extra.get("probe"), "error": o.error})
    return rows


def check_loaded(run: LoadedRun, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Check a loaded run with the checkers its workload names (or ``names``): the results.

    A bare history is checked with the workload guessed from its ops and default settings; a
    run cut short (:func:`cut_short`) is never valid, and what the run recorded is kept. Of the
    workload's checkers, those the run's target cannot serve are skipped, each with the reason in
    ``skipped_checkers`` (:func:`applicable`); checkers named explicitly always run."""
    from harness.workloads import checker_names

    spec = run.spec
    workload = (spec.get("workload") or {}).get("name") or infer_workload(run.history)
    skipped: dict[str, str] = {}
    if names is None:
        names, skipped = applicable(checker_names(workload), spec)
    why, no_finals = cut_short(run)
    results = check_history(run.history, workload, spec.get("target") or {}, spec.get("checkers") or {}, names,
                            no_final_reads=why if no_finals else None, replicas=run.replicas)
    if skipped:
        results["skipped_checkers"] = skipped
    results["faults"] = fault_rows(run.history)
    if why:
        results["cut_short"] = why
        if results["verdict"] == "valid":   # what it lacks could hide an anomaly: only invalid is sure
            results["verdict"] = "unknown"
    results.update(run.recorded)
    return results


def check_run(run_dir: str | Path, names: Sequence[str] | None = None, write: bool = True) -> dict[str, Any]:
    """Check a stored run (see :func:`check_loaded`); writes results.json and the report unless
    ``write`` is false or it is a bare ``*.jsonl`` history (e.g. ``histories/examples/``)."""
    run = load_run(run_dir)
    results = check_loaded(run, names)
    if write:
        store_checked(run, results)
    return results


def store_checked(run: LoadedRun, results: dict[str, Any]) -> None:
    """Write a checked run's results.json and report (nothing for a bare history: no folder)."""
    if run.dir is None:
        return
    write_results(run.dir, results)
    error = write_report(run.dir, run.history)
    if error:
        results["report_error"] = error


def write_results(run_dir: Path, results: Mapping[str, Any]) -> None:
    """Write ``results.json`` atomically."""
    tmp = run_dir / (RESULTS + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str))
    os.replace(tmp, run_dir / RESULTS)


def write_report(run_dir: Path, history: History | None = None) -> str | None:
    """(Re)write the run's ``report.html`` when the reports part is installed; the error text if it
    failed. ``history``: the run's history if the caller has it already (else it is read)."""
    try:
        from harness.reports.html import write_run_report
    except ImportError:
        return None
    try:
        write_run_report(run_dir, history)
    except Exception as e:  # noqa: BLE001 - a report problem must not lose the run's results
        return f"report not written: {type(e).__name__}: {e}"
    return None
