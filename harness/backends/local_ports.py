"""Listening ports for the local backend's nodes: one port, free on every node's loopback address.

Split from :mod:`harness.backends.local` to keep that module to the node processes.
"""
from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Sequence

from harness.errors import UserError

#: Where listening ports are drawn from: below the kernel's ephemeral range. Every outgoing
#: connection takes a port from that range, and a node's peer connections leave from its own
#: address, which every local run shares (127.0.0.11, ...): a listening port picked there could
#: be taken by another run's connection between the pick and the node's bind (seen with
#: ``campaign --jobs 2``: "address already in use" on 127.0.0.12).
LISTEN_PORTS = (20000, 32768)
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def listen_port_range(span: int = 1) -> tuple[int, int]:
    """[low, high) of the ports :func:`pick_port` draws from: LISTEN_PORTS, ending where the
    host's ephemeral range starts when that is lower."""
    try:
        ephemeral_low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = LISTEN_PORTS[1]
    return LISTEN_PORTS[0], min(LISTEN_PORTS[1], ephemeral_low) - span + 1


def pick_port(hosts: Sequence[str], attempts: int = 50, span: int = 1) -> int:
    """A TCP port free on every host (all nodes listen on the same port), with the ``span - 1``
    ports after it free too (a target with ``ports_per_node`` > 1 uses them), drawn at random
    from :func:`listen_port_range` (two runs starting together rarely draw the same one, and a
    taken one is skipped)."""
    low, high = listen_port_range(span)
    draw = random.SystemRandom()
    for _ in range(attempts):
        if high > low:
            port = draw.randrange(low, high)
        else:                       # a host whose ephemeral range leaves nothing below it
            with socket.socket() as s:
                s.bind((hosts[0], 0))
                port = s.getsockname()[1]
        if port + span <= 65536 and all(_port_free(h, p) for h in hosts for p in range(port, port + span)):
            return port
    raise UserError(f"no TCP port free on all of {', '.join(hosts)} after {attempts} tries")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
