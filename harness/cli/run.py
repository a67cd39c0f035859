"""``dynharness run``: run one test from a spec file and/or flags.

Every spec field is a flag (``--set dotted.key=value`` reaches the rest);
flags override the file. With no arguments it runs the 30 s demo: 5 local
nodes, N=3 R=2 W=2, the cart workload, random partitions.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness import plugins
from harness.errors import UserError
from harness.runs import histories_root
from harness.spec import load_spec, parse_value, unscheduled_faults

#: flag dest -> dotted spec name
FLAG_FIELDS = {
    "name": "name", "backend": "backend", "nodes": "nodes", "seed": "seed", "duration": "duration",
    "rate": "rate", "concurrency": "concurrency", "recovery": "recovery",
    "final_read_timeout": "final_read_timeout", "client_timeout": "client_timeout",
    "histories": "histories", "replay_schedule": "replay_schedule",
    "workload": "workload.name", "keys": "workload.keys", "key_dist": "workload.key_dist",
    "n": "target.n", "r": "target.r", "w": "target.w", "pr": "target.pr", "pw": "target.pw",
    "mode": "target.mode", "fsync": "target.fsync", "target": "target.kind",
    "nemesis_interval": "nemesis.interval", "partition": "nemesis.partition",
}

EXAMPLES = """examples:
  dynharness run                                         # the 30 s demo
  dynharness run --spec examples/riak-lww.toml --seed 7  # a spec file, seed overridden
  dynharness run --mode lww --nemesis partition --duration 60
  dynharness run --workload register --keys 5 --nemesis none --n 3 --r 1 --w 1
  dynharness run --blind --nemesis none --set target.sibling_max=1000
  dynharness run --replay-schedule histories/latest      # same faults at the same times
  dynharness run --spec histories/latest/spec.json       # the stored run's test again (same seed)
