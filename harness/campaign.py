"""Campaigns: a matrix of test runs (N/R/W, versioning modes, workloads, faults) and its summary.

A campaign file (TOML, ``docs/campaigns.md``) expands into *cells*; each cell
is a set of dotted spec overrides plus the expectations that must hold for
it. Cells run one after another, each in its own child process
(``python -m harness.campaign --run-cell``) so a per-cell time limit can stop
it (SIGTERM: the runner heals and tears down on that path) and a cell that
crashes cannot take the campaign down. Every cell's run is stored as usual
under ``histories/<campaign>.<cell>/``; the campaign folder
``histories/campaigns/<name>/<ts>/`` holds ``campaign.json`` (definition +
per-cell outcome, rewritten after every cell, so an interrupted campaign
keeps its finished cells and ``--resume`` continues it), ``summary.md``,
``junit.xml`` and ``index.html``.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import tomllib

from harness.errors import UserError
from harness.expectations import Expectation, cell_metrics, evaluate, parse_expectations

BUILTIN_DIR = Path(__file__).parent / "campaigns"
SPEC_TABLES = ("target", "workload", "nemesis", "checkers", "docker", "ssh")
AXES = ("nrw", "mode", "workload", "nemesis")
TOP_KEYS = {"name", "description", "spec", "backend", "time_limit", "repeats", "expect", "base", "matrix",
            "workloads", "nemeses", "expectations", "cell"}
#: Cell states: pending -> running -> done | error | timeout | interrupted.
FINISHED = ("done", "error", "timeout")


@dataclass(frozen=True)
class Cell:
    """One run of the campaign: its id, the axis values it stands for, and how to run it."""

    id: str
    labels: Mapping[str, Any]
    overrides: Mapping[str, Any]
    expect: tuple[str, ...] = ()
    time_limit: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "labels": dict(self.labels), "overrides": dict(self.overrides),
                "expect": list(self.expect), "time_limit": self.time_limit}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> "Cell":
        return Cell(obj["id"], dict(obj.get("labels", {})), dict(obj.get("overrides", {})),
                    tuple(obj.get("expect", ())), obj.get("time_limit"))


@dataclass(frozen=True)
class CampaignDef:
    """A parsed campaign file: its cells, and the base spec file they override (if any)."""

    name: str
    description: str
    cells: tuple[Cell, ...]
    spec_path: str | None = None
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "spec_path": self.spec_path,
                "source": self.source, "cells": [c.to_json() for c in self.cells]}


@dataclass
class CellResult:
    """What happened to a cell: state, its stored run, the headline metrics and the expectation outcomes."""

    state: str = "pending"
    run_dir: str | None = None
    verdict: str | None = None
    exit_code: int | None = None
    seconds: float | None = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    expectations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def broken(self) -> list[dict[str, Any]]:
        return [e for e in self.expectations if not e["ok"]]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _flatten(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Spec fields of a TOML table as dotted overrides (``{"target": {"n": 3}}`` -> ``{"target.n": 3}``)."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        if k in SPEC_TABLES and isinstance(v, Mapping):
            for k2, v2 in v.items():
                out[f"{k}.{k2}"] = v2
        else:
            out[k] = v
    return out


def _axis_overrides(axis: str, value: Any, presets: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], str]:
    """Overrides and a short label for one axis value."""
    if axis == "nrw":
        if isinstance(value, str):
            value = [int(x) for x in value.replace(",", "/").split("/")]
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(x, int) for x in value)):
            raise UserError(f"matrix.nrw entries must be [n, r, w] triples, got {value!r}")
        n, r, w = value
        return {"target.n": n, "target.r": r, "target.w": w}, f"{n}/{r}/{w}"
    if axis == "mode":
        return {"target.mode": value}, str(value)
    if axis in ("workload", "nemesis"):
        if not isinstance(value, str):
            raise UserError(f"matrix.{axis} entries must be names, got {value!r}")
        table = presets.get(axis, {})
        if value in table:
            fields = dict(table[value])
            if axis == "workload":
                fields.setdefault("name", value)
            out: dict[str, Any] = {}
            for k, v in fields.items():  # a preset may also set other tables: [workloads.register] target = {...}
                if k in SPEC_TABLES and k != axis and isinstance(v, Mapping):
                    out.update({f"{k}.{k2}": v2 for k2, v2 in v.items()})
                else:
                    out[f"{axis}.{k}"] = v
            return out, value
        if axis == "nemesis":
            if value == "none":
                return {"nemesis.faults": []}, value
            raise UserError(f"matrix.nemesis: {value!r} is not defined (add a [nemeses.{value}] table, or use \"none\")")
        return {"workload.name": value}, value
    if "." not in axis and axis not in ("nodes", "duration", "rate", "concurrency", "recovery", "backend"):
        raise UserError(f"unknown matrix axis {axis!r} (use {', '.join(AXES)} or a dotted spec field like target.pr)")
    return {axis: value}, f"{axis.rsplit('.', 1)[-1]}={value}"


def _implied_labels(overrides: Mapping[str, Any], labels: Mapping[str, Any]) -> dict[str, Any]:
    """Labels plus nrw/mode taken from the cell's own settings when no axis named them (for tables)."""
    out = dict(labels)
    try:
        from harness.spec import target_defaults
        dflt = target_defaults()
    except ImportError:
        dflt = {"n": 3, "r": 2, "w": 2, "mode": "vclock"}
    t = {k: overrides.get(f"target.{k}", dflt.get(k)) for k in ("n", "r", "w", "mode")}
    if "nrw" not in out:
        out["nrw"] = f"{t['n']}/{t['r']}/{t['w']}"
    if "mode" not in out and t["mode"] is not None:
        out["mode"] = str(t["mode"])
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-").replace("--", "-")


