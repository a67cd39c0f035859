"""``DynamoTarget``: how the harness starts and talks to reference Dynamo nodes.

Implements ``targets.adapter.Target``: ``node_command`` builds the
``python -m targets.dynamo ...`` argv from a settings mapping (keys of
:data:`targets.dynamo.config.SETTINGS`; an unknown key is a ValueError so a
typo in a test spec cannot silently run with defaults) and ``client`` returns a
:class:`~targets.dynamo.client.DynamoClient`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.errors import UserError
from targets.dynamo.client import DynamoClient
from targets.dynamo.config import DEFAULTS, SETTINGS, SETTINGS_BY_KEY, coerce_setting

#: Every setting a node takes, with its default (see docs/store.md).
DEFAULT_SETTINGS: Mapping[str, Any] = dict(DEFAULTS)


class DynamoTarget:
    """The reference Dynamo store as a harness target."""

    name = "dynamo"

    def node_command(self, node: str, host: str, port: int, data_dir: str,
                     peers: Mapping[str, str], settings: Mapping[str, Any],
                     python: str = "python3") -> Sequence[str]:
        """argv that runs one node in the foreground with ``settings`` (defaults for the rest)."""
        unknown = sorted(set(settings) - set(SETTINGS_BY_KEY))
        if unknown:
            raise ValueError(f"unknown dynamo setting(s): {', '.join(unknown)} "
                             f"(known: {', '.join(SETTINGS_BY_KEY)})")
        if node not in peers:
            raise ValueError(f"node {node!r} is not in peers {sorted(peers)}")
        argv = [python, "-m", "targets.dynamo", "--name", node, "--listen", f"{host}:{port}",
                "--data", data_dir, "--peers", ",".join(f"{n}={addr}" for n, addr in peers.items())]
        for setting in SETTINGS:
            if setting.key in settings:
                try:
                    value = coerce_setting(setting.key, settings[setting.key])
                except UserError as exc:
                    raise ValueError(str(exc)) from None
                argv += [setting.flag, str(value)]
        return argv

    def client(self, node: str, url: str, *, timeout: float) -> DynamoClient:
        """An async client whose requests ``node`` coordinates."""
        return DynamoClient(node, url, timeout)
