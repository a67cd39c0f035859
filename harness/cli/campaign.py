"""``dynharness campaign``: run a matrix of tests (or a CI fault suite) with a live table.

Exit codes: 0 every expectation holds, 1 an expectation broke (each is
printed), 3 a cell could not run or bad input, 130 interrupted by SIGINT,
SIGTERM or SIGHUP (the running cell is healed, finished cells are kept;
``--resume DIR`` continues).
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.signals import stop_on_signals

STATE_STYLE = {"pending": "dim", "running": "bold cyan", "done": "green", "error": "bold red", "timeout": "bold red",
               "interrupted": "yellow"}
VERDICT_STYLE = {"valid": "green", "invalid": "red", "unknown": "yellow"}


def live_table(camp: Any, running: str | None, since: float) -> Any:
    """The rich table of cells: state, verdict, headline counts and expectations."""
    from rich.table import Table
    from rich.text import Text

    from harness.reports.summary import METRICS, expectation_text, label_axes, rows

    all_rows = rows(camp)
    axes = [a for a in label_axes(all_rows)]
    done = sum(1 for r in all_rows if r.state in ("done", "error", "timeout"))
    t = Table(title=f"campaign {camp.defn.name}: {done}/{len(all_rows)} cells · {camp.dir}", title_justify="left")
    for col in ("cell", *axes, "state", "verdict"):
        t.add_column(col, no_wrap=True)
    # only the metrics some cell measured (a register campaign has no lost writes column)
    shown = [i for i, (k, _, _) in enumerate(METRICS) if any(r.metrics.get(k) is not None for r in all_rows)]
    for i in shown:
        t.add_column(METRICS[i][1], justify="right", no_wrap=True)
    t.add_column("expect", no_wrap=True)
    for r in all_rows:
        state = r.state + (f" {time.monotonic() - since:.0f}s" if r.cell == running else "")
        exp = expectation_text(r)
        texts = r.cells_text()
        t.add_row(r.cell, *(str(r.labels.get(a, "")) for a in axes), Text(state, STATE_STYLE.get(r.state, "")),
                  Text(r.verdict or "-", VERDICT_STYLE.get(r.verdict or "", "")), *(texts[i] for i in shown),
                  Text(exp, "red" if r.expect_broken else ""))
    return t


def cmd_campaign(args: argparse.Namespace) -> int:
    """Run (or resume, or list) a campaign and return its exit code."""
    from rich.console import Console

    from harness.campaign import CampaignRun, load_campaign, validate_cells
    from harness.runs import histories_root

    histories = histories_root(args.histories)
    resume = None
    if args.resume:
        resume = CampaignRun.load(args.resume)
        defn = resume.defn
        if args.file or args.builtin:
            raise UserError("--resume takes the campaign from its folder; do not also give a file or --builtin")
    else:
        if bool(args.file) == bool(args.builtin):
            raise UserError("give exactly one of: a campaign FILE, --builtin NAME, --resume DIR")
        defn = load_campaign(args.file, builtin=args.builtin)
    only = args.cell or None
    if only:
        unknown = sorted(set(only) - {c.id for c in defn.cells})
        if unknown:
            raise UserError(f"no cell {unknown[0]!r} in campaign {defn.name} (cells: {', '.join(c.id for c in defn.cells)})")
    console = Console()
    if args.dry_run:
        return dry_run(defn, only, console)
    validate_cells(defn, only)
    with stop_on_signals():   # SIGINT, SIGTERM, SIGHUP: the running cell is stopped and healed, finished cells kept
        return _run_live(defn, args, histories, resume, only, console)


def _run_live(defn: Any, args: argparse.Namespace, histories: Path, resume: Any, only: Any, console: Any) -> int:
    """Run the campaign with the live table (or plain lines) and report its outcome."""
    from rich.console import Console

    from harness.campaign import run_campaign

    state: dict[str, Any] = {"running": None, "since": time.monotonic(), "camp": None}

    def on_update(camp: Any, running: str | None) -> None:
        prev = state["running"]
        state["camp"], state["running"] = camp, running
        if running:
            state["since"] = time.monotonic()
        if not live_on:
            if running:
                console.print(f"[cyan]running[/] {running}")
            elif prev and prev in camp.cells:
                r = camp.cells[prev]
                console.print(f"  {prev}: {r.state} {r.verdict or ''} ({r.seconds or 0:.0f} s) {r.error or ''}")

    live_on = console.is_terminal and not args.no_display
    if not console.is_terminal:
        console = Console(width=max(console.width, 240))  # CI logs: keep the summary table on one line per cell
    if live_on:
        from rich.live import Live

        with Live(console=console, refresh_per_second=1, get_renderable=lambda: (
                live_table(state["camp"], state["running"], state["since"]) if state["camp"] else "starting...")):
            camp = run_campaign(defn, histories=histories, resume=resume, on_update=on_update, only=only)
    else:
        camp = run_campaign(defn, histories=histories, resume=resume, on_update=on_update, only=only)
        console.print(live_table(camp, None, time.monotonic()))
    return report_outcome(camp, args, console)


def dry_run(defn: Any, only: list[str] | None, console: Any) -> int:
    """List the cells with their overrides, each checked exactly as its run would check it:
    an invalid cell is shown with its one-line error (exit 3), an allowed fault without room
    with the faults that will not happen."""
    from rich.markup import escape

    from harness.campaign import cell_specs
    from harness.spec import unscheduled_faults

    specs = cell_specs(defn, only)
    for c in defn.cells:
        if c.id not in specs:
            continue
        ov = " ".join(f"{k}={v}" for k, v in c.overrides.items())
        lines = [f"[bold]{c.id}[/]  {escape(ov)}"] + ([f"    expect: {escape('; '.join(c.expect))}"] if c.expect else [])
        spec = specs[c.id]
        missing = () if isinstance(spec, UserError) else unscheduled_faults(spec)
        if isinstance(spec, UserError):
            lines.append(f"    [bold red]invalid:[/] {escape(str(spec))}")
        elif missing:
            lines.append(f"    [yellow]will not happen (no room, allowed):[/] {', '.join(missing)}")
        for line in lines:
            console.print(line, soft_wrap=True)   # an error stays one line, whatever the width
    invalid = sum(isinstance(s, UserError) for s in specs.values())
    console.print(f"{len(specs)} cells" + (f", [bold red]{invalid} invalid[/]" if invalid else ""))
    return 3 if invalid else 0


def report_outcome(camp: Any, args: argparse.Namespace, console: Any) -> int:
    """Print what broke, copy JUnit / Markdown where asked, and return the exit code."""
    for path, name in ((args.junit, "junit.xml"), (args.markdown, "summary.md")):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(camp.dir / name, path)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write((camp.dir / "summary.md").read_text(encoding="utf-8") + "\n")
    for cid, e in camp.broken():
        console.print(f"[bold red]BROKEN[/] {cid}: {e['expect']} — {e['message']}")
    for cid, r in camp.cells.items():
        if r.state in ("error", "timeout"):
            console.print(f"[bold red]{r.state.upper()}[/] {cid}: {r.error}")
    code = camp.exit_code()
    console.print(f"campaign folder: {camp.dir}  (report: {camp.dir / 'index.html'})")
    if code == 130:
        console.print(f"interrupted; finished cells are kept. Continue with: dynharness campaign --resume {camp.dir}")
    elif code == 0:
        console.print("[green]all expectations hold[/]")
    return code


def register(sub: Any) -> None:
    """Add the ``campaign`` subcommand."""
    p = sub.add_parser("campaign", help="run a matrix of tests / a CI fault suite",
                       description="Run every cell of a campaign (TOML matrix of N/R/W, modes, workloads, faults), "
                                   "store each run, and write histories/campaigns/<name>/<time>/ with campaign.json, "
                                   "summary.md, junit.xml and index.html. See docs/campaigns.md.",
                       epilog="examples:\n  dynharness campaign --builtin riak-2013\n"
                              "  dynharness campaign --builtin ci-smoke --junit test-artifacts/ci-smoke.xml\n"
                              "  dynharness campaign my-matrix.toml --dry-run\n"
                              "  dynharness campaign --resume histories/campaigns/nrw-matrix/20260101T120000\n"
                              "exit codes: 0 expectations hold, 1 an expectation broke, 3 a cell failed to run,\n"
                              "  130 interrupted (SIGINT, SIGTERM or SIGHUP)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", help="campaign TOML file")
    p.add_argument("--builtin", metavar="NAME", help="a built-in campaign: riak-2013, nrw-matrix, ci-smoke")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted campaign folder (re-runs unfinished cells)")
    p.add_argument("--cell", action="append", metavar="ID", help="run only this cell (repeatable)")
    p.add_argument("--histories", metavar="DIR", help="where runs are stored (default histories/)")
    p.add_argument("--junit", metavar="PATH", help="also copy the JUnit XML here (for CI)")
    p.add_argument("--markdown", metavar="PATH", help="also copy the Markdown summary here")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their overrides, run nothing")
    p.add_argument("--no-display", action="store_true", help="plain progress lines instead of the live table")
    p.add_argument("--no-live", dest="no_display", action="store_true", help=argparse.SUPPRESS)  # its old name
    p.set_defaults(func=cmd_campaign)
