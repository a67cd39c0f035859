"""What a run shows while it goes: a rich live panel, or plain periodic lines.

The display only *reads*: the journal's in-memory ops (counted by outcome
since the last refresh), the nemesis worker's active faults, and the
backend's view of which node processes run. With a terminal and display on,
a ``rich.live.Live`` panel refreshes twice a second; otherwise (``--no-display``,
output piped, campaigns) one plain line goes to stderr every few seconds.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import Any, Callable, TextIO

from harness.history import HistoryJournal
from harness.ops import FAIL, INFO, NEMESIS, OK


class LiveDisplay:
    """Progress of one run; ``start``/``stop`` from the runner, ``phase`` as the lifecycle moves on."""

    def __init__(self, journal: HistoryJournal, *, duration: float, node_names: list[str],
                 is_running: Callable[[str], bool], active_faults: Callable[[], dict[str, Any]],
                 rich_panel: bool, title: str = "dynharness", stream: TextIO | None = None,
                 plain_interval: float = 5.0):
        self.journal = journal
        self.duration = duration
        self.node_names = node_names
        self.is_running = is_running
        self.active_faults = active_faults
        self.stream = stream or sys.stderr
        self.rich_panel = rich_panel and self.stream.isatty()
        self.title = title
        self.phase = "setup"
        self.plain_interval = plain_interval
        self._t0 = time.monotonic()
        self._main_t0: float | None = None
        self._seen = 0
        self._totals: Counter[str] = Counter()
        self._rates: dict[str, float] = {}
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_phase(self, phase: str) -> None:
        """Name the lifecycle phase shown (``main`` starts the elapsed/remaining clock)."""
        self.phase = phase
        if phase == "main" and self._main_t0 is None:
            self._main_t0 = time.monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="live-display", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _update(self) -> None:
        ops = self.journal.ops
        n = len(ops)
        new: Counter[str] = Counter()
        for o in ops[self._seen:n]:
            if o.process != NEMESIS and o.type in (OK, FAIL, INFO):
                new[o.type] += 1
        self._seen = n
        self._totals.update(new)
        now = time.monotonic()
        dt = max(1e-3, now - self._last)
        self._last = now
        self._rates = {t: new[t] / dt for t in (OK, FAIL, INFO)}

    def _clock(self) -> tuple[float, float]:
        if self._main_t0 is None:
            return 0.0, self.duration
        el = time.monotonic() - self._main_t0
        return el, max(0.0, self.duration - el)

    def _node_status(self) -> str:
        out = []
        for name in self.node_names:
            try:
                up = self.is_running(name)
            except Exception:  # noqa: BLE001 - a display must not crash the run
                up = False
            out.append(f"{name}:{'up' if up else 'DOWN'}")
        return " ".join(out)

    def _faults(self) -> str:
        try:
            faults = self.active_faults()
        except Exception:  # noqa: BLE001
            return "?"
        shown = []
        for name in sorted(faults):
            held = faults[name] if isinstance(faults[name], dict) else {}
            what, how = held.get("what") or name, held.get("mechanism")  # "what" names the fault itself
            shown.append(f"{what} ({how})" if how else str(what))
        return ", ".join(shown) or "none"

    def line(self) -> str:
        """One plain progress line (what non-TTY runs print)."""
        el, rem = self._clock()
        r, t = self._rates, self._totals
        return (f"[{self.phase}] {el:5.1f}s elapsed {rem:5.1f}s left | ops/s ok {r.get(OK, 0):.0f} "
                f"fail {r.get(FAIL, 0):.0f} info {r.get(INFO, 0):.0f} | total ok {t[OK]} fail {t[FAIL]} "
                f"info {t[INFO]} | faults: {self._faults()} | {self._node_status()}")

    def _panel(self) -> Any:
        from rich.panel import Panel
        from rich.table import Table

        el, rem = self._clock()
        r, t = self._rates, self._totals
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("phase", self.phase)
        grid.add_row("time", f"{el:.1f}s elapsed, {rem:.1f}s left of {self.duration:g}s")
        grid.add_row("ops/s", f"[green]ok {r.get(OK, 0):.0f}[/]  [red]fail {r.get(FAIL, 0):.0f}[/]  "
                              f"[yellow]info {r.get(INFO, 0):.0f}[/]")
        grid.add_row("total", f"[green]ok {t[OK]}[/]  [red]fail {t[FAIL]}[/]  [yellow]info {t[INFO]}[/]")
        grid.add_row("faults", self._faults())
        grid.add_row("nodes", self._node_status())
        return Panel(grid, title=self.title, expand=False)

    def _loop(self) -> None:
        if self.rich_panel:
            from rich.console import Console
            from rich.live import Live

            with Live(self._panel(), console=Console(file=self.stream), refresh_per_second=4,
                      transient=False) as live:
                while not self._stop.wait(0.5):
                    self._update()
                    live.update(self._panel())
                self._update()
                live.update(self._panel())
            return
        while not self._stop.wait(self.plain_interval):
            self._update()
            print(self.line(), file=self.stream, flush=True)
