"""Node configuration: the CLI flags and config file of ``python -m targets.dynamo``.

One frozen :class:`NodeConfig` is built from flags, a TOML file, or both
(flags win), and validated once so that bad input ends as a one-line
:class:`targets.adapter.TargetError` instead of a half-started node.
:data:`SETTINGS` is the single table of cluster settings shared by the CLI,
the config file and ``targets.dynamo.target.DynamoTarget.node_command``.
"""
from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from targets.adapter import TargetError
from targets.dynamo import bugs

MODES = ("vclock", "dvv", "lww")
FSYNC = ("always", "one", "never")
EVENT_LOOPS = ("auto", "asyncio", "uvloop")


@dataclass(frozen=True)
class Setting:
    """One cluster setting: its key (``request_timeout``), type and default."""

    key: str
    kind: Callable[[Any], Any]
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return flag_name(self.key)


SETTINGS: tuple[Setting, ...] = (
    Setting("n", int, 3, "replicas per key (N)"),
    Setting("r", int, 2, "read quorum (R)"),
    Setting("w", int, 2, "write quorum (W)"),
    Setting("pr", int, 0, "primary replicas a read must hear from (strict quorum)"),
    Setting("pw", int, 0, "primary replicas a write must be stored on (strict quorum)"),
    Setting("mode", str, "vclock", "versioning: vclock | dvv | lww"),
    Setting("fsync", str, "one", "one (default): only the durable write the coordinator gives one replica per "
            "write fsyncs (Dynamo section 6.1); always: every commit fsyncs before its ack; never: no fsync"),
    Setting("partitions", int, 64, "Q equal-size ring partitions"),
    Setting("request_timeout", float, 1.0, "coordinator timeout per request, seconds"),
    Setting("gossip_interval", float, 1.0, "seconds between gossip rounds"),
    Setting("ae_interval", float, 5.0, "seconds between anti-entropy rounds"),
    Setting("tombstone_grace", float, 60.0, "seconds before a tombstone may be reaped"),
    Setting("vclock_max", int, 10, "vector clock entries kept (oldest pruned)"),
    Setting("sibling_warn", int, 25, "log a warning above this many siblings"),
    Setting("sibling_max", int, 100, "refuse writes (507) above this many siblings"),
    Setting("event_loop", str, "auto", "auto: uvloop unless libfaketime is loaded, then the skew-proof "
                                       "asyncio loop; asyncio: always that one; uvloop: always uvloop"),
    Setting("bug", str, "", "run with one deliberate bug of the bug zoo (targets/dynamo/bugs.py), to test a "
                            "harness; empty: none"),
)
SETTINGS_BY_KEY: Mapping[str, Setting] = {s.key: s for s in SETTINGS}
DEFAULTS: Mapping[str, Any] = {s.key: s.default for s in SETTINGS}


@dataclass(frozen=True)
class NodeConfig:
    """Everything one node needs to start, validated."""

    name: str
    host: str
    port: int
    data_dir: str
    peers: Mapping[str, tuple[str, int]]        # every member, this node included
    settings: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULTS))

    def __getattr__(self, item: str) -> Any:
        # settings read as attributes: cfg.n, cfg.request_timeout, ...
        settings = self.__dict__.get("settings")
        if settings is not None and item in settings:
            return settings[item]
        raise AttributeError(item)

    @property
    def others(self) -> list[str]:
        return [p for p in self.peers if p != self.name]


def parse_address(text: str, what: str) -> tuple[str, int]:
    """``"127.0.0.11:7000"`` -> ``("127.0.0.11", 7000)``; TargetError on anything else."""
    host, sep, port = str(text).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"{what}: expected HOST:PORT, got {text!r}")
    return host, int(port)


def parse_peers(spec: Any) -> dict[str, tuple[str, int]]:
    """``"n1=h:p,n2=h:p"`` or a mapping -> ``{name: (host, port)}``."""
    if isinstance(spec, Mapping):
        items = [(str(k), str(v)) for k, v in spec.items()]
    else:
        items = []
        for part in str(spec).split(","):
            name, sep, addr = part.strip().partition("=")
            if not sep or not name:
                raise TargetError(f"--peers: expected NAME=HOST:PORT[,...], got {part.strip()!r}")
            items.append((name.strip(), addr))
    peers: dict[str, tuple[str, int]] = {}
    for name, addr in items:
        if name in peers:
            raise TargetError(f"--peers: node {name!r} listed twice")
        peers[name] = parse_address(addr, f"--peers {name}")
    if not peers:
        raise TargetError("--peers: no nodes given")
    return peers


def coerce_setting(key: str, value: Any) -> Any:
    """Convert one setting to its type (TargetError on unknown key or bad value)."""
    setting = SETTINGS_BY_KEY.get(key)
    if setting is None:
        raise TargetError(f"unknown setting {key!r} (known: {', '.join(SETTINGS_BY_KEY)})")
    try:
        if setting.kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        if setting.kind is int and isinstance(value, bool):
            raise ValueError
        return setting.kind(value)
    except (TypeError, ValueError):
        raise TargetError(f"setting {key}: expected {setting.kind.__name__}, got {value!r}") from None


