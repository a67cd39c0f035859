"""``EtcdTarget``: how the harness starts and talks to real etcd (Debian's ``etcd-server``).

Implements ``targets.adapter.Target``. Each node is one ``etcd`` process in the foreground with
two ports on its own host: the client port the backend gives (``port``) and the raft peer port
``port + 1`` (hence ``ports_per_node = 2``). ``peers`` maps node names to their client
``host:port``; the peer URLs are derived from it, so every node builds the same
``--initial-cluster`` and the same cluster token.

Settings (``[target]`` table of a spec):

* ``reads``: ``linearizable`` (default; a range goes through raft's ReadIndex, so it fails without
  a quorum) or ``serializable`` (answered from the member's local state: fast, available in a
  minority, and allowed to be stale: the setting the register checker should catch);
* ``heartbeat_ms`` / ``election_ms``: raft's tick and election timeout (etcd's own defaults,
  100 / 1000). etcd refuses to start unless ``election_ms >= 5 * heartbeat_ms`` and
  ``election_ms <= 50000``, so those are refused here, in one line, before any node starts.
"""
from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from targets.adapter import TargetError
from targets.etcd.admin import EtcdAdmin
from targets.etcd.client import READ_MODES, EtcdClient

#: Every setting with its default.
DEFAULT_SETTINGS: Mapping[str, Any] = {"reads": "linearizable", "heartbeat_ms": 100, "election_ms": 1000}
#: etcd's own ceiling on --election-timeout (embed/config.go: maxElectionMs).
MAX_ELECTION_MS = 50_000
#: Raft entries between snapshots: far below etcd's 100,000 so that a node restarted after a crash
#: or a long partition catches up by snapshot as well as by log, as production clusters do.
SNAPSHOT_COUNT = 10_000


