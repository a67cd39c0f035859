"""What one explore leaves on disk, under ``histories/explore/<time>/``.

- ``explore.json``: the settings (base spec, space, budget, confirm, checkers) and, once it ends,
  the summary (cases tried by outcome, why it stopped, the minimal case).
- ``search.jsonl``: one line per tried case, appended as it finishes: its phase, the case, its
  schedule, every run's verdict and folder.
- ``cases/NNNN/nemesis-schedule.json``: each case's schedule (what its runs replayed).
- ``runs/``: every run, as ``run`` stores them (``case-NNNN-ATTEMPT/<time>/``, with reports).
- ``hypothesis/``: hypothesis's example database: ``explore --resume`` tries what failed first.
- ``minimal/``: the reproducer: ``spec.json`` and ``nemesis-schedule.json`` that
  ``dynharness run --spec minimal/spec.json --replay-schedule minimal`` runs again, the minimal
  run's ``report.html`` and a ``README.md`` saying what it is.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.errors import UserError
from harness.explore.case import describe
from harness.explore.search import SearchState, Tried
from harness.limits import json_loads
from harness.runs import SCHEDULE, SPEC, new_stamped_dir
from harness.spec import RUN_FACTS
from nemeses.schedule import dump_schedule

SETTINGS = "explore.json"
LOG = "search.jsonl"


@dataclass(frozen=True)
class ExploreFolder:
    root: Path

    @staticmethod
    def create(histories: Path) -> "ExploreFolder":
        return ExploreFolder(new_stamped_dir(histories.resolve() / "explore"))

    @staticmethod
    def open(path: str | os.PathLike[str]) -> "ExploreFolder":
        """An existing explore folder (``--resume``); UserError when it is not one."""
        root = Path(path).resolve()
        if not (root / SETTINGS).is_file():
            raise UserError(f"{path}: not an explore folder (no {SETTINGS})")
        return ExploreFolder(root)

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def database(self) -> Path:
        return self.root / "hypothesis"

    @property
    def minimal(self) -> Path:
        return self.root / "minimal"

    def schedule_dir(self, number: int) -> Path:
        d = self.root / "cases" / f"{number:04d}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def settings(self) -> dict[str, Any]:
        try:
            doc = json_loads((self.root / SETTINGS).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"{self.root / SETTINGS}: cannot read: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict):
            raise UserError(f"{self.root / SETTINGS}: not an explore settings file")
        return doc

    def write_settings(self, settings: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> None:
        _write_json(self.root / SETTINGS, {"settings": dict(settings), "summary": dict(summary or {})})

    def tried_before(self) -> int:
        """How many cases the log holds (a resumed search numbers on from there)."""
        try:
            with open(self.root / LOG, encoding="utf-8") as fh:
                return sum(1 for line in fh if line.strip())
        except FileNotFoundError:
            return 0

    def log(self, tried: Tried) -> None:
        with open(self.root / LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(tried.to_json(), default=str) + "\n")

    def write_reproducer(self, tried: Tried) -> Path | None:
        """``minimal/`` from a confirmed failing case (its first run's spec, schedule and report)."""
        first = next((a for a in tried.attempts if a.run_dir), None)
        if first is None:
            return None
        out = self.minimal
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        spec = json_loads((Path(first.run_dir) / SPEC).read_text(encoding="utf-8"))
        for k in (*RUN_FACTS, "replay_schedule"):
            spec.pop(k, None)
        spec.update(name="explore-minimal", histories="histories")
        _write_json(out / SPEC, spec)
        dump_schedule(out / SCHEDULE, tried.actions)
        report = Path(first.run_dir) / "report.html"
        if report.is_file():
            shutil.copyfile(report, out / "report.html")
        checkers = sorted({c for a in tried.attempts for c in a.invalid_checkers})
        lines = [f"# Minimal failing case (case {tried.number})", "",
                 f"Failed {sum(a.failing for a in tried.attempts)} of {len(tried.attempts)} runs "
                 f"(invalid: {', '.join(checkers) or 'the verdict'}).", "",
                 f"Duration {tried.case.duration:g} s, {tried.case.keys} key(s), {tried.case.concurrency} "
                 f"client(s), {tried.case.rate:g} ops/s" + "".join(f", {k} = {v}" for k, v in tried.case.vary.items())
                 + ".", "", "Faults:", "", *([f"- {line}" for line in describe(tried.actions)] or ["- none"]), "",
                 "Run it again:", "", "```sh", f"dynharness run --spec {out / SPEC} --replay-schedule {out}", "```",
                 "", f"The failing run: {first.run_dir}", ""]
        (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
        return out


def summary(state: SearchState, replays: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The part of ``explore.json`` written when the search ends."""
    m = state.minimal
    return {"stopped": state.stopped, "seconds": round(state.elapsed(), 1), "cases": len(state.tried),
            **{o: state.count(o) for o in ("pass", "fail", "flaky", "unknown", "rejected", "unreliable")},
            "shrink_steps": state.shrink_steps,
            "flaky_cases": [t.number for t in state.flaky],
            "minimal": None if m is None else {"number": m.number, "case": m.case.to_json(),
                                               "faults": describe(m.actions),
                                               "schedule": [a.to_json() for a in m.actions]},
            "replays": dict(replays) if replays else None}


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
