"""The lazy disk daemon's control channel: one command per connection on a unix socket.

Both ends live here: :func:`send` (the harness, or inside a container the command line below)
and the socket address rules (``@name``: Linux's abstract namespace, no file to leave behind;
one namespace per network namespace, so a container's disks are reached from inside it).
Standard library only, so it runs anywhere the node runs, without the FUSE binding.

``python -m harness.backends.lazyfs_control CONTROL COMMAND [--wait SECONDS]`` sends one command
and prints the JSON answer: how the Docker backend talks to a disk inside a node's container.
With ``--wait`` it retries until the daemon answers (it answers once the mount is up), or until
the process ``--pid`` (the daemon) is gone; exit 1 when no answer came.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import Any


def address(control: str) -> str:
    """The socket address of a control name (``@name``: abstract namespace; else a path)."""
    return "\0" + control[1:] if control.startswith("@") else control


def send(control: str, line: str, timeout: float = 30.0) -> dict[str, Any]:
    """Send one command, return its JSON answer (OSError when no daemon answers)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address(control))
        s.sendall(line.encode() + b"\n")
        answer = s.makefile("r").readline()
    if not answer:
        raise OSError(f"no answer to {line!r} on {control}")
    return json.loads(answer)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.backends.lazyfs_control", description=__doc__.split("\n")[0])
    ap.add_argument("control", help="the daemon's control socket (@name: abstract namespace)")
    ap.add_argument("command", nargs="+", help="status | power-loss [torn]")
    ap.add_argument("--wait", type=float, default=0.0, help="retry this long until the daemon answers")
    ap.add_argument("--pid", type=int, help="stop waiting once this process (the daemon) is gone")
    args = ap.parse_args(argv)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            answer = send(args.control, " ".join(args.command))
            break
        except (OSError, ValueError) as e:
            if time.monotonic() >= deadline or (args.pid and not os.path.exists(f"/proc/{args.pid}")):
                print(f"lazy disk control {args.control}: {e}", file=sys.stderr)
                return 1
            time.sleep(0.05)
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