class EtcdTarget:
    """etcd 3.4 as a harness target.

    ``capabilities`` is only ``cas`` (a transaction compares and sets), and each absence is a
    fact about etcd, not a gap to fill:

    * no ``clock``: etcd serves no endpoint that reports its wall clock (and raft does not use
      wall time for correctness; leases aside, a clock nemesis has nothing to probe);
    * no ``transport-faults``: no in-process fault hooks; partitions need iptables (root);
    * no ``replica-reads``: a client reads through one member; ``r`` is meaningless under raft;
    * no ``peer-source-address``: etcd dials its peers from the host's default address, so on a
      shared host (the local backend) only rules on the members' cgroups can cut them;
    * no ``wipe``: a member restarted with an empty data dir does not rejoin by itself (raft
      needs a member remove/add), so a wipe nemesis must not be offered.
    """

    name = "etcd"
    capabilities: frozenset[str] = frozenset({"cas"})
    ports_per_node = 2
    node_packages: tuple[str, ...] = ()
    system_packages: tuple[str, ...] = ("etcd-server",)
    admin = EtcdAdmin()            # stateless: one for every node

    def resolve_settings(self, given: Mapping[str, Any], nodes: int) -> dict[str, Any]:
        """``given`` over the defaults, each value checked; TargetError (one line) otherwise."""
        unknown = sorted(set(given) - set(DEFAULT_SETTINGS))
        if unknown:
            raise TargetError(f"unknown etcd setting {unknown[0]!r} (known: {', '.join(sorted(DEFAULT_SETTINGS))})")
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise TargetError(f"an etcd cluster needs at least 1 node, got {nodes!r}")
        out = {**DEFAULT_SETTINGS, **given}
        if out["reads"] not in READ_MODES:
            raise TargetError(f"etcd setting reads: expected one of {', '.join(READ_MODES)}, got {out['reads']!r}")
        for key in ("heartbeat_ms", "election_ms"):
            out[key] = _integer(key, out[key])
        if out["heartbeat_ms"] < 1:
            raise TargetError(f"etcd setting heartbeat_ms: must be >= 1, got {out['heartbeat_ms']}")
        if out["election_ms"] < 5 * out["heartbeat_ms"]:
            raise TargetError(f"etcd setting election_ms: must be >= 5 * heartbeat_ms "
                              f"({5 * out['heartbeat_ms']}), as etcd requires, got {out['election_ms']}")
        if out["election_ms"] > MAX_ELECTION_MS:
            raise TargetError(f"etcd setting election_ms: must be <= {MAX_ELECTION_MS}, as etcd requires, "
                              f"got {out['election_ms']}")
        return out

    def summary(self, settings: Mapping[str, Any]) -> str:
        """``etcd reads=linearizable`` (+ raft timing when not etcd's defaults)."""
        s = {**DEFAULT_SETTINGS, **settings}
        line = f"etcd reads={s['reads']}"
        if (s["heartbeat_ms"], s["election_ms"]) != (DEFAULT_SETTINGS["heartbeat_ms"], DEFAULT_SETTINGS["election_ms"]):
            line += f" heartbeat={s['heartbeat_ms']}ms election={s['election_ms']}ms"
        return line

    def check_installed(self) -> None:
        if shutil.which("etcd") is None:
            raise TargetError("etcd is not installed: apt-get install etcd-server")

    def node_command(self, node: str, host: str, port: int, data_dir: str,
                     peers: Mapping[str, str], settings: Mapping[str, Any],
                     python: str = "python3") -> Sequence[str]:
        """argv that runs one etcd member in the foreground (``python`` is unused: not a Python node).

        Advertised URLs come from ``peers[node]`` (what the other members dial), listening ones from
        ``host``/``port``; on every backend they are the same address."""
        s = self.resolve_settings(settings, max(1, len(peers)))
        if node not in peers:
            raise TargetError(f"etcd node {node!r} is not in peers ({', '.join(sorted(peers)) or 'none'})")
        members = {name: _split(name, addr) for name, addr in peers.items()}
        adv_host, adv_port = members[node]
        return [
            "etcd",
            "--name", node,
            "--data-dir", data_dir,
            "--listen-client-urls", _url(host, port),
            "--advertise-client-urls", _url(adv_host, adv_port),
            "--listen-peer-urls", _url(host, port + 1),
            "--initial-advertise-peer-urls", _url(adv_host, adv_port + 1),
            "--initial-cluster", ",".join(f"{n}={_url(h, p + 1)}" for n, (h, p) in sorted(members.items())),
            "--initial-cluster-state", "new",
            "--initial-cluster-token", cluster_token(peers),
            "--heartbeat-interval", str(s["heartbeat_ms"]),
            "--election-timeout", str(s["election_ms"]),
            "--snapshot-count", str(SNAPSHOT_COUNT),
            # quiet and self-contained: JSON logs on stderr (the backend keeps them per node), warnings
            # and up only; no v2 API, no proxy mode, no discovery, no pprof
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
            "--enable-v2=false", "--proxy", "off", "--enable-pprof=false",
        ]

    def client(self, node: str, url: str, *, timeout: float, settings: Mapping[str, Any]) -> EtcdClient:
        """An async client whose requests ``node`` serves (reads as ``settings['reads']`` says; the
        settings were resolved, and EtcdClient refuses anything else)."""
        return EtcdClient(node, url, timeout=timeout, reads=settings.get("reads", DEFAULT_SETTINGS["reads"]))


def cluster_token(peers: Mapping[str, str]) -> str:
    """``--initial-cluster-token`` from the sorted member list: member and cluster IDs are hashed
    from it, so two test clusters (or a leftover node of an earlier run) can never merge."""
    digest = hashlib.sha256(",".join(f"{n}={a}" for n, a in sorted(peers.items())).encode()).hexdigest()
    return f"dynharness-{digest[:16]}"


def _integer(key: str, value: Any) -> int:
    """An int setting from an int, an integral float (TOML/JSON) or a decimal string (CLI flag)."""
    if isinstance(value, bool):
        raise TargetError(f"etcd setting {key}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise TargetError(f"etcd setting {key}: expected an integer, got {value!r}")


def _split(name: str, address: str) -> tuple[str, int]:
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65535:
        raise TargetError(f"etcd peer {name!r}: expected host:port with a client port below 65535, got {address!r}")
    return host, int(port)


def _url(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"                       # an IPv6 literal
    return f"http://{host}:{port}"
