"""Campaign files: a TOML matrix expanded into cells (spec overrides + expectations).

See ``harness.campaign`` for the whole picture and ``docs/campaigns.md`` for
the file format. Everything here is pure: parsing never starts anything, so
a mistake is a one-line :class:`~harness.errors.UserError` before the first
cluster comes up.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import tomllib

from harness.errors import UserError
from harness.expectations import parse_expectations
from harness.limits import MAX_CELLS, MAX_REPEATS, number, seconds, toml_loads

if TYPE_CHECKING:
    from harness.spec import TestSpec

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "campaigns"
SPEC_TABLES = ("target", "workload", "nemesis", "checkers", "docker", "ssh")
AXES = ("nrw", "mode", "workload", "nemesis")
TOP_KEYS = {"name", "description", "spec", "backend", "time_limit", "repeats", "expect", "base", "matrix",
            "workloads", "nemeses", "expectations", "cell"}


@dataclass(frozen=True)
class Cell:
    """One run of the campaign: its id, the axis values it stands for, and how to run it."""

    id: str
    labels: Mapping[str, Any]
    overrides: Mapping[str, Any]
    expect: tuple[str, ...] = ()
    time_limit: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The cell as stored in campaign.json (so --resume runs exactly what was planned)."""
        return {"id": self.id, "labels": dict(self.labels), "overrides": dict(self.overrides),
                "expect": list(self.expect), "time_limit": self.time_limit}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> "Cell":
        """A cell back from campaign.json."""
        return Cell(obj["id"], dict(obj.get("labels", {})), dict(obj.get("overrides", {})),
                    tuple(obj.get("expect", ())), _time_limit("time_limit", obj.get("time_limit")))


@dataclass(frozen=True)
class CampaignDef:
    """A parsed campaign file: its cells, and the base spec file they override (if any)."""

    name: str
    description: str
    cells: tuple[Cell, ...]
    spec_path: str | None = None
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The whole expanded definition, stored in campaign.json."""
        return {"name": self.name, "description": self.description, "spec_path": self.spec_path,
                "source": self.source, "cells": [c.to_json() for c in self.cells]}


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
    """Labels plus nrw/mode taken from the cell's own settings when no axis named them (for tables),
    for a target that has such settings."""
    from harness.plugins import DEFAULT_TARGET
    from harness.spec import target_defaults

    out = dict(labels)
    kind = str(overrides.get("target.kind") or DEFAULT_TARGET)
    dflt = target_defaults(kind)
    t = {k: overrides.get(f"target.{k}", dflt.get(k)) for k in ("n", "r", "w", "mode")}
    if "nrw" not in out and None not in (t["n"], t["r"], t["w"]):
        out["nrw"] = f"{t['n']}/{t['r']}/{t['w']}"
    if "mode" not in out and t["mode"] is not None:
        out["mode"] = str(t["mode"])
    if kind != DEFAULT_TARGET:
        out.setdefault("target", kind)
    return out


def _time_limit(name: str, v: Any) -> float | None:
    """A cell's time limit in seconds (None: no limit), bounded like every duration."""
    return None if v is None else seconds(name, v)


def _count_cells(cells: int, repeats: int) -> None:
    """Refuse a campaign of more than MAX_CELLS runs before expanding it (a matrix multiplies)."""
    if cells * repeats > MAX_CELLS:
        raise UserError(f"the campaign has {cells} cells x {repeats} repeats; at most {MAX_CELLS} runs "
                        f"(each cell is a whole run)")


def _check_shapes(data: Mapping[str, Any], where: str) -> None:
    """The tables are tables and the arrays of tables arrays of tables (else a one-line error, not
    an AttributeError deep in the expansion)."""
    for key in ("base", "matrix", "workloads", "nemeses"):
        if key in data and not isinstance(data[key], Mapping):
            raise UserError(f"{where}{key} must be a table")
    for key in ("cell", "expectations"):
        v = data.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
            raise UserError(f"{where}{key} must be [[{key}]] tables")


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
    _check_shapes(data, where)
    try:
        base = _flatten(data.get("base", {}), "base")
        if "backend" in data:
            base["backend"] = data["backend"]
        repeats = number("repeats", data.get("repeats", 1), 1, MAX_REPEATS, integer=True)
        limit = _time_limit("time_limit", data.get("time_limit"))
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
            _count_cells(math.prod(len(matrix[a]) for a in axes) + len(data.get("cell", [])), repeats)
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
            raw_cells.append((_slug(c["id"]), labels, ov, list(c.get("expect", [])),
                              _time_limit(f"cell {c['id']!r}: time_limit", c.get("time_limit", limit))))
    except UserError as e:
        raise UserError(f"{where}{e}") from None
    if not raw_cells:
        raise UserError(f"{where}campaign {name!r} has no cells (give a [matrix] or [[cell]] tables)")
    try:
        _count_cells(len(raw_cells), repeats)
    except UserError as e:
        raise UserError(f"{where}{e}") from None
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
            cells.append(Cell(full, lab, cov, tuple(expect), lim))
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
        data = toml_loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read campaign {p}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{p}: not valid TOML: {e}") from None
    return parse_campaign(data, source=f"builtin:{builtin}" if builtin else str(p), base_dir=p.parent)


def cell_spec(spec_path: str | None, overrides: Mapping[str, Any]) -> "TestSpec":
    """The spec a cell runs: the campaign's spec file (if any) with the cell's overrides.

    The one way a cell becomes a spec: the cell's child process, the check of every cell
    before the first starts, and ``--dry-run`` all call it, so a dry run refuses exactly
    what a run would."""
    from harness.spec import load_spec

    return load_spec(spec_path, dict(overrides))


def cell_specs(defn: CampaignDef, only: Sequence[str] | None = None) -> dict[str, "TestSpec | UserError"]:
    """Cell id -> its spec, or the UserError saying why it does not build (every, or every ``only``, cell)."""
    out: dict[str, TestSpec | UserError] = {}
    for c in defn.cells:
        if only and c.id not in only:
            continue
        try:
            out[c.id] = cell_spec(defn.spec_path, c.overrides)
        except UserError as e:
            out[c.id] = e
    return out


def validate_cells(defn: CampaignDef, only: Sequence[str] | None = None) -> None:
    """Resolve every cell's spec now, so a bad field fails before the first cluster starts."""
    for cid, spec in cell_specs(defn, only).items():
        if isinstance(spec, UserError):
            raise UserError(f"campaign {defn.name}, cell {cid}: {spec}")
