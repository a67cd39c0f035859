"""``dynharness cluster up|status|down``: keep a Docker cluster between runs.

``up`` builds the node image if needed and creates the network and one idle
container per node (label ``dynharness.kept``); ``run --backend docker``
then starts its nodes in those containers with the run's settings instead of
creating and removing a cluster each time. ``down`` removes it; ``down --all``
removes everything labelled ``dynharness`` (what a killed harness left).
``status`` names each cluster's owner and flags orphans (their harness is gone),
Docker ones by their labels and local/SSH ones from the run folders under the
histories folder; ``dynharness cleanup`` removes orphans.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from harness.errors import UserError
from harness.limits import seconds
from harness.runs import histories_root


def _client(args: argparse.Namespace):
    from harness.backends.docker_cluster import connect_engine
    return connect_engine(timeout=seconds("--timeout", args.timeout))


def cmd_up(args: argparse.Namespace) -> int:
    from harness.backends.docker_cluster import cluster_containers, create_cluster, remove_clusters
    from harness.backends.image import ImageRecipe, ensure_image, progress_lines

    if not 1 <= args.nodes <= 50:
        raise UserError(f"--nodes must be between 1 and 50, got {args.nodes}")
    client = _client(args)
    try:
        t0 = time.monotonic()
        tag = args.image or ensure_image(client, ImageRecipe(base_image=args.base_image),
                                         on_step=progress_lines(lambda line: print(line, file=sys.stderr))).tag
        existing = cluster_containers(client, args.name)
        if existing:
            if all(c.status == "running" and c.image.tags and tag in c.image.tags for c in existing) \
                    and len(existing) == args.nodes:
                print(f"cluster {args.name} is already up ({len(existing)} nodes, {tag})")
                return 0
            remove_clusters(client, args.name)        # other size or an older image: recreate
        nodes = [f"n{i}" for i in range(1, args.nodes + 1)]
        ips = create_cluster(client, args.name, nodes, tag, run_id=f"cluster-{time.strftime('%Y%m%dT%H%M%S')}",
                             kept=True, subnet=args.subnet)
        print(f"cluster {args.name} up in {time.monotonic() - t0:.1f}s: "
              + ", ".join(f"{n}={ip}" for n, ip in ips.items()))
        print("runs with --backend docker now use it; `dynharness cluster down` removes it")
        return 0
    finally:
        client.close()


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.backends import cluster_state as cs
    from harness.backends.docker_cluster import list_clusters
    from harness.backends.orphans import find

    seconds("--timeout", args.timeout)      # bad input stays an error; a missing engine does not
    try:
        client = _client(args)
    except UserError as e:     # local and SSH orphans are still worth naming
        client = None
        print(f"(Docker clusters not listed: {e})")
    try:
        clusters = list_clusters(client) if client is not None else {}
        # those found by their labels are in the table; a state file's also covers a run killed on a kept cluster
        orphans = [o for o in find(histories_root(args.histories), docker_client=client) if not o.docker_cluster]
    finally:
        if client is not None:
            client.close()
    if client is not None and not clusters:
        print("no dynharness Docker clusters")
    elif clusters:
        table = Table(title="dynharness Docker clusters")
        for col in ("cluster", "kept", "owner", "image", "node", "container", "ip"):
            table.add_column(col)
        for name, info in sorted(clusters.items()):
            owner = "-" if info["kept"] else cs.describe_owner(info["owner"])
            if not info["kept"] and cs.owner_status(info["owner"]) == cs.DEAD:
                owner = f"[red]ORPHAN: {owner}[/]"
            for node, (status, ip) in sorted(info["nodes"].items()):
                table.add_row(name, "yes" if info["kept"] else "no (a run's)", owner, info["image"], node, status, ip)
        Console().print(table)
    for o in orphans:
        print(f"ORPHAN: {o.what}: {o.why}")
    if orphans or any(not i["kept"] and cs.owner_status(i["owner"]) == cs.DEAD for i in clusters.values()):
        print("`dynharness cleanup` removes orphaned clusters")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from harness.backends.docker_cluster import remove_clusters

    client = _client(args)
    try:
        containers, networks = remove_clusters(client, None if args.all else args.name)
    finally:
        client.close()
    what = "every dynharness cluster" if args.all else f"cluster {args.name}"
    print(f"removed {what}: {containers} container(s), {networks} network(s)")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("cluster", help="keep a Docker cluster up between runs",
                       description="Create, inspect and remove Docker clusters kept between runs.",
                       epilog="examples:\n  dynharness cluster up --nodes 5\n  dynharness cluster status\n"
                              "  dynharness cluster down --all     # also what a crashed harness left behind",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = p.add_subparsers(dest="cluster_command", metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default="default", help="cluster name (default: default)")
    common.add_argument("--timeout", type=float, default=30.0, metavar="S", help="timeout of each Docker call")
    up = csub.add_parser("up", parents=[common], help="create the cluster (builds the image if needed)")
    up.add_argument("--nodes", type=int, default=5, help="number of nodes n1..nN (default 5)")
    up.add_argument("--image", metavar="TAG", help="node image to use (default: build/cached dynharness/node)")
    up.add_argument("--base-image", metavar="IMG", help="build the image FROM this instead of debootstrap")
    up.add_argument("--subnet", metavar="CIDR", help="fixed subnet (default: a free 10.231.x.0/24)")
    up.set_defaults(func=cmd_up)
    st = csub.add_parser("status", parents=[common], help="list clusters, their owners, containers and IPs")
    st.add_argument("--histories", metavar="DIR", help="where runs are stored, for local/SSH orphans (default histories/)")
    st.set_defaults(func=cmd_status)
    down = csub.add_parser("down", parents=[common], help="remove the cluster")
    down.add_argument("--all", action="store_true", help="remove everything labelled dynharness")
    down.set_defaults(func=cmd_down)
    p.set_defaults(func=lambda args: (p.print_help(), 3)[1])