"""


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted spec overrides from parsed flags (flags not given are absent)."""
    out: dict[str, Any] = {}
    for dest, dotted in FLAG_FIELDS.items():
        v = getattr(args, dest, None)
        if v is not None:
            out[dotted] = v
    for flag, dotted in (("blind", "workload.blind"), ("leave_running", "leave_running"),
                         ("allow_unscheduled", "nemesis.allow_unscheduled")):
        if getattr(args, flag, False):   # flags a command without them (explore) does not define
            out[dotted] = True
    if args.nemesis is not None:
        names = [f.strip() for f in args.nemesis.split(",") if f.strip()]
        out["nemesis.faults"] = [] if names in ([], ["none"]) else names
    for item in args.set or ():
        if "=" not in item:
            raise UserError(f"--set expects dotted.key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from harness.cli.check import print_fault_table, print_verdict_table
    from harness.runner import run_test

    spec = load_spec(args.spec, overrides_from_args(args))
    display: bool | str = "plain" if args.no_display or not sys.stderr.isatty() else True
    target = plugins.target(spec.target_kind)
    print(f"dynharness: running {spec.name!r}: {spec.workload.name} on {spec.nodes} {spec.backend} nodes, "
          f"{target.summary(spec.target_settings)}, "
          f"faults={','.join(spec.faults) or 'none'}, {spec.duration:g}s, seed {spec.seed}", file=sys.stderr)
    note_orphans(histories_root(spec.histories))
    missing = unscheduled_faults(spec)
    if missing:
        print(f"dynharness: warning: no room in the schedule for {', '.join(missing)}: "
              f"{'it' if len(missing) == 1 else 'they'} will not happen in this run (nemesis.allow_unscheduled)",
              file=sys.stderr)
    outcome = run_test(spec, display=display, target=target)
    if outcome.error:
        sys.stderr.write(f"dynharness: error: run failed: {outcome.error} (run folder {outcome.run_dir})\n")
        return outcome.exit_code
    print_fault_table(outcome.results)
    print_verdict_table(outcome.results, outcome.run_dir)
    if spec.leave_running:
        print(f"dynharness: the cluster is still running (state in {outcome.run_dir / 'cluster.json'}); "
              f"undo faults with `dynharness heal {outcome.run_dir}`, stop it with "
              f"`dynharness heal --teardown {outcome.run_dir}`",
              file=sys.stderr)
    return outcome.exit_code


def note_orphans(root: Path) -> None:
    """One line naming the clusters killed harnesses left (never touched here: `cleanup` does that)."""
    from harness.backends.orphans import find, summary_line
    try:
        found = find(root)
    except Exception:  # noqa: BLE001 - a look for leftovers must never stop a run
        return
    if found:
        print(f"dynharness: note: {summary_line(found)}", file=sys.stderr)


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a test (no arguments: a 30 s demo)",
                       description="Run one test: set up a cluster, drive clients and faults, check, store.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", metavar="FILE", help="test spec (TOML, or a stored run's spec.json); flags override its fields")
    g = p.add_argument_group("run")
    g.add_argument("--name", help="test name (runs are stored under histories/<name>/)")
    g.add_argument("--backend", choices=("local", "docker", "ssh"), help="where nodes run (default local)")
    g.add_argument("--nodes", type=int, metavar="K", help="number of nodes (default 5)")
    g.add_argument("--seed", type=int, help="random seed of ops and faults (default: random, recorded)")
    g.add_argument("--duration", type=float, metavar="S", help="seconds of client load (default 30)")
    g.add_argument("--rate", type=float, metavar="OPS", help="total ops per second over all clients (default 200)")
    g.add_argument("--concurrency", type=int, metavar="C", help="client workers (default 10)")
    g.add_argument("--recovery", type=float, metavar="S", help="seconds to wait after healing (default 5)")
    g.add_argument("--final-read-timeout", type=float, metavar="S", help="seconds to get every final read (default 30)")
    g.add_argument("--client-timeout", type=float, metavar="S", help="client request timeout (default 5)")
    g.add_argument("--leave-running", action="store_true", help="keep the cluster running after the run")
    g.add_argument("--histories", metavar="DIR", help="where runs are stored (default histories/)")
    g.add_argument("--no-display", action="store_true", help="plain progress lines instead of the live panel")
    g.add_argument("--no-live", dest="no_display", action="store_true", help=argparse.SUPPRESS)  # campaign's old name
    g = p.add_argument_group("target (the store under test and its settings)")
    g.add_argument("--target", metavar="KIND", help="the store under test: dynamo (default), etcd, or a "
                                                     "target plugin's name; its settings: --set target.KEY=VALUE")
    for flag, kind, text in (("n", int, "replicas per key"), ("r", int, "read quorum"), ("w", int, "write quorum"),
                             ("pr", int, "primary replicas a read needs"), ("pw", int, "primary replicas a write needs")):
        g.add_argument(f"--{flag}", type=kind, metavar=flag.upper(), help=text)
    g.add_argument("--mode", metavar="MODE", help="dynamo versioning: vclock, dvv or lww")
    g.add_argument("--fsync", metavar="WHEN", help="durability: fsync every commit, only one replica's per write (Dynamo 6.1), or none")
    g = p.add_argument_group("workload")
    g.add_argument("--workload", metavar="NAME", help="what clients do: cart (default), register, session, "
                                                       "or a workload plugin's name")
    g.add_argument("--keys", type=int, metavar="K", help="carts / registers / keys per session (default 10)")
    g.add_argument("--key-dist", choices=("uniform", "zipf"), help="key distribution (default uniform)")
    g.add_argument("--blind", action="store_true", help="cart: add without reading first")
    g = p.add_argument_group("nemesis")
    g.add_argument("--nemesis", metavar="F1,F2", help="faults: partition,clock,crash,wipe,pause,loss,latency,"
                                                          "power-loss, a nemesis plugin's, or none")
    g.add_argument("--nemesis-interval", type=float, metavar="S", help="seconds between fault changes (default 10)")
    g.add_argument("--partition", metavar="TOPOLOGY", help="partition topology (default random-halves)")
    g.add_argument("--allow-unscheduled", action="store_true",
                   help="run even if the duration has no room for some requested fault (it is named, "
                        "and will not happen); without it such a run is refused")
    g.add_argument("--replay-schedule", metavar="RUN_DIR", help="replay the nemesis schedule a stored run ran")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any spec field by dotted name, TOML value (repeatable), e.g. target.sibling_max=200")
    p.set_defaults(func=cmd_run)
