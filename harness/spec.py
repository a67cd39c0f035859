"""Test specs: one TOML file (or flags) that says everything a run needs.

A :class:`TestSpec` is frozen and fully resolved: the ``[target]`` table names the store
(``kind``, default ``dynamo``) and that target merges the rest over its own defaults and
validates it (``Target.resolve_settings``: this module knows no store's settings), the seed is fixed (chosen at random and recorded
when not given), and every field has been checked. Anything unknown or
contradictory (``r > n``, ``n > nodes``, an unknown workload) is a
:class:`~harness.errors.UserError` of one line *before* anything starts.

Defaults are the demo of ``dynharness run`` with no arguments: 30 s on the
local backend, 5 nodes, N=3 R=2 W=2, the cart workload, random partitions.
A run given no ``name`` is named after what it is (:func:`run_name`). The field reference is
``docs/harness.md``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from harness import limits, plugins
from harness.errors import UserError
from harness.limits import MAX_SECONDS, number
from harness.plugins import DEFAULT_TARGET
from harness.spec_checkers import checker_table_error
from targets.adapter import Target, TargetError

BACKENDS = ("local", "docker", "ssh")
KEY_DISTS = ("uniform", "zipf")
DEFAULT_NEMESIS: Mapping[str, Any] = {"faults": ["partition"], "interval": 10}
#: Keys ``spec.json`` stores besides the spec itself (facts about the run, not inputs).
RUN_FACTS = ("run_dir", "started", "versions", "backend_capabilities", "nemesis_resolved", "target_capabilities")


def target_defaults(kind: str = DEFAULT_TARGET, nodes: int = 5) -> dict[str, Any]:
    """A target's settings when a spec gives none, for a cluster of ``nodes`` (without ``kind``)."""
    try:
        return plugins.target(kind).resolve_settings({}, nodes)
    except TargetError as e:
        raise UserError(str(e)) from None


def _freeze(m: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({k: (_freeze(v) if isinstance(v, Mapping) else v) for k, v in m.items()})


def _thaw(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_thaw(x) for x in v]
    return v


@dataclass(frozen=True)
class WorkloadSpec:
    """What clients do: the workload name, its keys, and how ops are drawn."""

    name: str = "cart"
    keys: int = 10                      # carts / registers / keys per session
    blind: bool = False                 # cart: add without reading first (sibling explosions)
    key_dist: str = "uniform"           # "uniform" or "zipf" (hot keys)
    zipf_s: float = 1.0                 # zipf exponent
    mix: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))  # f -> weight; {} = workload default
    foreign_reads: float = 0.2          # session: share of reads of other sessions' keys
    read_after_write: bool = True       # session: each write is followed by a read of its key...
    think_time: float = 0.0             # session: ...this many seconds after the write completed


@dataclass(frozen=True)
class TestSpec:
    """A resolved test: every field the run uses, as recorded in ``spec.json``."""

    __test__ = False  # not a pytest test class

    name: str = "demo"
    backend: str = "local"
    nodes: int = 5
    seed: int = 0
    duration: float = 30.0
    rate: float = 200.0
    concurrency: int = 10
    recovery: float = 5.0
    final_read_timeout: float = 30.0
    client_timeout: float = 5.0
    leave_running: bool = False
    histories: str = "histories"
    replay_schedule: str | None = None  # a run dir whose nemesis-schedule.json is replayed
    target: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    nemesis: Mapping[str, Any] = field(default_factory=lambda: _freeze(DEFAULT_NEMESIS))
    checkers: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    docker: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    ssh: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(f"n{i}" for i in range(1, self.nodes + 1))

    @property
    def target_kind(self) -> str:
        """The store under test (a ``dynharness.targets`` entry point)."""
        return str(self.target.get("kind", DEFAULT_TARGET))

    @property
    def target_settings(self) -> dict[str, Any]:
        """The settings the target's nodes run with (the ``[target]`` table without ``kind``)."""
        return {k: _thaw(v) for k, v in self.target.items() if k != "kind"}

    @property
    def faults(self) -> tuple[str, ...]:
        return tuple(self.nemesis.get("faults") or ())

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (what ``spec.json`` stores)."""
        out = {f.name: _thaw(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["workload"] = {f.name: _thaw(getattr(self.workload, f.name)) for f in dataclasses.fields(self.workload)}
        return out

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> "TestSpec":
        """Rebuild a spec from ``spec.json`` (re-validated, so an edited file cannot smuggle bad values)."""
        data = dict(obj)
        return build_spec(data)


_TOP_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "backend": (str,), "nodes": (int,), "seed": (int,), "duration": (int, float),
    "rate": (int, float), "concurrency": (int,), "recovery": (int, float), "final_read_timeout": (int, float),
    "client_timeout": (int, float), "leave_running": (bool,), "histories": (str,), "replay_schedule": (str, type(None)),
}
#: Bounds of the top-level numbers, (low, high, low excluded); ``harness.limits`` says why each.
_TOP_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "nodes": (1, limits.MAX_NODES, False), "concurrency": (1, limits.MAX_CONCURRENCY, False),
    "seed": (*limits.SEED_RANGE, False), "duration": (0, MAX_SECONDS, True), "rate": (0, limits.MAX_RATE, True),
    "client_timeout": (0, MAX_SECONDS, True), "recovery": (0, MAX_SECONDS, False),
    "final_read_timeout": (0, MAX_SECONDS, False),
}
_TABLES = ("target", "workload", "nemesis", "checkers", "docker", "ssh")
_WORKLOAD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "keys": (int,), "blind": (bool,), "key_dist": (str,), "zipf_s": (int, float),
    "mix": (dict,), "foreign_reads": (int, float), "read_after_write": (bool,), "think_time": (int, float),
}


def _type_ok(v: Any, types: tuple[type, ...]) -> bool:
    if isinstance(v, bool) and bool not in types:
        return False
    return isinstance(v, types)


def _type_name(types: tuple[type, ...]) -> str:
    return " or ".join({int: "an integer", float: "a number", str: "a string", bool: "true/false",
                        dict: "a table", type(None): "absent"}[t] for t in types)


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` in a nested dict (what ``--set`` and every flag do)."""
    parts = dotted.split(".")
    if not all(parts):
        raise UserError(f"bad setting name {dotted!r}")
    cur = data
    for p in parts[:-1]:
        nxt = cur.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise UserError(f"cannot set {dotted!r}: {p!r} is not a table")
        cur = nxt
    cur[parts[-1]] = value


def parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax when it parses (``3``, ``true``, ``["a"]``), else the bare string."""
    try:
        return limits.toml_loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_spec(path: str | Path | None, overrides: Mapping[str, Any] | None = None, *,
              target: Target | None = None) -> TestSpec:
    """Read a spec file (or none: the demo) and apply dotted overrides (``{"target.n": 3}``).

    The file is TOML, or a stored run's ``spec.json`` (to re-run it exactly).

    Raises UserError (one line) for unreadable files, unknown fields, wrong
    types and contradictions.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
            if p.suffix == ".json":  # a stored run's spec.json: re-run it (same seed, same settings)
                data = limits.json_loads(text)
                if not isinstance(data, dict):
                    raise UserError(f"{p}: a spec must be a JSON object")
                for k in RUN_FACTS:
                    data.pop(k, None)
            else:
                data = limits.toml_loads(text)
        except OSError as e:
            raise UserError(f"cannot read spec {p}: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{p}: not valid TOML: {e}") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{p}: not valid JSON: {e.msg} at line {e.lineno}") from None
        except UnicodeDecodeError:
            raise UserError(f"{p}: not a UTF-8 text file") from None
    for dotted, value in (overrides or {}).items():
        if value is not None:
            apply_override(data, dotted, value)
    return build_spec(data, source=str(path) if path else None, target=target)


