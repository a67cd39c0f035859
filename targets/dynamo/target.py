"""``DynamoTarget``: the reference Dynamo store as a harness target (``targets.adapter.Target``).

Everything about this store that the harness needs lives here: its settings (the table in
:mod:`targets.dynamo.config`, resolved and validated for a cluster before anything starts, so a
typo in a test spec cannot silently run with defaults), the ``python -m targets.dynamo`` argv,
the async :class:`~targets.dynamo.client.DynamoClient` and the synchronous
:class:`~targets.dynamo.admin.DynamoAdmin` (health, clock, in-process transport faults).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from targets.adapter import TargetError
from targets.dynamo.admin import DynamoAdmin
from targets.dynamo.client import DynamoClient
from targets.dynamo.config import DEFAULTS, SETTINGS, SETTINGS_BY_KEY, coerce_setting, validate_settings
from targets.dynamo.ring import Ring
from targets.dynamo.zoo import ZOO

#: Every setting a node takes, with its default (see docs/store.md).
DEFAULT_SETTINGS: Mapping[str, Any] = dict(DEFAULTS)


class DynamoTarget:
    """The reference Dynamo store as a harness target."""

    name = "dynamo"
    #: the node reports its own clock, holds in-process transport faults, reads every replica at
    #: r=N, a wiped node is refilled, peer connections are bound to the node's own address, and
    #: each node shows its own stored copies (``/admin/replicas``), and every node computes a key's
    #: preference list from the static membership (docs/contracts.md section 1)
    capabilities = frozenset({"clock", "transport-faults", "replica-reads", "wipe", "peer-source-address",
                              "replica-snapshot", "preference-list"})
    admin = DynamoAdmin()
    ports_per_node = 1                      # clients and peers share one port (server.ConnectionSniffer)
    node_packages = ("targets",)
    system_packages: tuple[str, ...] = ()
    zoo = ZOO                               # deliberate bugs for `dynharness selftest` (targets/dynamo/bugs.py)

    def resolve_settings(self, given: Mapping[str, Any], nodes: int) -> dict[str, Any]:
        """``given`` over the defaults, each converted to its type and checked for ``nodes`` nodes."""
        unknown = sorted(set(given) - set(SETTINGS_BY_KEY))
        if unknown:
            raise TargetError(f"unknown [target] setting {unknown[0]!r} for dynamo "
                              f"(known: {', '.join(sorted(SETTINGS_BY_KEY))})")
        out = dict(DEFAULTS)
        for key, value in given.items():
            out[key] = _coerce(key, value)
        n = out["n"]
        if n > nodes:  # the spec-level wording: the cluster is too small for N, not N out of range
            raise TargetError(f"target.n = {n} needs at least {n} nodes, but nodes = {nodes}")
        for key in ("r", "w"):
            if not 1 <= out[key] <= n:
                raise TargetError(f"target.{key} = {out[key]} must be between 1 and n = {n}")
        for key, of in (("pr", "r"), ("pw", "w")):
            if not 0 <= out[key] <= out[of]:
                raise TargetError(f"target.{key} = {out[key]} must be between 0 and {of} = {out[of]}")
        validate_settings(out, nodes, name=lambda key: f"target.{key}")
        return out

    def summary(self, settings: Mapping[str, Any]) -> str:
        line = f"N={settings.get('n')} R={settings.get('r')} W={settings.get('w')} mode={settings.get('mode')}"
        return line + (f" BUG={settings['bug']}" if settings.get("bug") else "")

    def preference_list(self, key: str, nodes: Sequence[str], settings: Mapping[str, Any]) -> tuple[str, ...]:
        """``key``'s N home replicas: the ring every node builds from the membership (``Ring``)."""
        s = {**DEFAULTS, **settings}
        return tuple(Ring(list(nodes), partitions=s["partitions"]).preference_list(key, s["n"]))

    def check_installed(self) -> None:
        """Nothing to check: the node is this package, run by the harness's own Python."""

    def node_command(self, node: str, host: str, port: int, data_dir: str,
                     peers: Mapping[str, str], settings: Mapping[str, Any],
                     python: str = "python3") -> Sequence[str]:
        """argv that runs one node in the foreground with ``settings`` (defaults for the rest)."""
        unknown = sorted(set(settings) - set(SETTINGS_BY_KEY))
        if unknown:
            raise TargetError(f"unknown dynamo setting(s): {', '.join(unknown)} "
                              f"(known: {', '.join(SETTINGS_BY_KEY)})")
        if node not in peers:
            raise TargetError(f"node {node!r} is not in peers {sorted(peers)}")
        argv = [python, "-m", "targets.dynamo", "--name", node, "--listen", f"{host}:{port}",
                "--data", data_dir, "--peers", ",".join(f"{n}={addr}" for n, addr in peers.items())]
        for setting in SETTINGS:
            if setting.key in settings and not (setting.key == "bug" and not settings["bug"]):
                argv += [setting.flag, str(coerce_setting(setting.key, settings[setting.key]))]
        return argv

    def client(self, node: str, url: str, *, timeout: float, settings: Mapping[str, Any] | None = None,
               secret: str | None = None) -> DynamoClient:
        """An async client whose requests ``node`` coordinates (``secret``: the cluster's, for the
        ``/admin`` views it reads)."""
        return DynamoClient(node, url, timeout, secret)


def _coerce(key: str, value: Any) -> Any:
    """One spec value to its setting's type; TargetError naming ``target.<key>`` otherwise."""
    kind = SETTINGS_BY_KEY[key].kind
    if isinstance(value, bool) or (kind is str) != isinstance(value, str):
        raise TargetError(f"target.{key} must be {'a string' if kind is str else 'a number'}, got {value!r}")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise TargetError(f"target.{key} must be an integer, got {value!r}")
    return kind(value)