def parse_campaign(data: Mapping[str, Any], *, source: str | None = None, base_dir: Path | None = None) -> CampaignDef:
    """Expand a parsed campaign file into cells; any mistake is a one-line UserError naming it."""
    where = f"{source}: " if source else ""
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise UserError(f"{where}unknown campaign field {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise UserError(f"{where}campaign needs a name (a string without '/')")
    try:
        base = _flatten(data.get("base", {}), "base")
        if "backend" in data:
            base["backend"] = data["backend"]
        repeats = int(data.get("repeats", 1))
        if repeats < 1:
            raise UserError("repeats must be at least 1")
        limit = data.get("time_limit")
        presets = {"workload": data.get("workloads", {}), "nemesis": data.get("nemeses", {})}
        global_expect = parse_expectations(data.get("expect"), "expect")
        rules = []
        for i, rule in enumerate(data.get("expectations", [])):
            where_ = rule.get("where", {})
            if not isinstance(where_, Mapping):
                raise UserError(f"expectations[{i}].where must be a table of axis = value")
            rules.append((dict(where_), parse_expectations(rule.get("expect"), f"expectations[{i}].expect")))
        raw_cells: list[tuple[str, dict[str, Any], dict[str, Any], list[str], Any]] = []
        matrix = data.get("matrix", {})
        if matrix:
            axes = list(matrix)
            for ax in axes:
                if not isinstance(matrix[ax], list) or not matrix[ax]:
                    raise UserError(f"matrix.{ax} must be a non-empty list")
            for combo in itertools.product(*(matrix[a] for a in axes)):
                ov: dict[str, Any] = {}
                labels: dict[str, Any] = {}
                for ax, val in zip(axes, combo):
                    o, lab = _axis_overrides(ax, val, presets)
                    ov.update(o)
                    labels[ax] = lab
                raw_cells.append((_slug("-".join(str(labels[a]).replace("/", "") for a in axes)), labels, ov, [], limit))
        for i, c in enumerate(data.get("cell", [])):
            if not isinstance(c, Mapping) or not isinstance(c.get("id"), str):
                raise UserError(f"cell[{i}] needs an id (a string)")
            extra = sorted(set(c) - {"id", "set", "expect", "time_limit", "description", *AXES})
            if extra:
                raise UserError(f"cell {c['id']!r}: unknown field {extra[0]!r}")
            ov, labels = {}, {}
            for ax in AXES:
                if ax in c:
                    o, lab = _axis_overrides(ax, c[ax], presets)
                    ov.update(o)
                    labels[ax] = lab
            ov.update(_flatten(c.get("set", {}), f"cell {c['id']}"))
            if "description" in c:
                labels["description"] = c["description"]
            parse_expectations(c.get("expect"), f"cell {c['id']}.expect")
            raw_cells.append((_slug(c["id"]), labels, ov, list(c.get("expect", [])), c.get("time_limit", limit)))
    except UserError as e:
        raise UserError(f"{where}{e}") from None
    if not raw_cells:
        raise UserError(f"{where}campaign {name!r} has no cells (give a [matrix] or [[cell]] tables)")
    cells: list[Cell] = []
    seen: set[str] = set()
    for cid, labels, ov, own, lim in raw_cells:
        expect = [e.text for e in global_expect] + own
        for cond, exps in rules:
            if all(str(labels.get(k, ov.get(k))) == str(v) or (k == "nrw" and str(labels.get(k)) == "/".join(map(str, v)) if isinstance(v, list) else False)
                   for k, v in cond.items()):
                expect += [e.text for e in exps]
        for rep in range(1, repeats + 1):
            full = f"{cid}-r{rep}" if repeats > 1 else cid
            if full in seen:
                raise UserError(f"{where}two cells are both called {full!r}")
            seen.add(full)
            cov = {**base, **ov, "name": f"{name}.{full}"}
            lab = {**_implied_labels(cov, labels), **({"repeat": rep} if repeats > 1 else {})}
            cells.append(Cell(full, lab, cov, tuple(expect), float(lim) if lim else None))
    spec_path = data.get("spec")
    if spec_path and base_dir is not None:
        spec_path = str((base_dir / spec_path).resolve())
    return CampaignDef(name, str(data.get("description", "")), tuple(cells), spec_path, source)


def load_campaign(path: str | Path | None = None, *, builtin: str | None = None) -> CampaignDef:
    """Read a campaign file, or a built-in one by name (``riak-2013``, ``nrw-matrix``, ``ci-smoke``)."""
    if builtin is not None:
        p = BUILTIN_DIR / f"{builtin}.toml"
        if not p.is_file():
            known = ", ".join(sorted(x.stem for x in BUILTIN_DIR.glob("*.toml")))
            raise UserError(f"no built-in campaign {builtin!r} (known: {known})")
    elif path is not None:
        p = Path(path)
    else:
        raise UserError("give a campaign file or --builtin NAME")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read campaign {p}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{p}: not valid TOML: {e}") from None
    return parse_campaign(data, source=f"builtin:{builtin}" if builtin else str(p), base_dir=p.parent)


def validate_cells(defn: CampaignDef) -> None:
    """Resolve every cell's spec now, so a bad field fails before the first cluster starts."""
    from harness.spec import load_spec

    for c in defn.cells:
        try:
            load_spec(defn.spec_path, dict(c.overrides))
        except UserError as e:
            raise UserError(f"campaign {defn.name}, cell {c.id}: {e}") from None


class CellRunner(Protocol):
    """Runs one cell and says what happened (the plug point tests replace)."""

    def run(self, defn: CampaignDef, cell: Cell) -> CellResult: ...


def _newest_run(histories: Path, test_name: str, after: float) -> str | None:
    d = histories / test_name
    runs = [p for p in d.iterdir() if p.is_dir() and p.stat().st_mtime >= after] if d.is_dir() else []
    return str(max(runs, key=lambda p: p.stat().st_mtime)) if runs else None


@dataclass
class SubprocessCellRunner:
    """Run each cell through ``harness.runner.run_test`` in a child process, under its time limit."""

    histories: Path = Path("histories")
    grace: float = 60.0   # seconds between SIGTERM at the time limit and SIGKILL

    def run(self, defn: CampaignDef, cell: Cell) -> CellResult:
        """Start the child, wait (at most the time limit), and read the result it wrote."""
        out = self.histories / "campaigns" / ".cells" / f"{os.getpid()}-{cell.id}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        job = {"spec_path": defn.spec_path, "overrides": {**cell.overrides, "histories": str(self.histories)}, "out": str(out)}
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "harness.campaign", "--run-cell", json.dumps(job)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        state = "done"
        try:
            _, err = proc.communicate(timeout=cell.time_limit)
        except subprocess.TimeoutExpired:
            state = "timeout"
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=self.grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
        except KeyboardInterrupt:  # Ctrl-C reached the child too; SIGTERM to us alone is passed on
            if _terminated:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=self.grace)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        res = CellResult(state=state, seconds=round(time.time() - t0, 1))
        if out.is_file():
            done = json.loads(out.read_text())
            out.unlink()
            res.run_dir, res.verdict, res.exit_code, res.error = (done.get("run_dir"), done.get("verdict"),
                                                                    done.get("exit_code"), done.get("error"))
        if not res.run_dir:  # stopped before run_test returned: find the run folder it made
            res.run_dir = _newest_run(self.histories, str(cell.overrides.get("name")), t0)
        if res.run_dir:
            res.run_dir = str(Path(res.run_dir).resolve())   # campaign.json must work from any cwd
        if state == "timeout":
            res.error = f"time limit of {cell.time_limit:g} s reached; stopped with SIGTERM"
        elif res.error or res.exit_code in (None, 3) or proc.returncode not in (0, 1, 2):
            res.state = "error"
            lines = [ln for ln in (err or "").strip().splitlines() if ln.strip()]
            res.error = res.error or (lines[-1] if lines else f"cell process exited {proc.returncode}")
        return res


