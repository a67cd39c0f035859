"""Stored runs: the run folder, ``histories/latest``, checking a stored history, listing runs.

A run lives in ``<histories>/<test-name>/<YYYYmmddTHHMMSS>/`` (contracts
section 4): ``spec.json``, ``history.jsonl``, ``results.json``,
``nemesis-schedule.json``, ``nodes/<name>.log``. ``<histories>/latest`` is a
relative symlink to the newest. :func:`check_run` (re)runs the workload's
checkers on a stored history, the same code the runner uses at the end of a
run, so ``dynharness check`` and a live run always agree.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.errors import UserError
from harness.history import History, read_history
from harness.limits import json_loads
from harness.ops import INVOKE

RESULTS = "results.json"
SPEC = "spec.json"
HISTORY = "history.jsonl"
SCHEDULE = "nemesis-schedule.json"
EXIT_CODES = {"valid": 0, "invalid": 1, "unknown": 2}


def histories_root(spec_histories: str | None = None) -> Path:
    """Where runs are stored: ``$DYNHARNESS_HISTORIES``, else the spec's ``histories`` field."""
    return Path(os.environ.get("DYNHARNESS_HISTORIES") or spec_histories or "histories")


def new_run_dir(root: Path, test_name: str) -> Path:
    """Create ``root/<name>/<timestamp>`` (suffixed ``-2``, ``-3``... when two runs share a second).

    The path returned is absolute: node processes, ``cluster.json`` and
    ``attach`` must not depend on the current directory.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    base = root.resolve() / test_name
    base.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        d = base / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            d.mkdir()
        except FileExistsError:
            continue
        (d / "nodes").mkdir()
        return d
    raise UserError(f"cannot create a run folder under {base}")


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


def check_history(history: History, workload: str, settings: Mapping[str, Any],
                  options: Mapping[str, Any], names: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the workload's checkers on a history; returns the ``results.json`` object."""
    from checkers.base import CheckContext, compose, merge_results
    from harness.workloads import checker_names

    if names is None:
        names = checker_names(workload)
    built, results = build_checkers(names)
    limit = options.get("time_limit")
    ctx = CheckContext(settings=dict(settings), options=dict(options),
                       time_limit=float(limit) if isinstance(limit, (int, float)) else None)
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
    """A stored run read once: its folder (None for a bare ``*.jsonl`` history), spec and history."""

    dir: Path | None
    spec: Mapping[str, Any]
    history: History


def load_run(run_dir: str | Path) -> LoadedRun:
    """Read a run folder (or a bare ``*.jsonl`` history) once, for checking and reporting."""
    p = Path(run_dir)
    if p.is_file() and p.suffix == ".jsonl" and p.name != HISTORY:
        return LoadedRun(None, {}, read_history(p))
    d = resolve_run_dir(run_dir)
    return LoadedRun(d, read_spec_json(d), read_history(d / HISTORY))


def fault_rows(history: History) -> list[dict[str, Any]]:
    """Each completed nemesis action as it ran: time (s, probe-confirmed), when it took effect (s),
    action, outcome, mechanism and probe.

    Kept in results.json so the run and check commands print the faults without reading the
    history again, and so a fault whose probe failed is on record beside the verdict."""
    rows = []
    for o in history.nemesis_ops():
        if o.type == INVOKE:
            continue
        eff = o.extra.get("effective")
        rows.append({"t": round(o.time / 1e9, 3), "f": o.f, "type": o.type,
                     "effective": round(eff / 1e9, 3) if isinstance(eff, int) else None,
                     "mechanism": o.extra.get("mechanism"), "probe": o.extra.get("probe"), "error": o.error})
    return rows


def check_loaded(run: LoadedRun, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Check a loaded run with the checkers its workload names (or ``names``): the results.

    A bare history is checked with the workload guessed from its ops and default settings."""
    spec = run.spec
    workload = (spec.get("workload") or {}).get("name") or infer_workload(run.history)
    results = check_history(run.history, workload, spec.get("target") or {}, spec.get("checkers") or {}, names)
    results["faults"] = fault_rows(run.history)
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


@dataclass(frozen=True)
class RunSummary:
    """One row of ``dynharness ls``."""

    path: Path
    test: str
    started: str
    verdict: str                   # valid / invalid / unknown / failed / incomplete
    workload: str
    ops: int | None
    summary: Mapping[str, Any]


def list_runs(root: Path) -> list[RunSummary]:
    """Every stored run under root, oldest first (folders without a history are skipped)."""
    out: list[RunSummary] = []
    if not root.is_dir():
        return out
    for test_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        for run in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            if not (run / HISTORY).exists():
                continue
            out.append(_summary(test_dir.name, run))
    out.sort(key=lambda r: (r.started, r.test))
    return out


def _summary(test: str, run: Path) -> RunSummary:
    verdict, summary = "incomplete", {}
    try:
        res = json_loads((run / RESULTS).read_text())
        verdict, summary = res.get("verdict", "unknown"), res.get("summary", {})
        if res.get("run_error"):
            verdict = "failed"
    except (OSError, json.JSONDecodeError, AttributeError):
        pass
    try:
        spec = json_loads((run / SPEC).read_text())
        workload = (spec.get("workload") or {}).get("name", "?")
    except (OSError, json.JSONDecodeError, AttributeError):
        workload = "?"
    try:
        with open(run / HISTORY, "rb") as fh:
            ops = sum(1 for _ in fh)
    except OSError:
        ops = None
    return RunSummary(run, test, run.name, verdict, workload, ops, summary)
