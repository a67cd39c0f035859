"""Nemesis schedules: which faults, when, on which nodes; deterministic from the seed.

A :class:`NemesisSpec` says what the user asked for (faults, interval,
targets, topology, fault parameters). :func:`build_schedule` turns it into a
list of :class:`ScheduledAction` (seconds since run start + a
:class:`~nemeses.base.NemesisOp`), Jepsen-style: a fault starts, holds for
``interval`` seconds, stops, and ``interval`` seconds later the next one
starts. Every random choice (which fault, which nodes, which halves, which
offset) is made *here*, from the seed, and written into the op values, so a
stored schedule (:func:`dump_schedule`) replays exactly (:func:`load_schedule`)
without the seed. Every fault is stopped before ``duration`` ends and the
schedule ends with a ``heal`` op.

With ``overlap = true`` each fault kind gets its own start/stop stream
(staggered by ``min(interval / streams, 1 s)``), so partitions, clock skew and a
process fault can be active at once; crash, wipe and pause share one stream
so they never fight over the same process.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from harness.errors import UserError
from harness.limits import MAX_FAULT_CHANGES, MAX_PARTITION_PAIRS, json_loads, number
from nemeses import fault_kind, topology
from nemeses.base import NemesisOp

#: ``replicas``: every replica of one key the workload uses (its preference list, from the target)
TARGETS = ("one", "minority", "majority", "all", "replicas")
CLOCK_MODES = ("bump", "strobe", "drift")
SCHEDULE_VERSION = 1
#: With overlap, stream k starts k * min(interval / streams, STAGGER) seconds after the first.
STAGGER = 1.0

@dataclass(frozen=True)
class NemesisSpec:
    """What faults a run injects and how (every field has a default; no faults = no nemesis)."""

    faults: tuple[str, ...] = ()
    interval: float = 10.0                   # seconds between fault changes
    targets: str = "one"                     # one | minority | majority | all | replicas | n1,n2
    partition: str = "random-halves"         # topology (nemeses.topology)
    clock_modes: tuple[str, ...] = CLOCK_MODES
    clock_offsets_ms: tuple[float, ...] = (-60000.0, -5000.0, 5000.0, 60000.0)
    clock_strobe_period: float = 0.5         # seconds between flips
    clock_drift_rate: float = 0.1            # clock seconds gained (or lost) per real second
    crash_restart_delay: float | None = None  # seconds a killed/wiped node stays down (default: interval)
    loss_probability: float = 0.2
    latency_ms: float = 100.0
    latency_jitter_ms: float = 20.0
    start_at: float | None = None            # first fault (default: interval)
    overlap: bool = False                    # one start/stop stream per fault kind
    allow_unscheduled: bool = False          # run even if some fault kind has no room (nemeses.room)
    #: [nemesis.<kind>] settings of plugin fault kinds (FaultKind.options: name -> default), resolved
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.faults)

    @property
    def first_at(self) -> float:
        return self.interval if self.start_at is None else self.start_at

    @property
    def restart_delay(self) -> float:
        return self.interval if self.crash_restart_delay is None else self.crash_restart_delay

    @staticmethod
    def from_mapping(d: Mapping[str, Any] | None) -> "NemesisSpec":
        """Parse and validate a spec mapping (nested tables or flat keys); UserError on bad input.

        Accepted: ``faults`` (list or "a,b"), ``interval``, ``targets``,
        ``partition`` (topology string or ``{topology = ...}``), ``start_at``,
        ``overlap``, ``clock = {modes, offsets_ms, strobe_period, drift_rate}``,
        ``crash = {restart_delay}``, ``loss = {probability}``,
        ``latency = {ms, jitter_ms}``, or the flat names of the fields.
        """
        if d is None:
            return NemesisSpec()
        if not isinstance(d, Mapping):
            raise UserError(f"nemesis: expected a table of settings, got {d!r}")
        flat: dict[str, Any] = {}
        nested = {"clock": {"modes": "clock_modes", "offsets_ms": "clock_offsets_ms",
                            "strobe_period": "clock_strobe_period", "drift_rate": "clock_drift_rate"},
                  "crash": {"restart_delay": "crash_restart_delay"},
                  "loss": {"probability": "loss_probability"},
                  "latency": {"ms": "latency_ms", "jitter_ms": "latency_jitter_ms"},
                  "partition": {"topology": "partition"}}
        names = {f for f in NemesisSpec.__dataclass_fields__}
        for key, value in d.items():
            k = str(key).replace("-", "_")
            if k in nested and isinstance(value, Mapping):
                for sub, v in value.items():
                    s = str(sub).replace("-", "_")
                    if s not in nested[k]:
                        raise UserError(f"nemesis.{k}: unknown setting {sub!r} (known: {', '.join(nested[k])})")
                    flat[nested[k][s]] = v
            elif k in names and k != "options":
                flat[k] = value
            elif isinstance(value, Mapping) and str(key) in fault_kind.names():   # e.g. [nemesis.power-loss]
                flat.setdefault("options", {})[str(key)] = value
            else:
                raise UserError(f"nemesis: unknown setting {key!r} (known: {', '.join(sorted(names))})")
        return _validated(flat)

    def to_json(self) -> dict[str, Any]:
        """The resolved spec as stored in ``spec.json`` (nested form; from_mapping reads it back)."""
        return {
            "faults": list(self.faults), "interval": self.interval, "targets": self.targets,
            "partition": self.partition, "start_at": self.first_at, "overlap": self.overlap,
            "clock": {"modes": list(self.clock_modes), "offsets_ms": list(self.clock_offsets_ms),
                      "strobe_period": self.clock_strobe_period, "drift_rate": self.clock_drift_rate},
            "crash": {"restart_delay": self.restart_delay},
            "loss": {"probability": self.loss_probability},
            "latency": {"ms": self.latency_ms, "jitter_ms": self.latency_jitter_ms},
            "allow_unscheduled": self.allow_unscheduled,
            **{kind: dict(values) for kind, values in self.options.items()},
        }

    def holds(self) -> dict[str, float]:
        """Seconds one fault of each requested kind stays on: ``restart_delay`` for a kind that
        restarts its nodes (a killed or wiped node), ``interval`` for the others."""
        kinds = fault_kind.registered()
        return {f: self.restart_delay if kinds[f].restarts else self.interval for f in self.faults}

    def streams(self) -> list[tuple[float, tuple[str, ...]]]:
        """Each start/stop stream: when its first fault starts, and the fault kinds it draws from.

        One stream for every kind, or with ``overlap`` one per kind (crash, wipe and pause
        sharing one, so they never fight over a process), staggered so they do not all
        change at the same instant."""
        kinds: list[tuple[str, ...]] = [self.faults]
        if self.overlap:
            registered = fault_kind.registered()
            process = tuple(f for f in self.faults if registered[f].process)
            kinds = [(f,) for f in self.faults if not registered[f].process] + ([process] if process else [])
        step = min(self.interval / len(kinds), STAGGER)
        return [(self.first_at + s * step, k) for s, k in enumerate(kinds)]


def _number(name: str, v: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    return number(f"nemesis.{name}", v, lo, hi, lo_open=lo_open)


def _names(name: str, v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [x.strip() for x in v.split(",") if x.strip()]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise UserError(f"nemesis {name} must be a list of names or 'a,b', got {v!r}")
    return tuple(v)


def _kind_options(faults: Sequence[str], given: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The [nemesis.<kind>] settings of plugin kinds: each known key, of its default's type, else default."""
    kinds = {name: k for name, k in fault_kind.requested([*faults, *given]).items() if k.options}
    out: dict[str, dict[str, Any]] = {}
    for name, table in given.items():
        if name not in kinds:
            raise UserError(f"nemesis.{name}: this fault kind has no settings")
    for name, kind in kinds.items():
        values = dict(kind.options)
        for key, v in given.get(name, {}).items():
            if key not in values:
                raise UserError(f"nemesis.{name}: unknown setting {key!r} (known: {', '.join(values)})")
            default = values[key]
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                v = _number(f"{name}.{key}", v, -1e12, 1e12)
                v = int(v) if isinstance(default, int) and v == int(v) else v
            elif not isinstance(v, type(default)):
                raise UserError(f"nemesis {name}.{key} must be {type(default).__name__}, got {v!r}")
            values[key] = v
        out[name] = values
    return out


