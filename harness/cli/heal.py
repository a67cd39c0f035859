"""``dynharness heal``: undo every fault on a running cluster.

For a cluster a run left running (``leave_running``), a harness that was
killed before it could heal, or a cluster you faulted by hand: re-attaches
through the cluster state file (``<run_dir>/cluster.json``) and resumes
paused nodes, starts killed ones, flushes the run's iptables chain, resets
every libfaketime clock file to +0 and clears in-process transport faults,
printing each thing it did, then checks the cluster is clean.

``--teardown`` then stops the cluster and removes what its backend created
(node processes and iptables chain locally; containers and network on
Docker): the way to end a cluster kept with ``--leave-running``.

A cluster whose harness was killed (its recorded owner is dead: ``cluster_state``) is an
orphan: healing it would restart nodes nobody stops again, so ``heal`` tears it down instead,
and says so, unless ``--resurrect`` asks to heal it and keep it running (it is then recorded
as kept, to be ended with ``heal --teardown`` or ``cleanup``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.backends import cluster_state as cs
from harness.errors import UserError
from harness.runs import histories_root


def cmd_heal(args: argparse.Namespace) -> int:
    from harness.backends import attach
    from nemeses.compose import heal_cluster

    if args.cluster and args.run_dir:
        raise UserError("give a run folder or --cluster STATE, not both")
    state = Path(args.cluster) if args.cluster else Path(args.run_dir or histories_root() / "latest")
    if state.is_dir():
        state = state / "cluster.json"
    if not state.exists():
        raise UserError(f"{state}: no cluster state here (is this a run folder of a cluster that was set up?)")
    doc = cs.load(state) or {}   # attach() reports an unreadable file in one line
    backend = attach(state)
    if doc.get("stopped"):
        print(f"cluster of {state.parent} was torn down: nothing to heal")
        return 0
    owner = doc.get("owner")
    status = cs.owner_status(owner)
    if status == cs.DEAD and not args.resurrect:
        print(f"the {backend.name} cluster of {state.parent} is an orphan ({cs.describe_owner(owner)}): "
              "tearing it down rather than restarting nodes nobody would stop (--resurrect heals and keeps it)")
        backend.teardown()
        print(f"torn down: the {backend.name} cluster of {state.parent} is stopped and removed")
        return 0
    print(f"healing the {backend.name} cluster of {state.parent} ({len(backend.nodes())} nodes, "
          f"{cs.describe_owner(owner)})")
    probe = heal_cluster(backend, backend.target)
    print(("healed: " if probe.ok else "NOT healed: ") + probe.detail)
    if status == cs.DEAD and not args.teardown:
        cs.set_owner(state, cs.current_owner(kept="heal --resurrect"))
        print(f"kept running on purpose now; stop it with `dynharness heal --teardown {state.parent}`")
    if args.teardown:
        backend.teardown()
        print(f"torn down: the {backend.name} cluster of {state.parent} is stopped and removed")
    return 0 if probe.ok else 3


def register(sub: Any) -> None:
    p = sub.add_parser("heal", help="undo every fault on a running cluster",
                       description="Re-attach to a running cluster and undo all faults: resume paused nodes, "
                                   "start killed ones, flush iptables rules, reset clocks, clear in-process faults.",
                       epilog="examples:\n  dynharness heal                       # the cluster of histories/latest\n"
                              "  dynharness heal histories/demo/20250101T000000\n"
                              "  dynharness heal --cluster /path/to/cluster.json\n"
                              "  dynharness heal --teardown             # heal, then stop and remove the cluster",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="run folder (default histories/latest)")
    p.add_argument("--cluster", metavar="STATE", help="a cluster state file (cluster.json) instead of a run folder")
    p.add_argument("--teardown", action="store_true",
                   help="after healing, stop the cluster and remove what its backend created")
    p.add_argument("--resurrect", action="store_true",
                   help="heal an orphan (its harness is gone) and keep it running, instead of tearing it down")
    p.set_defaults(func=cmd_heal)
