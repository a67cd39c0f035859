"""``dynharness selftest``: does this harness catch the bugs it exists to catch, and only those?

A target may bring a bug zoo (``Target.zoo``, ``targets/adapter.py``): named bugs its nodes can
be started with (``[target] bug = NAME``) and short scenarios meant to expose them. The selftest
runs every chosen bug through each of its scenarios, once per seed, and the clean store through
the same scenarios, then says per bug which scenario caught it and with which checker, and per
scenario whether the clean store was flagged. A bug counts as caught by a scenario only when every
seed's run was invalid; the clean store passes a scenario only when none of its runs was.

Why a campaign underneath: the runs are exactly campaign cells (spec overrides plus an
expectation: ``verdict == invalid`` for a bug, ``verdict != invalid`` for the clean store), so
they run in child processes under a time limit, are stored under ``histories/`` with
``campaign.json``, JUnit and pages, and can be resumed, with no second runner to maintain.

A scenario that needs a plug-in this installation lacks (``needs``, e.g. a checker still being
written) is not run: its rows say what it waits for, and a bug no runnable scenario covers counts
as missed, so the selftest never passes a bug it cannot catch yet.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness import plugins
from harness.campaign import CampaignDef, CampaignRun, Cell
from harness.errors import UserError
from harness.plugins import DEFAULT_TARGET

NAME = "selftest"
CLEAN = "clean"
#: Seconds a cell may take (setup, load, heal, settle, final reads, checks) before it is stopped.
CELL_TIME_LIMIT = 150.0
CAUGHT, FLAGGED = "verdict == invalid", "verdict != invalid"


def zoo_of(kind: str) -> Any:
    """The bug zoo of target ``kind``; one line when the target has none."""
    zoo = getattr(plugins.target(kind), "zoo", None)
    if zoo is None:
        raise UserError(f"the {kind} target has no bug zoo: selftest needs a target that can be started "
                        "with deliberate bugs (Target.zoo, docs/contracts.md section 0)")
    return zoo


def missing_needs(needs: Iterable[str]) -> list[str]:
    """The ``group:name`` plug-ins of ``needs`` that cannot be loaded here.

    Loaded, not just looked up: entry points come from the installed metadata, which can name a
    module this checkout does not have (an install made from another branch)."""
    out = []
    for need in needs:
        group, _, name = need.partition(":")
        try:
            plugins.load(group, name)
        except UserError:
            out.append(need)
    return out


def need_text(need: str) -> str:
    """``checkers:convergence`` -> ``checker convergence`` (how a table says what a row waits for)."""
    group, _, name = need.partition(":")
    return f"{group.rstrip('s')} {name}"


def pick_bugs(zoo: Any, wanted: Sequence[str] | None) -> tuple[str, ...]:
    """The bugs to test, in the zoo's order; one line naming an unknown one."""
    if not wanted:
        return tuple(zoo.bugs)
    unknown = [b for b in wanted if b not in zoo.bugs]
    if unknown:
        raise UserError(f"unknown bug {unknown[0]!r} (known: {', '.join(zoo.bugs)})")
    return tuple(b for b in zoo.bugs if b in wanted)


def plan(kind: str = DEFAULT_TARGET, bugs: Sequence[str] | None = None, seeds: int = 3, repeat: int = 1,
         clean: bool = True, buggy: bool = True) -> CampaignDef:
    """The selftest as a campaign: bug cells for ``seeds`` seeds, clean cells for ``seeds * repeat``.

    Seeds are 1..seeds (bug cells) and 1..seeds*repeat (clean cells), so a rerun repeats the same
    schedules. ``clean``/``buggy`` = False leave out the clean-store or the bug runs (the clean
    runs still cover the scenarios of the chosen bugs)."""
    if seeds < 1 or repeat < 1:
        raise UserError(f"--seeds and --repeat must be at least 1, got {seeds} and {repeat}")
    if not (clean or buggy):
        raise UserError("--no-clean and --only-clean together leave nothing to run")
    zoo = zoo_of(kind)
    chosen = pick_bugs(zoo, bugs)
    cells: list[Cell] = []
    scenarios: list[str] = []
    for bug in chosen:
        for sc in zoo.bugs[bug].scenarios:
            if sc not in zoo.scenarios:
                raise UserError(f"bug {bug!r} names scenario {sc!r}, which the {kind} zoo does not define")
            if sc not in scenarios:
                scenarios.append(sc)
            if buggy and not missing_needs(zoo.scenarios[sc].needs):
                cells += [_cell(kind, zoo, bug, sc, seed) for seed in range(1, seeds + 1)]
    if clean:
        for sc in scenarios:
            if not missing_needs(zoo.scenarios[sc].needs):
                cells += [_cell(kind, zoo, None, sc, seed) for seed in range(1, seeds * repeat + 1)]
    described = {"target": kind, "bugs": list(chosen) if buggy else [], "seeds": seeds, "repeat": repeat,
                 "clean": clean}
    return CampaignDef(NAME, json.dumps(described), tuple(cells), None, f"selftest:{kind}")


def _cell(kind: str, zoo: Any, bug: str | None, scenario: str, seed: int) -> Cell:
    cid = f"{bug or CLEAN}--{scenario}--s{seed}"
    ov: dict[str, Any] = {**zoo.scenarios[scenario].overrides, "target.kind": kind, "seed": seed,
                          "name": f"{NAME}.{cid}"}
    if bug:
        ov["target.bug"] = bug
    labels = {"bug": bug or CLEAN, "scenario": scenario, "seed": seed}
    return Cell(cid, labels, ov, (CAUGHT if bug else FLAGGED,), CELL_TIME_LIMIT)


