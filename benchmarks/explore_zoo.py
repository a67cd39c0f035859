"""Explore's reach: for each zoo bug that only a particular fault mix exposes, does a budgeted
``dynharness explore`` find it, how small is the shrunk reproducer, does it fail again on replay;
and on the clean store, does the same search find nothing.

Each bug gets the settings of its selftest scenario (targets/dynamo/zoo.py) but *not* its fixed
schedule: the search draws from a mix of fault kinds and must find the one that matters.

    python benchmarks/explore_zoo.py                          # every bug + the clean store, 10 min each
    python benchmarks/explore_zoo.py --bugs storage-drops-wal --budget 3m --replays 3
    python benchmarks/explore_zoo.py --out /tmp/explore-zoo.json

Prints one row per search as it finishes (and keeps them in --out): found or not, after how many
cases and seconds, shrink steps, the reproducer's fault actions and nodes, replays invalid / run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.explore.case import fault_actions  # noqa: E402
from nemeses.schedule import ScheduledAction  # noqa: E402

CALM = ["--set", "target.fsync=never", "--set", "final_read_timeout=10", "--recovery", "2"]
CART5 = ["--nodes", "5", "--workload", "cart", "--mode", "vclock", "--keys", "10", "--concurrency", "10",
         "--rate", "100"]
#: bug -> (the base spec's flags, the fault kinds the search may mix, the checker the bug shows in)
SEARCHES = {
    "storage-drops-wal": (["--nodes", "3", "--workload", "cart", "--mode", "vclock", "--keys", "10",
                           "--concurrency", "6", "--rate", "100"], "crash,partition", "lost-writes"),
    "handoff-skips-known": (CART5, "partition,crash", "lost-writes"),
    "unreachable-never-cleared": (CART5, "partition,crash", "lost-writes"),
    "tombstone-grace-ms": (CART5 + ["--set", "workload.mix={add = 6, remove = 1, read = 3, delete = 2}",
                                    "--set", "target.ae_interval=1.0", "--set", "target.tombstone_grace=20.0",
                                    "--recovery", "4"], "partition,crash", "resurrections"),
    "ae-always-in-sync": (["--nodes", "3", "--workload", "cart", "--mode", "vclock", "--keys", "50",
                           "--concurrency", "4", "--rate", "60", "--set", "target.ae_interval=1.0",
                           "--recovery", "8"], "partition,crash", "convergence"),
}


def explore(bug: str | None, flags: list[str], faults: str, checker: str, args: argparse.Namespace,
            histories: Path) -> dict:
    cmd = [sys.executable, "-m", "harness", "explore", *CALM, *flags, "--nemesis", faults,
           "--checkers", checker, "--budget", args.budget, "--shrink-budget", args.shrink_budget,
           "--max-run", args.max_run, "--replays", str(args.replays), "--histories", str(histories), "--no-display"]
    if bug:
        cmd += ["--set", f"target.bug={bug}"]
    began = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    took = time.monotonic() - began
    folders = sorted((histories / "explore").glob("*"))
    summary = json.loads((folders[-1] / "explore.json").read_text())["summary"] if folders else {}
    log = [json.loads(x) for x in (folders[-1] / "search.jsonl").read_text().splitlines()] if folders else []
    first = next((c for c in log if c["outcome"] == "fail"), None)
    m = summary.get("minimal") or {}
    actions = [ScheduledAction.from_json(a) for a in m.get("schedule", [])]
    replays = summary.get("replays") or {}
    return {"bug": bug or "clean", "exit": p.returncode, "seconds": round(took), "cases": summary.get("cases"),
            "found_at_case": first and first["number"], "found_after_s": first and round(first["started_s"]),
            "shrink_steps": summary.get("shrink_steps"), "stopped": summary.get("stopped"),
            "fault_actions": fault_actions(actions) if m else None, "faults": m.get("faults"),
            "flaky": summary.get("flaky"), "replays": f"{replays.get('invalid')}/{replays.get('runs')}" if replays else None,
            "replays_per_candidate": {c["case"]: f"{c['invalid']}/{c['runs']}" for c in replays.get("candidates", [])},
            "folder": str(folders[-1]) if folders else None, "error": p.stderr.strip().splitlines()[-1:] if p.returncode == 3 else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bugs", help="comma-separated (default: all of them)")
    ap.add_argument("--no-clean", action="store_true", help="skip the clean-store search")
    ap.add_argument("--budget", default="10m")
    ap.add_argument("--shrink-budget", default="5m")
    ap.add_argument("--max-run", default="15")
    ap.add_argument("--replays", type=int, default=5)
    ap.add_argument("--out", default=None, help="append each row as JSON to this file")
    ap.add_argument("--histories", default=None, help="where the explore folders go (default: a temp dir)")
    args = ap.parse_args()
    histories = Path(args.histories or tempfile.mkdtemp(prefix="explore-zoo-"))
    bugs = [b.strip() for b in args.bugs.split(",")] if args.bugs else list(SEARCHES)
    todo = [(b, *SEARCHES[b]) for b in bugs] + ([] if args.no_clean else [
        (None, flags, faults, "") for flags, faults, _ in [SEARCHES[bugs[0]]]])   # clean: any invalid verdict
    print(f"explore folders under {histories}", flush=True)
    for bug, flags, faults, checker in todo:
        row = explore(bug, flags, faults, checker, args, histories)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