def flag_name(key: str) -> str:
    """How the node's own command line names a setting (``--request-timeout``)."""
    return "--" + key.replace("_", "-")


def validate_settings(settings: Mapping[str, Any], members: int,
                      name: Callable[[str], str] = flag_name) -> None:
    """Check the settings make sense together for a cluster of ``members`` nodes; ``name`` says
    how a message names a setting (flags for the node, ``target.x`` for a test spec)."""
    s = settings
    for key, allowed in (("mode", MODES), ("fsync", FSYNC), ("event_loop", EVENT_LOOPS)):
        if s[key] not in allowed:
            raise TargetError(f"{name(key)} must be one of {', '.join(allowed)}, got {s[key]!r}")
    if not 1 <= s["n"] <= members:
        raise TargetError(f"{name('n')} must be between 1 and the number of nodes ({members}), got {s['n']}")
    for q in ("r", "w"):
        if not 1 <= s[q] <= s["n"]:
            raise TargetError(f"{name(q)} must be between 1 and n={s['n']}, got {s[q]}")
    for q in ("pr", "pw"):
        if not 0 <= s[q] <= s["n"]:
            raise TargetError(f"{name(q)} must be between 0 and n={s['n']}, got {s[q]}")
    if s["partitions"] < members:
        raise TargetError(f"{name('partitions')} must be at least the number of nodes ({members}), "
                          f"got {s['partitions']}")
    for key in ("request_timeout", "gossip_interval", "ae_interval"):
        if not s[key] > 0:
            raise TargetError(f"{name(key)} must be > 0, got {s[key]}")
    if s["tombstone_grace"] < 0:
        raise TargetError(f"{name('tombstone_grace')} must be >= 0, got {s['tombstone_grace']}")
    if s["vclock_max"] < 1:
        raise TargetError(f"{name('vclock_max')} must be >= 1, got {s['vclock_max']}")
    if not 1 <= s["sibling_warn"] <= s["sibling_max"]:
        raise TargetError(f"{name('sibling_warn')} must be between 1 and {name('sibling_max')}")
    bugs.check(s["bug"], name("bug"))


def build_parser() -> argparse.ArgumentParser:
    """The node's argparse parser (errors are turned into TargetError by :func:`load`)."""
    p = argparse.ArgumentParser(prog="python -m targets.dynamo",
                                description="Start one reference Dynamo node.", exit_on_error=False)
    p.add_argument("--config", help="TOML file with the same keys as the flags (flags win)")
    p.add_argument("--name", help="this node's name, one of --peers")
    p.add_argument("--listen", help="HOST:PORT to serve on (default: this node's --peers address)")
    p.add_argument("--data", help="data directory (SQLite files)")
    p.add_argument("--peers", help="NAME=HOST:PORT,... every member, this node included")
    for s in SETTINGS:
        p.add_argument(s.flag, dest=s.key, default=None, help=f"{s.help} (default {s.default})")
    return p




def load(argv: list[str]) -> NodeConfig:
    """Build a validated NodeConfig from argv (and the --config file it names)."""
    parser = build_parser()
    parser.error = lambda message: (_ for _ in ()).throw(TargetError(message))  # type: ignore[method-assign]
    try:
        args = parser.parse_args(argv)
    except argparse.ArgumentError as exc:
        raise TargetError(str(exc)) from None
    file_values: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config, "rb") as fh:
                file_values = tomllib.load(fh)
        except OSError as exc:
            raise TargetError(f"--config {args.config}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise TargetError(f"--config {args.config}: {exc}") from None
    known = {"name", "listen", "data", "peers", *SETTINGS_BY_KEY}
    for key in file_values:
        if key not in known:
            raise TargetError(f"--config {args.config}: unknown key {key!r}")

    def pick(key: str) -> Any:
        value = getattr(args, key, None)
        return value if value is not None else file_values.get(key)

    name, data, peers_spec = pick("name"), pick("data"), pick("peers")
    for key, value in (("--name", name), ("--data", data), ("--peers", peers_spec)):
        if value in (None, ""):
            raise TargetError(f"{key} is required")
    peers = parse_peers(peers_spec)
    if name not in peers:
        raise TargetError(f"--name {name!r} is not in --peers ({', '.join(peers)})")
    listen = pick("listen")
    host, port = parse_address(listen, "--listen") if listen else peers[name]
    settings = dict(DEFAULTS)
    for s in SETTINGS:
        value = pick(s.key)
        if value is not None:
            settings[s.key] = coerce_setting(s.key, value)
    validate_settings(settings, len(peers))
    return NodeConfig(name=str(name), host=host, port=port, data_dir=str(data), peers=peers,
                      settings=settings)
