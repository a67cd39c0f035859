"""``dynharness ls``: the stored runs with their verdicts and headline counts.

A run whose cluster is still up says so in the ``cluster`` column: running (its harness lives),
kept running (on purpose) or ORPHAN (its harness is gone: ``dynharness cleanup``), the why
(``ORPHAN <run folder>: owner pid N is gone``) on a line of its own under the table."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.text import Text

from harness.backends import cluster_state as cs
from harness.cli.check import format_count
from harness.limits import MAX_LISTED, number
from harness.cli.table_fit import FitColumn, fitted_table
from harness.run_index import VERDICTS, RunFilter, RunSummary, build_filter, list_runs
from harness.runs import histories_root


ORPHAN = "ORPHAN"
COLOUR = {"valid": "green", "invalid": "red", "unknown": "yellow", "failed": "red", "incomplete": "yellow"}
#: The columns of ``ls``; in a narrow terminal the highest priority goes first. A run's default name
#: says its workload, mode and faults (``cart-lww-partition``), so N/R/W is kept longer than they are.
COLUMNS = (FitColumn("name"), FitColumn("time", 1), FitColumn("workload", 4), FitColumn("mode", 4),
           FitColumn("N/R/W", 2), FitColumn("faults", 3, wrap=True), FitColumn("ops", 6, justify="right"),
           FitColumn("verdict"), FitColumn("cluster", 1), FitColumn("summary", 5, wrap=True))


def run_filter(args: argparse.Namespace, runs: list[RunSummary]) -> RunFilter:
    """The filters from the command line, checked: a workload or fault neither registered nor in a
    stored run, an unknown verdict or a date that does not parse is bad input (one line, exit 3)."""
    from harness.workloads import names as workload_names
    from nemeses.fault_kind import names as fault_names

    return build_filter(name=args.name, workload=args.workload, fault=args.nemesis, verdicts=args.verdict,
                        since=args.since, known_workloads={*workload_names(), *(r.workload for r in runs)},
                        known_faults={*fault_names(), *(f for r in runs for f in r.faults)})


def cmd_ls(args: argparse.Namespace) -> int:
    from rich.console import Console

    if args.last is not None:
        number("--last", args.last, 1, MAX_LISTED, integer=True)
    root = histories_root(args.histories)
    stored = list_runs(root)
    wanted = run_filter(args, stored)
    runs = [r for r in stored if wanted.matches(r)]
    if args.last is not None:
        runs = runs[-args.last:]
    if not runs:
        print(f"no stored runs under {root}" + (f" match (of {len(stored)})" if stored else ""))
        return 0
    console = Console()
    rows, notes = [], []
    for r in runs:
        cluster, why = cluster_note(r.path)
        if why:
            notes.append((cluster, f"{cluster} {r.path}: {why}"))
        rows.append((r.test, r.started, r.workload, r.store, r.nrw or "-", r.faults_text,
                     str(r.ops if r.ops is not None else "?"), Text(r.verdict, COLOUR.get(r.verdict, "")),
                     Text(cluster, "red" if cluster == ORPHAN else ""),
                     ", ".join(f"{k}={format_count(v)}" for k, v in r.summary.items())))
    columns = [c for i, c in enumerate(COLUMNS) if c.header != "cluster" or any(row[i].plain for row in rows)]
    if len(columns) < len(COLUMNS):
        rows = [row[:8] + row[9:] for row in rows]
    title = f"runs in {root}" + (f" ({len(runs)} of {len(stored)})" if len(runs) < len(stored) else "")
    console.print(fitted_table(columns, rows, console.width, title=title))
    for _, line in notes:   # whole, whatever the width: a path and a pid to act on
        print(line)
    orphans = sum(1 for word, _ in notes if word == ORPHAN)
    if orphans:
        print(f"{orphans} run(s) left an orphaned cluster: `dynharness cleanup` removes them")
    return 0


def cluster_note(run_dir: Path) -> tuple[str, str]:
    """What is left of a run's cluster, in a word ("" torn down or none, running, kept running,
    ORPHAN, elsewhere, up?) and, when the word needs it, why (``owner pid N is gone``)."""
    doc = cs.load(run_dir / cs.STATE_FILE)
    if doc is None or doc.get("stopped"):
        return "", ""
    owner = doc.get("owner")
    status = cs.owner_status(owner)
    return {cs.ALIVE: ("running", ""), cs.KEPT: ("kept running", ""), cs.DEAD: (ORPHAN, cs.describe_owner(owner)),
            cs.ELSEWHERE: ("elsewhere", cs.describe_owner(owner)), cs.UNKNOWN: ("up?", "no owner recorded")}[status]


def register(sub: Any) -> None:
    p = sub.add_parser("ls", help="list stored runs and their verdicts",
                       description="List stored runs (histories/<name>/<time>/): workload, mode, N/R/W, faults, "
                                   "verdict. In a narrow terminal the least important columns are left out "
                                   "(the table says which).",
                       epilog="examples:\n  dynharness ls --workload cart --verdict invalid\n"
                              "  dynharness ls --name 'cart-lww-*' --nemesis partition --since 2d\n"
                              "  dynharness ls --since 2026-01-31 --last 5",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--histories", metavar="DIR", help="where runs are stored (default histories/)")
    p.add_argument("--name", metavar="GLOB", help="only runs whose name matches (e.g. 'cart-*', 'register-etcd-*')")
    p.add_argument("--test", dest="name", help=argparse.SUPPRESS)   # its old name
    p.add_argument("--workload", metavar="NAME", help="only runs of this workload (cart, register, session, ...)")
    p.add_argument("--nemesis", metavar="FAULT", help="only runs with this fault (partition, crash, ...; "
                                                      "none: runs without faults)")
    p.add_argument("--verdict", metavar="V[,V]", help=f"only runs with these verdicts ({', '.join(VERDICTS)})")
    p.add_argument("--since", metavar="DATE|AGE", help="only runs started since a UTC date (2026-01-31, "
                                                       "2026-01-31T12:00) or for an age (30m, 2h, 7d)")
    p.add_argument("--last", metavar="N", type=int, help="only the N most recent runs (after the filters)")
    p.set_defaults(func=cmd_ls)
