"""The search: hypothesis draws cases, a runner runs them, failures are confirmed k of k, then shrunk.

Why hypothesis and not a home-made search: its generation mixes small and large inputs well, its
shrinker is far better than anything written for one tool, and its example database makes a
found failure the first thing tried next time (``--resume``). What explore adds is what real
runs need:

- **Confirmation.** A run is not deterministic, so a case counts as failing only if it fails in
  ``confirm`` runs out of ``confirm`` (stopping at the first that does not fail); a case that
  failed some but not all runs is *flaky*: logged and reported apart, and passed to hypothesis as
  a pass so shrinking never leans on luck.
- **Memory.** Equal runs run once: hypothesis may draw a case again (and replays the minimal one
  at the end), and two cases that differ only in steps that do not fit make the same run; the
  remembered outcome answers, so shrinking away a step that changes nothing costs no run.
- **Budgets.** One for searching, and one for shrinking that starts when the first failure is
  confirmed (so a failure found late still gets shrunk). Once the current one is spent no new
  case runs (a confirmation under way is finished: a found failure is never dropped
  half-checked); hypothesis is told each further case is invalid and stops, and the smallest
  failure so far is the reproducer.
- **Rounds.** A reproducer must also fail again when replayed (the CLI's ``--replays``). When none
  of the smallest failures does, :meth:`Explorer.search_on` starts a new round in what is left of
  the budget: those cases count as passes (``unreliable``), the confirmation bar rises to the
  replays' count, and the shrink budget starts again at the round's first failure; a shrinker
  that favours marginal cases then stops at the smallest case that reproduces at that bar. The
  round first tries each unreliable case grown one step (:func:`harness.explore.case.grown`:
  longer faults, more keys and clients), as a hypothesis explicit example: when that fails every
  run it is the reproducer (``stopped: grown``; hypothesis does not shrink explicit examples), so
  the answer is one step from the marginal case instead of a long shrink of a random large one.
- **A record.** Every tried case, its schedule and each run's verdict goes to ``on_case`` (the
  folder's search log, the live display) as it finishes.

The runner is a :class:`CaseRunner`; tests give an in-process fake whose bug fires for a known
schedule, explore gives real runs (:mod:`harness.explore.real_runs`).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

from harness.errors import UserError
from harness.explore.case import Case, Space, build_schedule, cases, grown, run_key, size
from nemeses.schedule import ScheduledAction

#: Cases that could not run in a row before the search gives up (the backend or store is broken).
MAX_BROKEN_IN_A_ROW = 3


@dataclass(frozen=True)
class Attempt:
    """One run of a case."""

    verdict: str                          # valid / invalid / unknown / failed (the run's own verdict)
    failing: bool                         # counts as the failure searched for (``--checkers``)
    run_dir: str | None = None
    invalid_checkers: tuple[str, ...] = ()
    error: str | None = None              # why the run failed (verdict "failed")


class CaseRejected(Exception):
    """The case makes no valid spec (a ``--vary`` combination such as r > n): not run, not counted."""


class CaseRunner(Protocol):
    """Runs one attempt of a case (its schedule already built) and says how it ended."""

    def run(self, case: Case, actions: Sequence[ScheduledAction], number: int, attempt: int) -> Attempt: ...


@dataclass
class Tried:
    """One case as the search log records it."""

    number: int
    phase: str                            # search (before the first confirmed failure) / shrink
    case: Case
    actions: tuple[ScheduledAction, ...]
    attempts: list[Attempt] = field(default_factory=list)
    outcome: str = "pass"                 # pass / fail / flaky / unknown / rejected / unreliable
    started_s: float = 0.0
    seconds: float = 0.0
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "phase": self.phase, "outcome": self.outcome, "note": self.note,
                "started_s": round(self.started_s, 3), "seconds": round(self.seconds, 3),
                "case": self.case.to_json(), "schedule": [a.to_json() for a in self.actions],
                "attempts": [{"verdict": a.verdict, "failing": a.failing, "run_dir": a.run_dir,
                              "invalid_checkers": list(a.invalid_checkers), "error": a.error}
                             for a in self.attempts]}


@dataclass
class SearchState:
    """What the search has done so far (the live display and the summary read it)."""

    started: float
    tried: list[Tried] = field(default_factory=list)
    #: why it ended: shrunk (hypothesis is done), budget (spent: while searching, or while
    #: shrinking, then ``minimal`` is the smallest failure so far), grown (a new round's grown
    #: case failed every run: see the module docstring), no-failure (the space or max_cases is
    #: done), interrupted, broken (the runs cannot run)
    stopped: str | None = None
    minimal: Tried | None = None
    #: seconds into the search when the current round began (0: the first; see Explorer.search_on)
    round_started_s: float = 0.0

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.tried if t.outcome == outcome)

    @property
    def failures(self) -> list[Tried]:
        return [t for t in self.tried if t.outcome == "fail"]

    @property
    def flaky(self) -> list[Tried]:
        return [t for t in self.tried if t.outcome == "flaky"]

    @property
    def shrink_steps(self) -> int:
        """Failing cases found after the first: each is a step hypothesis's shrinker took."""
        return max(0, len(self.failures) - 1)

    def elapsed(self, clock: Callable[[], float] = time.monotonic) -> float:
        return clock() - self.started

    @property
    def round_failures(self) -> list[Tried]:
        """Failures confirmed in the current round (at its confirmation bar)."""
        return [t for t in self.failures if t.started_s >= self.round_started_s]

    @property
    def shrink_started_s(self) -> float | None:
        """Seconds into the search when this round's first failure was confirmed (the shrink
        budget's start), None while searching."""
        failures = self.round_failures
        return failures[0].started_s + failures[0].seconds if failures else None