def _validated(flat: Mapping[str, Any]) -> NemesisSpec:
    out: dict[str, Any] = {}
    faults = _names("faults", flat.get("faults", ()))
    out["faults"] = tuple(fault_kind.requested(faults))
    out["options"] = _kind_options(out["faults"], flat.get("options", {}))
    if "interval" in flat:
        out["interval"] = _number("interval", flat["interval"], 0.1, 86400)
    if "targets" in flat:
        t = flat["targets"]
        if isinstance(t, (list, tuple)):
            t = ",".join(map(str, t))
        if not isinstance(t, str) or not t.strip():
            raise UserError(f"nemesis targets must be one, minority, majority, all, replicas or a node list, "
                            f"got {t!r}")
        out["targets"] = t.strip()
    if "partition" in flat:
        if not isinstance(flat["partition"], str):
            raise UserError(f"nemesis partition must be a topology name, got {flat['partition']!r}")
        topology.validate_topology(flat["partition"])
        out["partition"] = flat["partition"]
    if "clock_modes" in flat:
        modes = _names("clock.modes", flat["clock_modes"])
        bad = [m for m in modes if m not in CLOCK_MODES]
        if bad or not modes:
            raise UserError(f"nemesis clock.modes: expected some of {', '.join(CLOCK_MODES)}, got {list(modes)}")
        out["clock_modes"] = modes
    if "clock_offsets_ms" in flat:
        offs = flat["clock_offsets_ms"]
        offs = [offs] if isinstance(offs, (int, float)) and not isinstance(offs, bool) else offs
        if not isinstance(offs, (list, tuple)) or not offs:
            raise UserError(f"nemesis clock.offsets_ms must be a list of milliseconds, got {offs!r}")
        vals = tuple(_number("clock.offsets_ms", o, -7 * 86400e3, 7 * 86400e3) for o in offs)
        if any(v == 0 for v in vals):
            raise UserError("nemesis clock.offsets_ms: an offset of 0 is not a fault")
        out["clock_offsets_ms"] = vals
    if "clock_strobe_period" in flat:
        out["clock_strobe_period"] = _number("clock.strobe_period", flat["clock_strobe_period"], 0.05, 3600)
    if "clock_drift_rate" in flat:
        out["clock_drift_rate"] = _number("clock.drift_rate", flat["clock_drift_rate"], 0.0, 100, lo_open=True)
    if flat.get("crash_restart_delay") is not None:
        out["crash_restart_delay"] = _number("crash.restart_delay", flat["crash_restart_delay"], 0.0, 86400)
    if "loss_probability" in flat:
        out["loss_probability"] = _number("loss.probability", flat["loss_probability"], 0.0, 1.0, lo_open=True)
    if "latency_ms" in flat:
        out["latency_ms"] = _number("latency.ms", flat["latency_ms"], 0.0, 60000, lo_open=True)
    if "latency_jitter_ms" in flat:
        out["latency_jitter_ms"] = _number("latency.jitter_ms", flat["latency_jitter_ms"], 0.0, 60000)
    if flat.get("start_at") is not None:
        out["start_at"] = _number("start_at", flat["start_at"], 0.0, 86400 * 30)
    for flag in ("overlap", "allow_unscheduled"):
        if flag in flat:
            if not isinstance(flat[flag], bool):
                raise UserError(f"nemesis {flag} must be true or false, got {flat[flag]!r}")
            out[flag] = flat[flag]
    return NemesisSpec(**out)