def build_spec(data: Mapping[str, Any], source: str | None = None, *, target: Target | None = None) -> TestSpec:
    """Validate a nested dict (parsed TOML + overrides) into a TestSpec.

    ``target``: a target object to resolve ``[target]`` with instead of looking its ``kind`` up
    (the Python API's ``run_test(spec, target=...)`` for a store not registered as a plugin)."""
    where = f"{source}: " if source else ""

    def bad(msg: str) -> UserError:
        return UserError(where + msg)

    data = dict(data)
    unknown = sorted(set(data) - set(_TOP_TYPES) - set(_TABLES))
    if unknown:
        raise bad(f"unknown spec field {unknown[0]!r} (known: {', '.join(sorted([*_TOP_TYPES, *_TABLES]))})")
    for k, types in _TOP_TYPES.items():
        if k in data and not _type_ok(data[k], types):
            raise bad(f"{k} must be {_type_name(types)}, got {data[k]!r}")
    for t in _TABLES:
        if t in data and not isinstance(data[t], Mapping):
            raise bad(f"[{t}] must be a table, got {data[t]!r}")
    for k, (lo, hi, lo_open) in _TOP_BOUNDS.items():
        if k in data:
            _num(bad, k, data[k], lo, hi, lo_open=lo_open, integer=_TOP_TYPES[k] == (int,))
    for t in ("target", "checkers", "docker", "ssh"):  # free-form tables: their owners bound them,
        _finite(t, data.get(t, {}), bad)              # but NaN and inf mean nothing anywhere
    top = {k: data[k] for k in _TOP_TYPES if k in data}
    if "seed" not in top:
        top["seed"] = secrets.randbelow(2**31)
    s = TestSpec(**top)
    if s.backend not in BACKENDS:
        raise bad(f"unknown backend {s.backend!r} (known: {', '.join(BACKENDS)})")
    if not s.name or "/" in s.name or s.name.startswith(".") or not s.name.isprintable() \
            or len(s.name.encode()) > limits.MAX_NAME:
        raise bad(f"name must be a non-empty file name without '/' (at most {limits.MAX_NAME} bytes), "
                  f"got {s.name[:60]!r}{'...' if len(s.name) > 60 else ''}")
    target, target_table = _resolve_target(dict(data.get("target", {})), s.nodes, bad, target)
    workload = _resolve_workload(dict(data.get("workload", {})), s.concurrency, bad)
    nemesis = {**_thaw(DEFAULT_NEMESIS), **dict(data.get("nemesis", {}))}  # faults = [] turns faults off
    faults = nemesis.get("faults", [])
    _check_target_can(target, workload.name, faults if isinstance(faults, list) else [], bad)
    _check_backend_can(s.backend, faults if isinstance(faults, list) else [], bad)
    _check_nemesis(nemesis, bad, None if s.replay_schedule else s, target)
    checkers = dict(data.get("checkers", {}))
    if (refused := checker_table_error(checkers)) is not None:
        raise bad(refused)
    for other in ("docker", "ssh"):
        if data.get(other) and s.backend != other:
            raise bad(f"[{other}] options given but backend is {s.backend!r}")
    name = s.name if "name" in top else run_name(workload.name, target_table, faults)
    return dataclasses.replace(
        s, name=name, target=_freeze(target_table), workload=workload, nemesis=_freeze(nemesis), checkers=_freeze(checkers),
        docker=_freeze(dict(data.get("docker", {}))), ssh=_freeze(dict(data.get("ssh", {}))))


def run_name(workload: str, target_table: Mapping[str, Any], faults: Sequence[str]) -> str:
    """The name of a run given none: what it is (``cart-vclock-partition``, ``register-etcd-crash``),
    so runs of different tests are not stored, listed and compared as one."""
    kind = str(target_table.get("kind", DEFAULT_TARGET))
    store = str(target_table.get("mode") or kind) if kind == DEFAULT_TARGET else kind
    return "-".join((workload, store, "+".join(map(str, faults)) or "nofaults"))


def _num(bad: Any, name: str, v: Any, lo: float, hi: float, **kw: Any) -> Any:
    """:func:`harness.limits.number` with the spec's source in the message."""
    try:
        return number(name, v, lo, hi, **kw)
    except UserError as e:
        raise bad(str(e)) from None


def _finite(name: str, v: Any, bad: Any) -> None:
    """Refuse NaN and inf anywhere in a table whose fields this module does not know."""
    if isinstance(v, float) and not math.isfinite(v):
        raise bad(f"{name} must be a finite number, got {v!r}")
    if isinstance(v, Mapping):
        for k, x in v.items():
            _finite(f"{name}.{k}", x, bad)
    elif isinstance(v, (list, tuple)):
        for x in v:
            _finite(name, x, bad)


def _resolve_target(given: dict[str, Any], nodes: int, bad: Any,
                    target: Target | None) -> tuple[Target, dict[str, Any]]:
    """``[target]``: ``kind`` picks the store; that target resolves and validates the rest."""
    kind = given.pop("kind", None)
    if kind is not None and not isinstance(kind, str):
        raise bad(f"target.kind must be a string, got {kind!r}")
    if target is None:
        try:
            target = plugins.target(kind or DEFAULT_TARGET)
        except UserError as e:
            raise bad(str(e)) from None
    elif kind is not None and kind != target.name:
        raise bad(f"target.kind = {kind!r}, but the run was given the {target.name!r} target")
    try:
        settings = target.resolve_settings(given, nodes)
    except TargetError as e:
        raise bad(str(e)) from None
    return target, {"kind": target.name, **settings}


def _check_target_can(target: Target, workload: str, faults: Any, bad: Any) -> None:
    """Refuse, before anything starts, a workload or fault the target lacks a capability for."""
    from harness import workloads
    from nemeses import fault_kind

    missing = [c for c in workloads.kind(workload).needs if c not in target.capabilities]
    if missing:
        raise bad(f"the {workload} workload needs a target with {' and '.join(missing)}; "
                  f"the {target.name} target has no {' and no '.join(missing)}")
    refusals = fault_kind.target_refusals(list(faults), target)
    if refusals:
        raise bad(refusals[0])


