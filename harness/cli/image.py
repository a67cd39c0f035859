"""``dynharness image build``: build (or confirm the cache of) the node image, without a registry.

Shows each step while it runs and how long it took: debootstrap + import of
the base (or ``--base-image`` + apt where a registry is reachable), the
node's Python wheels, and the layer with the node code. Steps whose result
is cached by the recipe hash are reported as cached.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from harness import plugins
from harness.backends.image import ImageRecipe, ensure_image
from harness.limits import seconds


def cmd_image_build(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.backends.docker_cluster import connect_engine

    console = Console(stderr=True)
    recipe = ImageRecipe.for_target(plugins.target(args.target), args.base_image, args.mirror or "")
    client = connect_engine(timeout=seconds("--timeout", args.timeout))
    started = time.monotonic()
    try:
        with console.status("connecting", spinner="dots") as status:
            def on_step(step: str, line: str) -> None:
                if line.startswith("done"):
                    console.print(f"[green]✓[/] {step}: {line}")
                else:
                    status.update(f"{step}: {line}")
            build = ensure_image(client, recipe, force=args.force, on_step=on_step)
    finally:
        client.close()
    table = Table(title=f"node image {build.tag}")
    for col in ("step", "seconds", "result"):
        table.add_column(col)
    for s in build.steps:
        table.add_row(s.name, f"{s.seconds:.1f}", "cached" if s.cached else (s.detail or "built"))
    table.add_row("total", f"{time.monotonic() - started:.1f}", "cached" if build.cached else "built")
    Console().print(table)
    if build.removed:
        console.print(f"removed {len(build.removed)} image(s) the rebuild replaced")
    print(build.tag)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("image", help="build the node image for the Docker backend",
                       description="Build the node image locally (debootstrap + docker import, no registry).")
    isub = p.add_subparsers(dest="image_command", metavar="ACTION")
    b = isub.add_parser("build", help="build the node image (cached by a hash of its recipe and the node code)",
                        epilog="examples:\n  dynharness image build\n  dynharness image build --force\n"
                               "  dynharness image build --target etcd   # with etcd-server\n"
                               "  dynharness image build --base-image debian:bookworm-slim   # where a registry is reachable",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--base-image", metavar="IMG", help="build FROM this image with apt instead of debootstrap")
    b.add_argument("--mirror", metavar="URL", help="Debian mirror for debootstrap (default: the one apt uses here)")
    b.add_argument("--target", default=plugins.DEFAULT_TARGET, metavar="KIND",
                   help="the store the image is for: its Debian packages are added (default dynamo; etcd)")
    b.add_argument("--force", action="store_true",
                   help="rebuild every step, ignoring the cache, and remove the images it replaces")
    b.add_argument("--timeout", type=float, default=120.0, metavar="S", help="timeout of each Docker call (default 120)")
    b.set_defaults(func=cmd_image_build)
    p.set_defaults(func=lambda args: (p.print_help(), 3)[1])