_terminated = False


def stop_on_sigterm() -> None:
    """Make SIGTERM stop a campaign like Ctrl-C (cells kept, running cell healed), passing it to the cell."""

    def handler(signum: int, frame: Any) -> None:
        global _terminated
        _terminated = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _run_cell_child(job_json: str) -> int:
    """Child side of SubprocessCellRunner: run one spec, write run_dir/verdict/exit_code as JSON."""
    job = json.loads(job_json)
    out: dict[str, Any] = {}
    try:
        from harness.runner import run_test
        from harness.spec import load_spec

        outcome = run_test(load_spec(job["spec_path"], job["overrides"]), display=False)
        out = {"run_dir": str(outcome.run_dir), "verdict": getattr(outcome.verdict, "value", outcome.verdict),
               "exit_code": outcome.exit_code, "error": getattr(outcome, "error", None)}
    except UserError as e:
        out = {"error": str(e), "exit_code": 3}
    except KeyboardInterrupt:
        out = {"error": "interrupted", "exit_code": 130}
    Path(job["out"]).write_text(json.dumps(out))
    return 0


def finish_cell(cell: Cell, res: CellResult) -> CellResult:
    """Read the run's results.json and evaluate the cell's expectations on it."""
    results = None
    if res.run_dir and (Path(res.run_dir) / "results.json").is_file():
        try:
            results = json.loads((Path(res.run_dir) / "results.json").read_text())
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

    def broken(self) -> list[tuple[str, dict[str, Any]]]:
        """(cell id, expectation outcome) for every broken expectation."""
        return [(cid, e) for cid, r in self.cells.items() for e in r.broken]

    def exit_code(self) -> int:
        """130 interrupted, 3 a cell could not run, 1 an expectation broke, else 0."""
        if self.interrupted:
            return 130
        if any(r.state in ("error", "timeout", "pending") for r in self.cells.values()):
            return 3
        return 1 if self.broken() else 0

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "definition": self.defn.to_json(), "dir": str(self.dir), "started": self.started,
                "finished": self.finished, "interrupted": self.interrupted,
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
            obj = json.loads((d / "campaign.json").read_text())
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
        return CampaignRun(defn, d, cells, obj.get("started", ""), obj.get("finished"), obj.get("interrupted", False))


