"""The live view of a search: cases tried by outcome, the shrink step, the case running, time left.

On a terminal a rich panel refreshes in place; elsewhere (logs, CI) one plain line per case.
"""
from __future__ import annotations

import sys
from typing import Any

from harness.explore.case import Case, describe
from harness.explore.search import SearchState, Tried


class ExploreDisplay:
    def __init__(self, budget: float, *, live: bool, shrink_budget: float | None = None) -> None:
        self.budget = budget
        self.shrink_budget = budget if shrink_budget is None else shrink_budget
        self.state: SearchState | None = None
        self.running = ""
        self.last = ""
        self._live: Any = None
        if live:
            from rich.live import Live
            self._live = Live(get_renderable=self._panel, refresh_per_second=2, transient=False,
                              console=_console())

    def __enter__(self) -> "ExploreDisplay":
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.stop()

    def started(self, number: int, attempt: int, case: Case) -> None:
        what = f"case {number} run {attempt}: {case.duration:g} s, {case.keys} key(s), {case.concurrency} client(s)"
        self.running = what
        if self._live is None:
            print(f"explore: {what}", file=sys.stderr, flush=True)

    def finished(self, tried: Tried, state: SearchState) -> None:
        self.state, self.running = state, ""
        verdicts = "/".join(a.verdict for a in tried.attempts) or tried.note or "-"
        faults = "; ".join(describe(tried.actions)) or "no fault fits"
        self.last = f"case {tried.number} ({tried.phase}): {tried.outcome.upper()} [{verdicts}] {faults}"
        if self._live is None:
            left = _left(state, self.budget, self.shrink_budget)
            print(f"explore: {self.last}  ({_counts(state)}, {left})", file=sys.stderr, flush=True)

    def _panel(self) -> Any:
        from rich.markup import escape
        from rich.panel import Panel
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        state = self.state
        grid.add_row("cases", _counts(state) if state else "none yet")
        if state is not None and state.failures:
            grid.add_row("shrinking", f"step {state.shrink_steps}: the last smaller failing case is case "
                                      f"{state.failures[-1].number}")
        grid.add_row("time", _left(state, self.budget, self.shrink_budget) if state else f"{self.budget:g} s budget")
        grid.add_row("running", escape(self.running or "-"))   # a verdict in [brackets] is not markup
        grid.add_row("last", escape(self.last or "-"))
        return Panel(grid, title="dynharness explore", expand=False)


def _counts(state: SearchState) -> str:
    parts = [f"{len(state.tried)} tried"] + [f"{state.count(o)} {o}" for o in ("fail", "flaky", "unknown", "rejected")
                                             if state.count(o)]
    return ", ".join(parts)


def _left(state: SearchState | None, budget: float, shrink_budget: float) -> str:
    """Time left of the search budget, or once a failure is confirmed, of the shrink budget."""
    if state is None:
        return ""
    used, found = state.elapsed(), state.shrink_started_s
    if found is not None:
        return f"shrinking: {max(0.0, shrink_budget - (used - found)):.0f} s of {shrink_budget:g} s left"
    return f"{max(0.0, budget - used):.0f} s of {budget:g} s left"


def _console() -> Any:
    from rich.console import Console
    return Console(stderr=True)