@dataclass(frozen=True)
class ScheduledAction:
    """One nemesis op to invoke ``at`` seconds after the run started."""

    at: float
    op: NemesisOp

    def to_json(self) -> dict[str, Any]:
        return {"at": round(self.at, 6), "f": self.op.f, "value": self.op.value}

    @staticmethod
    def from_json(obj: Any) -> "ScheduledAction":
        """Parse one stored action; ValueError naming the problem."""
        if not isinstance(obj, Mapping) or "at" not in obj or "f" not in obj:
            raise ValueError(f"expected {{at, f, value}}, got {obj!r}")
        at, f = obj["at"], obj["f"]
        if isinstance(at, bool) or not isinstance(at, (int, float)) or at < 0 or not math.isfinite(at):
            raise ValueError(f"at must be non-negative seconds, got {at!r}")
        if not isinstance(f, str) or not f:
            raise ValueError(f"f must be a non-empty string, got {f!r}")
        return ScheduledAction(at=float(at), op=NemesisOp(f=f, value=obj.get("value")))


def replicas_refusal(target: Any) -> str | None:
    """Why ``targets = "replicas"`` cannot be drawn for ``target`` (one line), or None."""
    if "preference-list" in target.capabilities:
        return None
    return (f"nemesis targets replicas: the {target.name} target cannot say which nodes hold a key's replicas "
            "(no preference-list capability)")