def new_campaign_dir(histories: Path, name: str) -> Path:
    """``histories/campaigns/<name>/<YYYYmmddTHHMMSS>/`` (a suffix when that second is taken)."""
    base = histories / "campaigns" / name
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    d, i = base / stamp, 1
    while d.exists():
        i += 1
        d = base / f"{stamp}-{i}"
    return d


def run_campaign(defn: CampaignDef, *, histories: Path, runner: CellRunner | None = None,
                 resume: CampaignRun | None = None,
                 on_update: Callable[[CampaignRun, str | None], None] | None = None,
                 only: Sequence[str] | None = None) -> CampaignRun:
    """Run every unfinished cell in order, saving after each; Ctrl-C keeps what finished.

    ``on_update(run, running_cell_id)`` is called before and after each cell
    (the live table). With ``resume``, cells already ``done`` are kept and the
    others (pending, interrupted, error, timeout) run again.
    """
    runner = runner or SubprocessCellRunner(histories)
    if resume is None:
        camp = CampaignRun(defn, new_campaign_dir(histories, defn.name), {c.id: CellResult() for c in defn.cells},
                           time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    else:
        camp = resume
        camp.interrupted, camp.finished = False, None
    camp.save()
    notify = on_update or (lambda _c, _r: None)
    try:
        for cell in camp.defn.cells:
            if camp.cells[cell.id].state == "done" or (only and cell.id not in only):
                continue
            camp.cells[cell.id] = CellResult(state="running")
            camp.save()   # campaign.json and the pages show which cell is running
            notify(camp, cell.id)
            res = runner.run(camp.defn, cell)
            camp.cells[cell.id] = finish_cell(cell, res)
            camp.save()
            notify(camp, None)
    except KeyboardInterrupt:
        for r in camp.cells.values():
            if r.state == "running":
                r.state, r.error = "interrupted", "campaign interrupted"
        camp.interrupted = True
    camp.finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    camp.save()
    notify(camp, None)
    return camp


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--run-cell":
        sys.exit(_run_cell_child(sys.argv[2]))
    sys.stderr.write("usage: python -m harness.campaign --run-cell JOB_JSON (internal; use `dynharness campaign`)\n")
    sys.exit(3)
