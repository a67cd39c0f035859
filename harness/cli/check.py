"""``dynharness check RUN_DIR``: re-run the checkers on a stored history.

Uses the same code as the end of a run (``harness.runs.check_run``), with
the workload and settings from the run's ``spec.json`` (a bare ``.jsonl``
history: the workload guessed from its ops); ``--checkers`` picks other
checkers. Prints the verdict table; the exit code is the
verdict's (0 valid, 1 invalid, 2 unknown). A run cut short (interrupted,
failed, its harness killed) is never valid: see ``harness.runs.cut_short``. A Jepsen
``history.edn`` (or a folder ``import-edn`` wrote) is checked by the checkers its ops call
for (``harness.imported``); ``--model`` and ``--set model.initial=V`` choose the
linearizability model.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from harness.errors import UserError
from harness.runs import EXIT_CODES


def print_verdict_table(results: Mapping[str, Any], run_dir: Path | None = None) -> None:
    """The verdict table at the end of a run / check: one row per checker, then the verdict.

    Only headline counts are shown (all counts are in ``results.json``).
    """
    from rich.console import Console
    from rich.table import Table

    colour = {"valid": "green", "invalid": "red", "unknown": "yellow", "failed": "red"}
    table = Table(title=f"results: {run_dir}" if run_dir else "results")
    table.add_column("checker")
    table.add_column("verdict")
    table.add_column("counts")
    table.add_column("reason", overflow="fold")
    from checkers.base import HEADLINE

    for name, r in (results.get("checkers") or {}).items():
        v = r.get("verdict", "unknown")
        all_counts = r.get("counts") or {}
        shown = {k: x for k, x in all_counts.items() if k in HEADLINE} or dict(list(all_counts.items())[:4])
        counts = ", ".join(f"{k}={_fmt(x)}" for k, x in shown.items())
        table.add_row(name, f"[{colour.get(v, 'white')}]{v}[/]", counts[:200], (r.get("reason") or "")[:300])
    for name, why in (results.get("skipped_checkers") or {}).items():  # harness.runs.applicable
        table.add_row(name, "[dim]not run[/]", "", str(why)[:300])
    console = Console()
    console.print(table)
    v = results.get("verdict", "unknown")
    summary = ", ".join(f"{k}={_fmt(x)}" for k, x in (results.get("summary") or {}).items())
    console.print(f"verdict: [bold {colour.get(v, 'white')}]{v}[/]" + (f"  ({summary})" if summary else ""))
    for key, label in (("cut_short", "run cut short"), ("run_error", "run error"),
                       ("final_reads_missing", "keys without a final read"), ("nemesis_errors", "nemesis errors"),
                       ("history_warnings", "history warnings"), ("cleanup_errors", "cleanup errors")):
        v = results.get(key)
        if v:
            text = v if isinstance(v, str) else ", ".join(map(str, v))
            console.print(f"[yellow]{label}:[/] {text[:500]}")


def print_fault_table(results: Mapping[str, Any]) -> None:
    """The faults as they actually ran (results' ``faults``): what each nemesis action did to whom
    (its ``did``, which names the action too; stored runs without it show the op name), how it was
    done, and its probe.

    A fault whose probe failed is shown as such: the run output must never
    suggest a fault took effect when it did not. Times are when the fault took effect, then
    when its probe confirmed it (one number when they agree to 0.1 s).
    """
    from rich.console import Console
    from rich.text import Text

    from harness.cli.table_fit import FitColumn, fitted_table

    rows = results.get("faults") or []
    if not rows:
        return
    # what a fault did and its outcome never go; at 80 columns the mechanism first, then the probe
    columns = [FitColumn("t (s)", 0), FitColumn("fault", 0, wrap=True), FitColumn("via", 2),
               FitColumn("outcome", 0), FitColumn("probe", 1, wrap=True)]
    cells = []
    for row in rows:
        probe = row.get("probe") or {}
        outcome = {"info": Text("done", "green"), "fail": Text("FAILED", "red")}.get(row["type"], Text(str(row["type"])))
        detail = str(probe.get("detail") or row.get("error") or "")
        if probe and not probe.get("ok"):
            detail = "not verified: " + detail
        eff, conf = row.get("effective"), row["t"]
        when = f"{conf:.2f}" if not isinstance(eff, (int, float)) or abs(conf - eff) < 0.1 else f"{eff:.2f}→{conf:.2f}"
        cells.append([when, str(row.get("did") or row["f"]), str(row.get("mechanism") or ""), outcome, detail[:160]])
    console = Console()
    console.print(fitted_table(columns, cells, console.width, title="faults as they ran"))


def _fmt(x: Any) -> str:
    """A count for a table cell: floats to 4 significant digits, never in exponent form above 1000."""
    if isinstance(x, float):
        return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.4g}"
    return str(x)


format_count = _fmt


def cmd_check(args: argparse.Namespace) -> int:
    from harness import imported

    names = [n.strip() for n in args.checkers.split(",") if n.strip()] if args.checkers else None
    run, results = imported.check(args.run_dir, names, check_options(args), write=not args.no_write,
                                  independent=args.independent)
    print_fault_table(results)
    print_verdict_table(results, run.dir or Path(args.run_dir))
    return EXIT_CODES.get(results["verdict"], 2)


def check_options(args: argparse.Namespace) -> dict[str, Any]:
    """``[checkers]`` options from ``--model`` and ``--set model.initial=V`` / ``--set checkers.NAME=V``."""
    from harness.spec import parse_value

    out: dict[str, Any] = {}
    if args.model:
        out["linearizable_model"] = args.model
    for item in args.set or ():
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not (key == "model.initial" or (key.startswith("checkers.") and len(key) > 9)):
            raise UserError(f"--set expects model.initial=VALUE or checkers.OPTION=VALUE, got {item!r}")
        out["linearizable_model_initial" if key == "model.initial" else key[9:]] = parse_value(value.strip())
    return out


def register(sub: Any) -> None:
    p = sub.add_parser("check", help="re-run the checkers on a stored run or a Jepsen history",
                       description="Re-run the checkers on a stored history and print the verdict table.",
                       epilog="examples: dynharness check histories/latest --checkers lost-writes,siblings\n"
                              "          dynharness check history.edn --model kv\n"
                              "          dynharness check knossos.edn --model cas-register --set model.initial=0\n"
                              "          dynharness check history.edn --model mypkg.models:Queue",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run folder (e.g. histories/latest), a .jsonl history, or a Jepsen history.edn")
    p.add_argument("--checkers", metavar="A,B", help="checkers to run instead of the workload's own")
    p.add_argument("--model", metavar="NAME|module:Class",
                   help="linearizability model: auto, register, cas-register, kv, a registered plugin, "
                        "or a class on the import path")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="model.initial=VALUE (the model's initial value) or checkers.OPTION=VALUE; repeatable")
    p.add_argument("--independent", action=argparse.BooleanOptionalAction, default=None,
                   help="for a .edn: values are [key value] tuples (default: recognised from the ops)")
    p.add_argument("--no-write", action="store_true", help="do not overwrite results.json")
    p.set_defaults(func=cmd_check)