def resolve_targets(targets: str, nodes: Sequence[str], rng: random.Random) -> list[str]:
    """Jepsen's node specs: one random node, a random minority/majority, all, or a named list."""
    nodes = list(nodes)
    if not nodes:
        raise UserError("nemesis: the cluster has no nodes")
    if targets == "one":
        return [rng.choice(nodes)]
    if targets == "all":
        return nodes
    if targets == "replicas":       # build_schedule names each draw's replicas: never reaches here
        raise UserError("nemesis targets replicas: the schedule was built without the keys' replicas")
    if targets in ("minority", "majority"):
        size = topology.majority(len(nodes)) - (1 if targets == "minority" else 0)
        if size < 1:
            raise UserError(f"nemesis targets {targets}: a cluster of {len(nodes)} node(s) has no minority")
        picked = rng.sample(nodes, size)
        return sorted(picked, key=nodes.index)
    named = [x.strip() for x in targets.split(",") if x.strip()]
    unknown = [x for x in named if x not in nodes]
    if unknown:
        raise UserError(f"nemesis targets: unknown node(s) {', '.join(unknown)} (nodes: {', '.join(nodes)}; "
                        f"or one of {', '.join(TARGETS)})")
    return list(dict.fromkeys(named))


def _check_size(spec: NemesisSpec, nodes: int, duration: float) -> None:
    """Refuse, before building it, a schedule too big to plan (``harness.limits`` says why):
    a week at the shortest interval would be millions of ops."""
    holds = spec.holds()
    changes = sum(2 * (max(0, math.floor((duration - start) / (min(holds[f] for f in kinds) + spec.interval))) + 1)
                  for start, kinds in spec.streams())
    too_many = changes > MAX_FAULT_CHANGES
    if too_many or ("partition" in spec.faults and changes * nodes**2 > MAX_PARTITION_PAIRS):
        limit = (f"at most {MAX_FAULT_CHANGES}" if too_many
                 else f"at most {MAX_PARTITION_PAIRS // nodes**2} with partitions on {nodes} nodes")
        raise UserError(f"nemesis: a {duration:g} s run at a {spec.interval:g} s interval plans about {changes} "
                        f"fault changes ({limit}): use a longer nemesis.interval or a shorter duration")