class _Failed(Exception):
    """Raised inside hypothesis's test function for a confirmed failing case."""

    def __init__(self, tried: Tried) -> None:
        super().__init__(f"case {tried.number} fails")
        self.tried = tried


@dataclass
class Explorer:
    """One search over ``space`` with ``runner`` (see the module docstring)."""

    space: Space
    runner: CaseRunner
    budget: float                                  # seconds of searching for a first failure
    shrink_budget: float | None = None             # seconds of shrinking after it (None: budget)
    confirm: int = 3                               # runs a failure must fail in, all of them
    database: Path | None = None                   # hypothesis's example database (``--resume``)
    seed: int | None = None     # hypothesis's own seed: a repeatable search, but (hypothesis's rule) no database
    max_cases: int = 1000
    on_case: Callable[[Tried, SearchState], None] | None = None
    clock: Callable[[], float] = time.monotonic
    first_number: int = 1                          # a resumed search numbers on from its log
    state: SearchState = field(init=False)
    _known: dict[str, Tried] = field(init=False, default_factory=dict)
    _broken: int = field(init=False, default=0)
    _abort: UserError | None = field(init=False, default=None)
    _explicit: list[Case] = field(init=False, default_factory=list)   # tried first (search_on's grown cases)

    def __post_init__(self) -> None:
        for name, v in (("budget", self.budget), ("shrink budget", self.shrink_budget)):
            if v is not None and not (v > 0 and v < float("inf")):
                raise UserError(f"explore: the {name} must be a positive number of seconds, got {v!r}")
        if not 1 <= self.confirm <= 20:
            raise UserError(f"explore: --confirm must be 1-20 runs, got {self.confirm!r}")
        self.state = SearchState(started=self.clock())

    def run(self) -> SearchState:
        """Search until a failure is found and shrunk, the budget is spent, or the space is done.
        A KeyboardInterrupt (Ctrl-C, or a stop signal the runner turned into one) ends the search
        with what was found and is raised again once the state says so."""
        from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings
        from hypothesis import seed as hypothesis_seed
        from hypothesis.database import DirectoryBasedExampleDatabase
        from hypothesis.errors import HypothesisException

        db = DirectoryBasedExampleDatabase(str(self.database)) if self.database is not None else None
        test = given(cases(self.space))(self._test)
        for case in reversed(self._explicit):   # decorators apply inside out: these run in list order
            test = example(case)(test)
        test = settings(database=db, deadline=None, max_examples=self.max_cases, derandomize=False,
                        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
                        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                        report_multiple_bugs=False, print_blob=False)(test)
        if self.seed is not None:
            test = hypothesis_seed(self.seed)(test)
        try:
            test()
            self.state.stopped = "budget" if self._spent() else "no-failure"
        except _Failed as found:
            if found.tried.case in self._explicit:   # a grown case: hypothesis does not shrink those
                self.state.minimal, self.state.stopped = found.tried, "grown"
            elif self._spent():   # shrinking cut short by its budget: the smallest failure so far
                self.state.stopped = "budget"
            else:
                self.state.minimal, self.state.stopped = found.tried, "shrunk"
        except KeyboardInterrupt:
            self.state.stopped = "interrupted"
            self._pick_minimal()
            raise
        except HypothesisException:   # e.g. a flaky final replay: fall back on the log
            self.state.stopped = "shrunk"
        self._pick_minimal()
        if self._abort is not None:
            self.state.stopped = "broken"
            raise self._abort
        return self.state

    def search_on(self, unreliable: Iterable[int], confirm: int) -> bool:
        """A new round after the reproducer failed its replays: the cases numbered ``unreliable``
        count as passes from now on, a failure must fail ``confirm`` of ``confirm`` runs (failures
        confirmed at the old bar run again if met), and the shrink budget starts again at the
        round's first failure. False, and nothing changes, when no search budget is left."""
        now = self.state.elapsed(self.clock)
        if now >= self.budget:
            return False
        numbers = set(unreliable)
        for t in self.state.tried:
            if t.number in numbers and t.outcome == "fail":
                t.outcome = "unreliable"
                bigger = grown(t.case, self.space)
                if bigger != t.case and bigger not in self._explicit:
                    self._explicit.append(bigger)
        self._known = {k: t for k, t in self._known.items() if t.outcome != "fail"}
        self.confirm = max(self.confirm, confirm)
        self.state.minimal, self.state.stopped, self.state.round_started_s = None, None, now
        return True

    def _pick_minimal(self) -> None:
        """Hypothesis's minimal case when it finished shrinking, else this round's smallest confirmed failure."""
        if self.state.minimal is None and self.state.round_failures:
            # the smallest; of equals the later (hypothesis only tries what it deems simpler)
            self.state.minimal = min(self.state.round_failures, key=lambda t: (size(t.case, t.actions), -t.number))

    def _spent(self) -> bool:
        """Searching: the budget is spent; shrinking: the shrink budget since the first failure."""
        found = self.state.shrink_started_s
        if found is None:
            return self.state.elapsed(self.clock) >= self.budget
        limit = self.budget if self.shrink_budget is None else self.shrink_budget
        return self.state.elapsed(self.clock) - found >= limit

    def _test(self, case: Case) -> None:
        """Hypothesis's test function: raises _Failed for a confirmed failure, returns otherwise."""
        from hypothesis import reject

        if self._abort is not None:
            reject()       # the runs cannot run: hypothesis stops, run() raises the reason
        actions = tuple(build_schedule(case, self.space))
        key = run_key(case, actions)
        tried = self._known.get(key)
        if tried is None:
            if self._spent():
                reject()   # no new runs: hypothesis counts these as invalid and stops
            tried = self._known[key] = self._try(case, actions)
        elif tried.case != case:   # the same run (a step that does not fit): its outcome, this case
            tried = dataclasses.replace(tried, case=case, note=f"the same run as case {tried.number}")
        if tried.outcome == "rejected":
            reject()
        if tried.outcome == "fail":   # one raise statement: hypothesis tells failures apart by where they rose
            raise _Failed(tried)

    def _try(self, case: Case, actions: tuple[ScheduledAction, ...]) -> Tried:
        number = self.first_number + len(self.state.tried)
        tried = Tried(number=number, phase="shrink" if self.state.round_failures else "search", case=case,
                      actions=actions, started_s=self.state.elapsed(self.clock))
        self.state.tried.append(tried)
        began = self.clock()
        try:
            for attempt in range(1, self.confirm + 1):
                result = self.runner.run(case, tried.actions, number, attempt)
                tried.attempts.append(result)
                if not result.failing:
                    break
            tried.outcome = _outcome(tried.attempts, self.confirm)
        except CaseRejected as why:
            tried.outcome, tried.note = "rejected", str(why)
        except KeyboardInterrupt:
            tried.outcome, tried.note = "unknown", "interrupted"
            raise
        finally:
            tried.seconds = self.clock() - began
            self._broken = self._broken + 1 if tried.attempts and tried.attempts[-1].verdict == "failed" else 0
            if self.on_case is not None:
                self.on_case(tried, self.state)
        if self._broken >= MAX_BROKEN_IN_A_ROW:
            self._abort = UserError(f"explore: {self._broken} cases in a row could not run; the last: "
                                    f"{tried.attempts[-1].error or 'no reason given'}")
        return tried


def _outcome(attempts: Sequence[Attempt], confirm: int) -> str:
    """fail: failed every one of ``confirm`` runs; flaky: failed some; unknown: the first run could
    neither pass nor fail (no verdict, or the run failed); pass otherwise."""
    failing = sum(1 for a in attempts if a.failing)
    if failing == confirm:
        return "fail"
    if failing:
        return "flaky"
    return "unknown" if attempts and attempts[0].verdict in ("unknown", "failed") else "pass"
