"""``dynharness ls``: the stored runs with their verdicts and headline counts."""
from __future__ import annotations

import argparse
from typing import Any

from harness.cli.check import format_count
from harness.limits import MAX_LISTED, number
from harness.runs import histories_root, list_runs


def cmd_ls(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    if args.last is not None:
        number("--last", args.last, 1, MAX_LISTED, integer=True)
    root = histories_root(args.histories)
    runs = [r for r in list_runs(root) if not args.test or r.test == args.test]
    if args.last is not None:
        runs = runs[-args.last:]
    if not runs:
        print(f"no stored runs under {root}")
        return 0
    colour = {"valid": "green", "invalid": "red", "unknown": "yellow", "failed": "red", "incomplete": "yellow"}
    table = Table(title=f"runs in {root}")
    for col in ("test", "run", "workload", "ops", "verdict", "summary"):
        table.add_column(col, overflow="fold")
    for r in runs:
        summary = ", ".join(f"{k}={format_count(v)}" for k, v in r.summary.items())
        table.add_row(r.test, r.started, r.workload, str(r.ops if r.ops is not None else "?"),
                      f"[{colour.get(r.verdict, 'white')}]{r.verdict}[/]", summary)
    Console().print(table)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("ls", help="list stored runs and their verdicts",
                       description="List stored runs (histories/<test>/<time>/) with verdicts.",
                       epilog="example: dynharness ls --test demo --last 5")
    p.add_argument("--histories", metavar="DIR", help="where runs are stored (default histories/)")
    p.add_argument("--test", metavar="NAME", help="only runs of this test")
    p.add_argument("--last", metavar="N", type=int, help="only the N most recent runs")
    p.set_defaults(func=cmd_ls)
