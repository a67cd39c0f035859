"""``dynharness ls``: the stored runs with their verdicts and headline counts.

A run whose cluster is still up says so in the ``cluster`` column: running (its harness lives),
kept (left running on purpose) or ORPHAN (its harness is gone: ``dynharness cleanup``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.backends import cluster_state as cs
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
    for col in ("test", "run", "workload", "ops", "verdict", "cluster", "summary"):
        table.add_column(col, overflow="fold")
    orphans = 0
    for r in runs:
        summary = ", ".join(f"{k}={format_count(v)}" for k, v in r.summary.items())
        cluster = cluster_note(r.path)
        orphans += cluster.startswith("ORPHAN")
        table.add_row(r.test, r.started, r.workload, str(r.ops if r.ops is not None else "?"),
                      f"[{colour.get(r.verdict, 'white')}]{r.verdict}[/]",
                      f"[red]{cluster}[/]" if cluster.startswith("ORPHAN") else cluster, summary)
    Console().print(table)
    if orphans:
        print(f"{orphans} run(s) left an orphaned cluster: `dynharness cleanup` removes them")
    return 0


def cluster_note(run_dir: Path) -> str:
    """What is left of a run's cluster: "" (torn down, or none), running, kept, ORPHAN (why)."""
    doc = cs.load(run_dir / cs.STATE_FILE)
    if doc is None or doc.get("stopped"):
        return ""
    owner = doc.get("owner")
    status = cs.owner_status(owner)
    return {cs.ALIVE: "running", cs.KEPT: "kept running", cs.DEAD: f"ORPHAN: {cs.describe_owner(owner)}",
            cs.ELSEWHERE: cs.describe_owner(owner), cs.UNKNOWN: "up? (no owner recorded)"}[status]


def register(sub: Any) -> None:
    p = sub.add_parser("ls", help="list stored runs and their verdicts",
                       description="List stored runs (histories/<test>/<time>/) with verdicts.",
                       epilog="example: dynharness ls --test demo --last 5")
    p.add_argument("--histories", metavar="DIR", help="where runs are stored (default histories/)")
    p.add_argument("--test", metavar="NAME", help="only runs of this test")
    p.add_argument("--last", metavar="N", type=int, help="only the N most recent runs")
    p.set_defaults(func=cmd_ls)
