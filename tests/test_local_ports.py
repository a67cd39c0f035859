"""The local backend's listening port: below the kernel's ephemeral range (where every outgoing
connection, another run's node's peer links included, takes its port), free on every node's
address, and a taken one skipped. Real sockets on loopback."""
from __future__ import annotations

import itertools
import socket
from pathlib import Path

from harness.backends import local_ports
from harness.backends.local_ports import LISTEN_PORTS, listen_port_range, pick_port

HOSTS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]


def test_ports_come_from_below_the_ephemeral_range(tmp_path: Path, monkeypatch) -> None:
    ephemeral = tmp_path / "ip_local_port_range"
    ephemeral.write_text("25000\t60999\n")
    monkeypatch.setattr(local_ports, "EPHEMERAL_RANGE", ephemeral)
    assert listen_port_range() == (LISTEN_PORTS[0], 25000)
    assert listen_port_range(span=2) == (LISTEN_PORTS[0], 24999)     # port+1 must stay below it too
    for _ in range(20):
        port = pick_port(HOSTS, span=2)
        assert LISTEN_PORTS[0] <= port and port + 1 < 25000
    ephemeral.write_text("40000 60999\n")                             # a higher range: LISTEN_PORTS' own end
    assert listen_port_range() == LISTEN_PORTS
    monkeypatch.setattr(local_ports, "EPHEMERAL_RANGE", tmp_path / "absent")
    assert listen_port_range() == LISTEN_PORTS


def test_a_port_taken_on_any_node_address_is_skipped(monkeypatch) -> None:
    with socket.socket() as taken:
        taken.bind((HOSTS[1], 0))
        taken.listen()
        busy = taken.getsockname()[1]
        draws = itertools.chain([busy, busy], range(LISTEN_PORTS[0], LISTEN_PORTS[1]))

        class Draw:
            def randrange(self, low, high):
                return next(draws)

        monkeypatch.setattr(local_ports, "listen_port_range", lambda span=1: (1024, 65536))
        monkeypatch.setattr(local_ports.random, "SystemRandom", Draw)
        got = pick_port(HOSTS)
    assert got != busy and got >= LISTEN_PORTS[0]
