"""An explore case as a real run: the base spec with the case's fields, its schedule replayed.

Each attempt is an ordinary ``run_test`` (the spec's backend and target, real nodes, real faults,
every exit path healed), stored under the explore folder's ``runs/`` with its own report, so any
tried case can be opened, checked again or replayed like a run of ``dynharness run``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from harness.errors import UserError
from harness.explore.case import Case
from harness.explore.folder import ExploreFolder
from harness.explore.search import Attempt, CaseRejected
from harness.runs import SCHEDULE
from harness.spec import TestSpec, load_spec
from nemeses.schedule import ScheduledAction, dump_schedule


@dataclass
class RealRunner:
    """Runs cases of the spec at ``spec_path`` (None: the demo) with ``overrides`` (flags, seed)."""

    spec_path: str | None
    overrides: Mapping[str, Any]
    folder: ExploreFolder
    checkers: tuple[str, ...] = ()      # failing = one of these invalid; () = the run's verdict invalid
    on_start: Callable[[int, int, Case], None] | None = field(default=None)

    def spec_for(self, case: Case, number: int, attempt: int, schedule_dir: Path) -> TestSpec:
        """The spec one attempt runs; CaseRejected when the case's fields make no valid spec."""
        try:
            return load_spec(self.spec_path, {**self.overrides, **case.overrides(),
                                              "name": f"case-{number:04d}-{attempt}",
                                              "replay_schedule": str(schedule_dir)})
        except UserError as e:
            raise CaseRejected(str(e)) from None

    def run(self, case: Case, actions: Sequence[ScheduledAction], number: int, attempt: int) -> Attempt:
        from harness.runner import run_test

        schedule_dir = self.folder.schedule_dir(number)
        if not (schedule_dir / SCHEDULE).exists():
            dump_schedule(schedule_dir / SCHEDULE, actions)
        spec = self.spec_for(case, number, attempt, schedule_dir)
        if self.on_start is not None:
            self.on_start(number, attempt, case)
        try:
            outcome = run_test(spec, display=False, histories=self.folder.runs)
        except UserError as e:   # refused before it started (no Docker engine...): a run that could not run
            return Attempt(verdict="failed", failing=False, error=str(e))
        results = outcome.results or {}
        invalid = tuple(sorted(name for name, res in (results.get("checkers") or {}).items()
                               if isinstance(res, Mapping) and res.get("verdict") == "invalid"))
        failing = bool(set(invalid) & set(self.checkers)) if self.checkers else outcome.verdict == "invalid"
        return Attempt(verdict=outcome.verdict, failing=failing, run_dir=str(outcome.run_dir),
                       invalid_checkers=invalid, error=outcome.error)