def _check_backend_can(backend: str, faults: Any, bad: Any) -> None:
    """Refuse, before anything starts, a fault whose setup the backend cannot make (power loss's
    lazy disks on the ssh backend)."""
    from harness.backends import FEATURES
    from nemeses import fault_kind

    refusals = fault_kind.backend_refusals(list(faults), backend, FEATURES.get(backend, frozenset()))
    if refusals:
        raise bad(refusals[0])


def _resolve_workload(given: dict[str, Any], concurrency: int, bad: Any) -> WorkloadSpec:
    from harness import workloads

    unknown = sorted(set(given) - set(_WORKLOAD_TYPES))
    if unknown:
        raise bad(f"unknown [workload] field {unknown[0]!r} (known: {', '.join(sorted(_WORKLOAD_TYPES))})")
    for k, types in _WORKLOAD_TYPES.items():
        if k in given and not _type_ok(given[k], types):
            raise bad(f"workload.{k} must be {_type_name(types)}, got {given[k]!r}")
    w = WorkloadSpec(**{k: v for k, v in given.items() if k != "mix"})
    try:
        kind = workloads.kind(w.name)
    except UserError as e:
        raise bad(str(e)) from None
    _num(bad, "workload.keys", w.keys, 1, limits.MAX_KEYS, integer=True)
    if w.name == "session" and w.keys * concurrency > limits.MAX_FINAL_READS:  # keys per worker
        raise bad(f"workload.keys x concurrency must be at most {limits.MAX_FINAL_READS} for the session "
                  f"workload (each worker has its own keys, and the final reads read them all), "
                  f"got {w.keys} x {concurrency}")
    if w.key_dist not in KEY_DISTS:
        raise bad(f"workload.key_dist must be one of {', '.join(KEY_DISTS)}, got {w.key_dist!r}")
    _num(bad, "workload.zipf_s", w.zipf_s, 0, limits.MAX_ZIPF_S, lo_open=True)
    _num(bad, "workload.foreign_reads", w.foreign_reads, 0, 1)
    _num(bad, "workload.think_time", w.think_time, 0, MAX_SECONDS)
    for name, only in (("blind", "cart"), ("read_after_write", "session"), ("think_time", "session")):
        if getattr(w, name) != getattr(WorkloadSpec, name) and w.name != only:
            raise bad(f"workload.{name} applies to the {only} workload only, not {w.name!r}")
    mix = {**kind.mix, **dict(given.get("mix", {}))}
    allowed = set(kind.mix)
    for f, weight in mix.items():
        if f not in allowed:
            raise bad(f"workload.mix: {w.name} has no op {f!r} (known: {', '.join(sorted(allowed))})")
        _num(bad, f"workload.mix.{f}", weight, 0, limits.MAX_WEIGHT)
    if not any(mix.values()):
        raise bad("workload.mix: at least one weight must be positive")
    return dataclasses.replace(w, mix=MappingProxyType(mix))


def _check_nemesis(nemesis: dict[str, Any], bad: Any, run: TestSpec | None, target: Target) -> None:
    """The nemesis table parses, its targets suit the target, and (``run``: not a replay) its
    schedule has room for every fault."""
    faults = nemesis.get("faults", [])
    if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
        raise bad(f"nemesis.faults must be a list of fault names, got {faults!r}")
    if not faults:
        return
    try:
        from nemeses.room import check_room  # type: ignore[import-not-found]
        from nemeses.schedule import NemesisSpec, replicas_refusal  # type: ignore[import-not-found]
    except ImportError:
        return  # checked again when the run builds the schedule
    try:
        nspec = NemesisSpec.from_mapping(nemesis)
        if nspec.targets == "replicas" and (why := replicas_refusal(target)):
            raise UserError(why)
        if run is not None:
            check_room(nspec, run.node_names, run.seed, run.duration)
    except UserError as e:
        raise bad(str(e)) from None


def unscheduled_faults(spec: TestSpec) -> tuple[str, ...]:
    """The requested faults the run's schedule never starts (only with ``nemesis.allow_unscheduled``;
    otherwise such a spec does not build). Empty for a replay: its schedule is the stored one."""
    if not spec.faults or spec.replay_schedule:
        return ()
    from nemeses.room import unscheduled  # type: ignore[import-not-found]
    from nemeses.schedule import NemesisSpec  # type: ignore[import-not-found]

    return unscheduled(NemesisSpec.from_mapping(_thaw(spec.nemesis)), spec.node_names, spec.seed, spec.duration)


def spec_json(spec: TestSpec, **extra: Any) -> str:
    """``spec.json`` text: the spec plus run facts (versions, resolved run id)."""
    return json.dumps({**spec.to_json(), **extra}, indent=2, sort_keys=True, default=str)
