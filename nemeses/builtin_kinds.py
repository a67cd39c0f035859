"""The built-in fault kinds, each one :class:`~nemeses.fault_kind.FaultKind` record.

Registered in ``pyproject.toml`` under ``dynharness.nemeses`` like any plugin's. Each draw makes
every random choice of one occurrence here, from the schedule's stream, and writes it into the op
values, so a stored schedule replays without the seed.

* ``partition``: a topology's grudge (who cannot reach whom), iptables or in-process transport.
* ``clock``: bump, strobe or drift of the chosen nodes' clocks (libfaketime).
* ``crash`` / ``wipe``: SIGKILL (and delete the data) of the chosen nodes; ``start`` brings them back.
* ``pause``: SIGSTOP / SIGCONT.
* ``loss`` / ``latency``: lossy or slow links from the chosen nodes (in-process transport).
* ``power-loss``: SIGKILL of the chosen nodes and the loss of whatever their disks never fsynced
  (a lazy file system under each data dir, local and docker backends); ``power-on`` brings them back.

Partition and link parts share one :class:`~nemeses.transport_faults.TransportFaultBook` (the
``shared`` dict of a run's build), so their in-process faults merge per node instead of
overwriting each other.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

from nemeses import topology
from nemeses.base import NemesisOp
from nemeses.clock import ClockNemesis
from nemeses.crash import CrashNemesis
from nemeses.fault_kind import FaultKind
from nemeses.link import LinkNemesis
from nemeses.partition import PartitionNemesis
from nemeses.pause import PauseNemesis
from nemeses.power import PowerLossNemesis
from nemeses.schedule import NemesisSpec, resolve_targets
from nemeses.transport_faults import TransportFaultBook


def _book(shared: dict[str, Any]) -> TransportFaultBook:
    return shared.setdefault("transport-fault-book", TransportFaultBook())


def _on_nodes(start: str, stop: str):
    """A draw for faults that act on the chosen nodes and are undone on the same nodes."""
    def draw(spec: NemesisSpec, nodes: Sequence[str], rng: random.Random) -> tuple[NemesisOp, NemesisOp]:
        picked = resolve_targets(spec.targets, nodes, rng)
        return NemesisOp(start, {"nodes": picked}), NemesisOp(stop, {"nodes": picked})
    return draw


def _draw_partition(spec: NemesisSpec, nodes: Sequence[str], rng: random.Random) -> tuple[NemesisOp, NemesisOp]:
    grudge = topology.compute(spec.partition, nodes, rng)
    return (NemesisOp("start-partition", {"topology": spec.partition, "grudge": topology.grudge_to_json(grudge)}),
            NemesisOp("stop-partition", None))


def _draw_clock(spec: NemesisSpec, nodes: Sequence[str], rng: random.Random) -> tuple[NemesisOp, NemesisOp]:
    picked = resolve_targets(spec.targets, nodes, rng)
    mode = rng.choice(spec.clock_modes)
    value: dict[str, Any] = {"mode": mode, "nodes": picked}
    if mode == "bump":
        value["offset_ms"] = rng.choice(spec.clock_offsets_ms)
    elif mode == "strobe":
        value["offset_ms"] = rng.choice(spec.clock_offsets_ms)
        value["period"] = spec.clock_strobe_period
    else:
        value["rate"] = spec.clock_drift_rate * rng.choice((-1, 1))
    return NemesisOp("start-clock", value), NemesisOp("stop-clock", {"nodes": picked})


def _draw_loss(spec: NemesisSpec, nodes: Sequence[str], rng: random.Random) -> tuple[NemesisOp, NemesisOp]:
    picked = resolve_targets(spec.targets, nodes, rng)
    return (NemesisOp("start-link", {"kind": "loss", "nodes": picked, "probability": spec.loss_probability}),
            NemesisOp("stop-link", {"kind": "loss"}))


def _draw_latency(spec: NemesisSpec, nodes: Sequence[str], rng: random.Random) -> tuple[NemesisOp, NemesisOp]:
    picked = resolve_targets(spec.targets, nodes, rng)
    return (NemesisOp("start-link", {"kind": "latency", "nodes": picked, "delay_ms": spec.latency_ms,
                                     "jitter_ms": spec.latency_jitter_ms}),
            NemesisOp("stop-link", {"kind": "latency"}))


def _draw_power(spec: NemesisSpec, nodes: Sequence[str], rng: random.Random) -> tuple[NemesisOp, NemesisOp]:
    picked = resolve_targets(spec.targets, nodes, rng)
    torn = bool(spec.options.get("power-loss", {}).get("torn", False))
    return NemesisOp("power-off", {"nodes": picked, "torn": torn}), NemesisOp("power-on", {"nodes": picked})


def _nodes(value: Any, done: Any) -> str:
    """The nodes an op acted on: its ``nodes`` list, else the nodes its completion reports on."""
    picked = value.get("nodes") if isinstance(value, dict) else None
    if picked is None and isinstance(done, dict):
        picked = [n for n, v in done.items() if isinstance(v, dict)]
    return ", ".join(sorted(picked or (), key=topology.node_order)) or "no node"


#: what each process op does to its nodes, as outputs say it
_PROCESS_VERBS = {"kill": "killed", "wipe": "killed, data wiped", "start": "restarted", "pause": "paused",
                  "resume": "resumed", "power-off": "power cut, unsynced writes lost", "power-on": "powered on"}


def _describe_process(f: str, value: Any, done: Any) -> str:
    torn = " (torn writes)" if isinstance(value, dict) and value.get("torn") else ""
    return f"{_nodes(value, done)} {_PROCESS_VERBS.get(f, f)}{torn}"


def _describe_partition(f: str, value: Any, done: Any) -> str:
    if f != "start-partition":
        return "partition healed, every link restored"
    grudge = value.get("grudge") if isinstance(value, dict) else None
    if grudge is None:  # only the completion: each node's cut_from
        grudge = {n: v["cut_from"] for n, v in done.items()}
    where = "partition " + topology.describe_grudge(grudge)
    return f"{where} ({value['topology']})" if isinstance(value, dict) and value.get("topology") else where


def _describe_clock(f: str, value: Any, done: Any) -> str:
    nodes = _nodes(value, done)
    if f != "start-clock":
        return f"{nodes} clock reset"
    mode = value.get("mode")
    if mode == "bump":
        return f"{nodes} clock bumped {value['offset_ms']:+g} ms"
    if mode == "strobe":
        return f"{nodes} clock strobing {value['offset_ms']:+g} ms every {value['period']:g} s"
    return f"{nodes} clock drifting at rate {value['rate']:+g}"


def _describe_link(f: str, value: Any, done: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else None
    if f != "start-link":
        return f"{kind or 'link fault'} removed from every link"
    if kind == "loss":
        return f"{value['probability']:.0%} packet loss on the links of {_nodes(value, done)}"
    jitter = f" ± {value['jitter_ms']:g}" if value.get("jitter_ms") else ""
    return f"{value['delay_ms']:g}{jitter} ms delay on the links of {_nodes(value, done)}"


def _crash_part(kinds: frozenset[str], shared: dict[str, Any]) -> CrashNemesis:
    return CrashNemesis(wipe="wipe" in kinds)


def _link_part(kinds: frozenset[str], shared: dict[str, Any]) -> LinkNemesis:
    return LinkNemesis(_book(shared), kinds=[k for k in ("loss", "latency") if k in kinds])


PARTITION = FaultKind("partition", "start-partition", "stop-partition", "partition",
                      lambda kinds, shared: PartitionNemesis(_book(shared)), _draw_partition, describer=_describe_partition)
CLOCK = FaultKind("clock", "start-clock", "stop-clock", "clock", lambda kinds, shared: ClockNemesis(), _draw_clock, describer=_describe_clock,
                  target_needs={"clock": "cannot report its nodes' own clocks, so a skew could not be verified"})
CRASH = FaultKind("crash", "kill", "start", "crash", _crash_part, _on_nodes("kill", "start"),
                  process=True, restarts=True, describer=_describe_process)
WIPE = FaultKind("wipe", "wipe", "start", "crash", _crash_part, _on_nodes("wipe", "start"),
                 process=True, restarts=True, describer=_describe_process,
                 target_needs={"wipe": "has no way for a node restarted with an empty disk to rejoin by itself"})
PAUSE = FaultKind("pause", "pause", "resume", "pause", lambda kinds, shared: PauseNemesis(),
                  _on_nodes("pause", "resume"), process=True,
                  describer=_describe_process)
LOSS = FaultKind("loss", "start-link", "stop-link", "link", _link_part, _draw_loss, describer=_describe_link)
LATENCY = FaultKind("latency", "start-link", "stop-link", "link", _link_part, _draw_latency, describer=_describe_link,
                    target_needs={"transport-faults": "has no in-process transport delay (and tc netem is not "
                                                      "used between nodes)"})
POWER_LOSS = FaultKind("power-loss", "power-off", "power-on", "power", lambda kinds, shared: PowerLossNemesis(),
                       _draw_power, process=True, restarts=True, options={"torn": False}, describer=_describe_process,
                       backend_needs={"lazy-disks": "cannot put the nodes' data dirs on a lazy file system "
                                                    "(FUSE; the local and docker backends can)"})