def build_schedule(spec: NemesisSpec, nodes: Sequence[str], seed: int, duration: float,
                   replica_sets: Sequence[Sequence[str]] = ()) -> list[ScheduledAction]:
    """Every nemesis action of a run, in time order; the same for the same (spec, nodes, seed, duration,
    replica_sets).

    With ``targets = "replicas"``, each fault occurrence picks one of ``replica_sets`` (the nodes
    holding one key's replicas each, one per key the workload uses: the target's preference
    lists) and acts on those nodes together; UserError when there are none.

    A fault is only started if its stop falls before ``duration``; the last
    action is ``heal`` (after the last stop). No faults -> no actions. A stream
    draws each of its kinds once (in a seeded order) before any kind repeats, so
    whether every requested kind happens depends on the timing alone
    (``nemeses.room``), not on the seed.
    """
    if not spec.enabled:
        return []
    nodes = list(nodes)
    _check_size(spec, len(nodes), duration)
    if spec.targets == "replicas" and not replica_sets:
        raise UserError("nemesis targets replicas: no key's replicas to pick from (the target cannot say "
                        "which nodes hold a key's replicas, or the workload has no keys)")
    kinds = {name: k for name, k in fault_kind.registered().items() if name in spec.faults}
    holds = spec.holds()
    timed: list[tuple[float, int, int, NemesisOp]] = []  # (at, stream, seq, op): a total, stable order
    for s, (t, stream) in enumerate(spec.streams()):
        rng = random.Random(f"dynharness-nemesis/{seed}/{s}")
        picks = random.Random(f"dynharness-nemesis/{seed}/{s}/replicas")
        pending = list(stream)   # kinds not drawn yet
        seq = 0
        while True:
            fault = rng.choice(pending or stream)
            hold = holds[fault]
            if t + hold >= duration:
                break
            if fault in pending:
                pending.remove(fault)
            drawn = spec
            if spec.targets == "replicas":      # its own stream: which faults run when stays the same
                drawn = dataclasses.replace(spec, targets=",".join(picks.choice(replica_sets)))
            start, stop = kinds[fault].draw(drawn, nodes, rng)
            timed.append((t, s, seq, start))
            timed.append((t + hold, s, seq + 1, stop))
            seq += 2
            t = t + hold + spec.interval
    timed.sort(key=lambda x: (x[0], x[1], x[2]))
    actions = [ScheduledAction(at=round(at, 6), op=op) for at, _, _, op in timed]
    end = actions[-1].at if actions else min(spec.first_at, duration)
    actions.append(ScheduledAction(at=end, op=NemesisOp("heal", None)))
    return actions


def dump_schedule(path: str | os.PathLike[str], actions: Sequence[ScheduledAction]) -> None:
    """Write a schedule file (``nemesis-schedule.json``) that :func:`load_schedule` replays exactly."""
    doc = {"version": SCHEDULE_VERSION, "actions": [a.to_json() for a in actions]}
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def load_schedule(path: str | os.PathLike[str]) -> list[ScheduledAction]:
    """Read a schedule file back (UserError naming the file and the problem)."""
    p = os.fspath(path)
    if os.path.isdir(p):
        p = os.path.join(p, "nemesis-schedule.json")
    try:
        with open(p, encoding="utf-8") as fh:
            doc = json_loads(fh.read())
    except OSError as e:
        raise UserError(f"{p}: cannot read nemesis schedule: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not a nemesis schedule (JSON error line {e.lineno}: {e.msg})") from None
    items = doc.get("actions") if isinstance(doc, Mapping) else doc
    if not isinstance(items, list):
        raise UserError(f"{p}: not a nemesis schedule (expected {{\"actions\": [...]}})")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(ScheduledAction.from_json(item))
        except ValueError as e:
            raise UserError(f"{p}: action {i}: {e}") from None
    if any(b.at < a.at for a, b in zip(out, out[1:])):
        raise UserError(f"{p}: actions are not in time order")
    return out
