"""``dynharness cleanup``: remove what a killed harness left (orphaned clusters).

With run folders: tear down those runs' clusters (nodes, iptables chain and hooks, cgroups,
containers and network, remote daemons and run folders), refused while the run's owner lives.
Without: every orphan whose record names a dead owner (``harness.backends.orphans`` says where
they are looked for); ``--all-orphans`` adds leftovers that no record names, which may belong to
a live run of an older harness on this host, hence only when asked. ``--dry-run`` only lists.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness import optional
from harness.errors import UserError
from harness.runs import histories_root


def docker_client_or_none(timeout: float = 5.0) -> Any:
    """A Docker client when an engine answers (its orphans are looked for then), else None."""
    try:
        from harness.backends.docker_cluster import connect_engine
        return connect_engine(timeout)
    except (UserError, ImportError):
        return None


def _run_orphans(paths: list[str]) -> list[Any]:
    from harness.backends import cluster_state as cs
    from harness.backends.orphans import Orphan

    out = []
    for arg in paths:
        state = Path(arg) / cs.STATE_FILE if Path(arg).is_dir() else Path(arg)
        doc = cs.load(state)
        if doc is None:
            raise UserError(f"{arg}: no readable cluster state ({cs.STATE_FILE}) here")
        if doc.get("stopped"):
            print(f"{state.parent}: already torn down")
            continue
        status = cs.owner_status(doc.get("owner"))
        if status == cs.ALIVE:
            raise UserError(f"{state.parent}: {cs.describe_owner(doc.get('owner'))}: stop that run first "
                            f"(kill -TERM {doc['owner']['pid']})")
        if status == cs.ELSEWHERE:
            raise UserError(f"{state.parent}: {cs.describe_owner(doc.get('owner'))}: clean it up there")
        out.append(Orphan(f"{doc.get('backend', '?')} cluster of {state.parent}", cs.describe_owner(doc.get("owner")),
                          str(doc.get("backend", "?")), state=state))
    return out


def cmd_cleanup(args: argparse.Namespace) -> int:
    from harness.backends import orphans as orph

    if args.run_dirs and args.all_orphans:
        raise UserError("give run folders or --all-orphans, not both")
    client = None
    if args.run_dirs:
        found = _run_orphans(args.run_dirs)
    else:
        client = docker_client_or_none()
        found = orph.find(histories_root(args.histories), docker_client=client, unattributed=args.all_orphans)
        if client is None:
            why = optional.missing("docker", "finding them") or "no Docker engine answers"
            print(f"(Docker clusters not looked for: {why})")
    if not found:
        print("no orphaned clusters")
        return 0
    failed = 0
    for o in found:
        if args.dry_run:
            print(f"would remove {o.what}: {o.why}")
            continue
        try:
            orph.remove(o, docker_client=lambda: client or docker_client_or_none(30.0))
        except Exception as e:  # noqa: BLE001 - one failure must not stop the others; said in one line
            failed += 1
            sys.stderr.write(f"dynharness: could not remove {o.what}: {type(e).__name__}: {e}\n")
            continue
        print(f"removed {o.what}: {o.why}")
    if client is not None:
        client.close()
    return 3 if failed else 0


def register(sub: Any) -> None:
    p = sub.add_parser("cleanup", help="remove what a killed harness left (orphaned clusters)",
                       description="Remove orphaned clusters: those whose harness process is gone.",
                       epilog="examples:\n  dynharness cleanup --dry-run        # list orphans\n"
                              "  dynharness cleanup                  # remove every orphan a record attributes\n"
                              "  dynharness cleanup histories/demo/20250101T000000\n"
                              "  dynharness cleanup --all-orphans    # also DH- chains, cgroups, containers "
                              "no record names",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run folders (or cluster.json files) to clean up")
    p.add_argument("--all-orphans", action="store_true",
                   help="also remove leftovers no record names (they may be a live run of an older harness)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.add_argument("--histories", metavar="DIR", help="where runs are stored (default histories/)")
    p.set_defaults(func=cmd_cleanup)