def described(defn: CampaignDef) -> dict[str, Any]:
    """What a selftest campaign was asked (target, bugs, seeds, repeat, clean), from its definition."""
    try:
        out = json.loads(defn.description)
    except ValueError:
        out = None
    if defn.name != NAME or not isinstance(out, dict):
        raise UserError(f"campaign {defn.name!r} is not a selftest")
    return out


def invalid_checkers(run_dir: str | None) -> list[str]:
    """The checkers whose verdict was invalid in a stored run (empty when it has no results)."""
    try:
        results = json.loads((Path(run_dir or "") / "results.json").read_text())
    except (OSError, ValueError):
        return []
    return sorted(name for name, res in (results.get("checkers") or {}).items()
                  if (res or {}).get("verdict") == "invalid")


@dataclass
class Row:
    """One line of the selftest table: a bug (or the clean store) through one scenario."""

    bug: str                          # a bug's name, or "clean"
    scenario: str
    runs: int = 0                     # cells that finished
    invalid: int = 0                  # of which invalid
    unknown: int = 0                  # of which unknown (a checker could not decide)
    planned: int = 0
    checkers: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """A bug row: every planned seed caught. A clean row: every run done and none flagged."""
        if self.waiting or self.errors or self.runs < self.planned:
            return False
        return self.invalid == self.runs if self.bug != CLEAN else self.invalid == 0

    def outcome(self) -> str:
        """What the row says in the table: caught / missed / needs ... / clean / FLAGGED."""
        if self.waiting:
            return "needs " + ", ".join(need_text(n) for n in self.waiting)
        done = f"{self.invalid}/{self.planned}"
        if self.bug == CLEAN:
            word = "clean" if self.invalid == 0 else "FLAGGED"
        else:
            word = "caught" if self.invalid == self.planned else "MISSED"
        extra = f", {self.unknown} unknown" if self.unknown else ""
        extra += f", {len(self.errors)} not run" if self.errors else ""
        return f"{word} {done}{extra}"


def table(camp: CampaignRun, zoo: Any) -> list[Row]:
    """Rows for every asked bug x scenario (waiting ones too), then the clean store per scenario."""
    asked = described(camp.defn)
    rows: dict[tuple[str, str], Row] = {}
    for bug in asked["bugs"]:
        for sc in zoo.bugs[bug].scenarios:
            rows[(bug, sc)] = Row(bug, sc, waiting=missing_needs(zoo.scenarios[sc].needs))
    clean: dict[str, Row] = {}
    for cell in camp.defn.cells:
        bug, sc = str(cell.labels["bug"]), str(cell.labels["scenario"])
        row = rows.get((bug, sc)) if bug != CLEAN else clean.setdefault(sc, Row(CLEAN, sc))
        if row is None:
            continue
        row.planned += 1
        res = camp.cells.get(cell.id)
        if res is None or res.state != "done":
            if res is not None and res.state != "pending":
                row.errors.append(f"{cell.id}: {res.state} {res.error or ''}".strip())
            continue
        row.runs += 1
        row.unknown += res.verdict == "unknown"
        if res.verdict == "invalid":
            row.invalid += 1
            row.checkers.update(invalid_checkers(res.run_dir))
    return list(rows.values()) + list(clean.values())


def bug_verdicts(rows: Sequence[Row]) -> dict[str, bool]:
    """Per bug: caught by at least one scenario in every seed."""
    out: dict[str, bool] = {}
    for r in rows:
        if r.bug != CLEAN:
            out[r.bug] = out.get(r.bug, False) or r.ok
    return out


def exit_code(camp: CampaignRun, rows: Sequence[Row]) -> int:
    """130 interrupted, 3 a cell could not run, 1 a bug missed or the clean store flagged, else 0."""
    if camp.interrupted:
        return 130
    if any(r.state in ("error", "timeout") for r in camp.cells.values()):
        return 3
    clean_ok = all(r.ok for r in rows if r.bug == CLEAN)
    return 0 if clean_ok and all(bug_verdicts(rows).values()) else 1


def markdown(rows: Sequence[Row], zoo: Any) -> str:
    """The table as Markdown (``selftest.md`` in the campaign folder, and the docs' evidence)."""
    lines = ["| bug | area | scenario | outcome (invalid runs / runs) | caught by |", "|---|---|---|---|---|"]
    for r in rows:
        area = zoo.bugs[r.bug].area if r.bug in zoo.bugs else "(no bug)"
        lines.append(f"| {r.bug} | {area} | {r.scenario} | {r.outcome()} | {', '.join(sorted(r.checkers)) or '-'} |")
    verdicts = bug_verdicts(rows)
    caught = sum(verdicts.values())
    flagged = [r.scenario for r in rows if r.bug == CLEAN and not r.ok]
    bugs = f"{caught} of {len(verdicts)} bugs caught in every seed by at least one scenario; " if verdicts else ""
    lines += ["", f"{bugs}clean store: {'flagged or not run in ' + ', '.join(flagged) if flagged else 'never flagged'}."]
    return "\n".join(lines) + "\n"
