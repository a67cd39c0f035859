"""``dynharness selftest``: run the target's bug zoo and the clean store through their scenarios.

Exit codes: 0 every bug caught in every seed by some scenario and the clean store never flagged,
1 a bug missed (or only waiting for a plug-in) or the clean store flagged, 3 a cell could not run
or bad input, 130 interrupted (``--resume DIR`` continues).
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from harness.errors import UserError
from harness.signals import stop_on_signals


def _names(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def cmd_selftest(args: argparse.Namespace) -> int:
    """Plan (or resume) the selftest campaign, run it with progress lines, print the table."""
    from rich.console import Console
    from rich.table import Table

    from harness import selftest
    from harness.campaign import CampaignRun, run_campaign, validate_cells
    from harness.runs import histories_root

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200))   # logs: one line per table row
    histories = histories_root(args.histories)
    if args.resume:
        if args.bugs or args.target:
            raise UserError("--resume takes everything from the selftest folder; do not also give --bugs or --target")
        resume = CampaignRun.load(args.resume)
        kind = selftest.described(resume.defn)["target"]
        defn = resume.defn
    else:
        resume = None
        kind = args.target or "dynamo"
        defn = selftest.plan(kind, _names(args.bugs), seeds=args.seeds, repeat=args.repeat, clean=not args.no_clean,
                             buggy=not args.only_clean)
    zoo = selftest.zoo_of(kind)
    if args.dry_run:
        for cell in defn.cells:
            console.print(f"[bold]{cell.id}[/]  expect: {cell.expect[0]}")
        for row in selftest.table(CampaignRun(defn, histories, {}, ""), zoo):
            if row.waiting:
                console.print(f"[yellow]{row.bug} / {row.scenario}[/]: {row.outcome()} (not run)")
        console.print(f"{len(defn.cells)} runs")
        return 0
    validate_cells(defn)
    total, started = len(defn.cells), time.monotonic()
    shown: dict[str, str] = {}

    def progress(camp: Any, running: str | None) -> None:
        done = sum(1 for r in camp.cells.values() if r.state in ("done", "error", "timeout"))
        if running:
            console.print(f"[cyan][{done + 1}/{total}][/] {running}  ({time.monotonic() - started:.0f} s)")
            shown["last"] = running
            return
        last = shown.pop("last", None)
        if last and last in camp.cells:
            r = camp.cells[last]
            why = ", ".join(selftest.invalid_checkers(r.run_dir)) if r.verdict == "invalid" else (r.error or "")
            console.print(f"    {r.state} {r.verdict or ''} {why} ({r.seconds or 0:.0f} s)")

    with stop_on_signals():   # SIGINT, SIGTERM, SIGHUP: the running cell is stopped and healed, finished ones kept
        camp = run_campaign(defn, histories=histories, resume=resume, on_update=progress)
    rows = selftest.table(camp, zoo)
    text = selftest.markdown(rows, zoo)
    (camp.dir / "selftest.md").write_text(text, encoding="utf-8")
    out = Table(title=f"selftest of the {kind} bug zoo", title_justify="left")
    for col in ("bug", "scenario", "outcome", "caught by"):
        out.add_column(col, no_wrap=col != "caught by")
    for r in rows:
        style = "green" if r.ok else ("yellow" if r.waiting else "bold red")
        out.add_row(r.bug, r.scenario, f"[{style}]{r.outcome()}[/]", ", ".join(sorted(r.checkers)) or "-")
    console.print(out)
    console.print(text.strip().splitlines()[-1])
    code = selftest.exit_code(camp, rows)
    console.print(f"selftest folder: {camp.dir}  (table: {camp.dir / 'selftest.md'})")
    if code == 130:
        console.print(f"interrupted; finished runs are kept. Continue with: dynharness selftest --resume {camp.dir}")
    return code


def register(sub: Any) -> None:
    """Add the ``selftest`` subcommand."""
    p = sub.add_parser(
        "selftest", help="start the store with each bug of its zoo and check the harness catches it",
        description="For each chosen bug of the target's bug zoo, run the scenarios meant to expose it (one "
                    "short seeded run per seed), and the clean store through the same scenarios. Prints bug / "
                    "scenario / caught by which checker / missed, and whether the clean store was flagged. "
                    "Runs are a campaign stored under histories/campaigns/selftest/. See docs/bug-zoo.md.",
        epilog="examples:\n  dynharness selftest                              # every bug, 3 seeds, clean store too\n"
               "  dynharness selftest --bugs read-returns-first-reply,ring-wrap-truncated --seeds 1\n"
               "  dynharness selftest --repeat 7                   # and 3 x 7 = 21 clean-store runs per scenario\n"
               "exit codes: 0 all caught and clean, 1 a bug missed or the clean store flagged, 3 a run failed, "
               "130 interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", metavar="KIND", help="the store whose zoo to run (default dynamo)")
    p.add_argument("--bugs", metavar="A,B", help="only these bugs (default: all of the zoo)")
    p.add_argument("--seeds", type=int, default=3, metavar="S", help="runs per bug and scenario, seeds 1..S (default 3)")
    p.add_argument("--repeat", type=int, default=1, metavar="K",
                   help="clean-store runs per scenario are S x K (seeds 1..S*K; default 1)")
    p.add_argument("--no-clean", action="store_true", help="skip the clean-store runs")
    p.add_argument("--only-clean", action="store_true",
                   help="only the clean-store runs (of the chosen bugs' scenarios): false positives")
    p.add_argument("--histories", metavar="DIR", help="where runs are stored (default histories/)")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted selftest folder")
    p.add_argument("--dry-run", action="store_true", help="list the runs it would make, run nothing")
    p.set_defaults(func=cmd_selftest)
