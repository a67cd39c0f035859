"""Performance: throughput, latency quantiles and availability, overall and per fault window.

* Latency = completion time - invoke time of a client op, in ms; quantiles
  p50, p95, p99, p99.9 and max (nearest rank) per ``f`` and outcome
  (ok / fail / info; open ops have no latency).
* Throughput: completed ops per second over the span from the first invoke
  to the last completion, and a per-second timeline by outcome; and the load
  phase's alone (``load_ok_ops_per_s``): ok ops per second among the ops that
  are not final reads (``final: true``), from the first one's invoke to the
  last one's completion, so the recovery wait and the final reads after the
  load do not dilute it (the campaign summary's ops/s column).
* Availability: served ops / all client ops, where served is ok or a fail the
  store decided on purpose (a cas whose compare failed, ``compared: true``);
  other fails, info and still-open ops count as unavailable. Overall; per fault
  window (the ops *invoked* inside it; windows from :mod:`checkers.fault_windows`);
  and in faults / outside faults, where an op is *in faults* when its
  invoke..completion span (..end of history when open) overlaps a window (from
  the fault's request on) or the ``fault_grace_s`` seconds after it closes
  (default :data:`FAULT_GRACE_S`).

Why the overlap and the grace: an op invoked just before a fault starts can
fail because of it, and the first seconds after a fault is undone still carry
it (a killed node restarts and must be seen up again, a healed partition waits
for the failure detector's next probe, etcd elects a leader). Outside that,
nothing excuses a failed op: a fault-free failure is evidence of a store bug (a
ring that gives some keys too few replicas, a coordinator that miscounts its
quorum). So a run whose availability outside faults is below
``min_availability_outside_faults`` (default 0.99; at least
:data:`MIN_OPS_OUTSIDE_FAULTS` such ops, fewer say nothing) is **invalid**, and
each fault-free op that was not served is an ``unavailable`` anomaly.

Headline: ``availability``, ``availability_outside_faults``,
``p999_latency_ms`` (of ok ops) and ``load_ok_ops_per_s``. Valid unless that threshold or the options
``min_availability`` / ``max_p999_latency_ms`` are missed; unknown when there
are no client ops.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from typing import Any, Mapping, Sequence

from checkers.base import Anomaly, CheckContext, Result, Verdict
from checkers.fault_windows import FaultWindow, fault_windows
from checkers.quantiles import OpPair, client_pairs, end_of_history, summarize, without_gc
from harness.history import History

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
#: Seconds after a fault window closes that still count as in the fault (option ``fault_grace_s``):
#: on the reference store a restarted node answers at once but its peers see it up only at their
#: next gossip probe (1 s) and a healed link after the next call; etcd elects a leader within its
#: 1 s election timeout. 5 s covers both with room for a loaded machine's slower restarts (on this
#: project's machine no failed op was invoked after a window closed: docs/checkers.md, perf).
FAULT_GRACE_S = 5.0
#: Default of ``min_availability_outside_faults``: one fault-free op in a hundred may fail.
MIN_AVAILABILITY_OUTSIDE_FAULTS = 0.99
#: Fewer fault-free ops than this judge nothing (one unlucky timeout among 20 ops is not a bug).
MIN_OPS_OUTSIDE_FAULTS = 100
#: Unavailable ops listed as anomalies (the count is always complete).
MAX_LISTED = 1000


def availability_of(pairs: Sequence[OpPair]) -> dict[str, Any]:
    """Served share and ok p99.9 latency of some ops (the per-window row)."""
    ok_lat = [(p.completion.time - p.invoke.time) / NS_PER_MS for p in pairs if p.ok]  # type: ignore[union-attr]
    lat = summarize(ok_lat)
    return {"ops": len(pairs), "ok": len(ok_lat),
            "availability": (sum(p.served for p in pairs) / len(pairs)) if pairs else None,
            "p99_latency_ms": lat["p99"], "p999_latency_ms": lat["p999"]}


def load_ok_ops_per_s(pairs: Sequence[OpPair]) -> float | None:
    """Ok ops per second of the load phase: the ops that are not final reads, from the first one's
    invoke to the last completion among them; None when no such op completed."""
    load = [p for p in pairs if not p.flag("final")]
    ends = [p.completion.time for p in load if p.completion is not None]
    if not ends:
        return None
    span_ns = max(ends) - load[0].invoke.time
    return sum(1 for p in load if p.ok) * NS_PER_S / span_ns if span_ns > 0 else None


def fault_spans(windows: Sequence[FaultWindow], grace_ns: int) -> list[tuple[int, int]]:
    """The merged spans (ns) during which some fault, or its aftermath of ``grace_ns``, may have
    been on: from the fault's *request* (its mechanism acts before it returns: a SIGKILL lands
    before ``kill`` has reaped the process, and ops fail in between) to its end plus the grace."""
    spans: list[tuple[int, int]] = []
    opened = ((min(w.start, w.requested if w.requested is not None else w.start), w.end + grace_ns)
              for w in windows if not w.failed)
    for start, end in sorted(opened):
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def in_faults(p: OpPair, spans: Sequence[tuple[int, int]], starts: Sequence[int], end: int) -> bool:
    """Whether the op's invoke..completion span (..``end`` when open) overlaps one of ``spans``."""
    lo, hi = p.invoke.time, p.completion.time if p.completion is not None else end
    i = bisect_right(starts, hi) - 1          # the last span starting at or before the op's end
    return i >= 0 and spans[i][1] >= lo


def unavailable(p: OpPair) -> Anomaly:
    """A fault-free op the store did not serve, as an anomaly citing it."""
    c = p.completion
    what = f"{p.outcome} ({c.error})" if c is not None and c.error else p.outcome
    return Anomaly("unavailable", f"{p.f} of {p.key} via {p.invoke.node} outside any fault: {what}",
                   (p.index,), p.key, p.invoke.time)


def option_errors(options: Mapping[str, Any]) -> str | None:
    """The first bad perf option, in one line (the spec refuses it before anything starts)."""
    for name in ("min_availability", "min_availability_outside_faults"):
        v = options.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1):
            return f"checkers.{name} must be a number between 0 and 1, got {v!r}"
    for name in ("fault_grace_s", "max_p999_latency_ms"):
        v = options.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            return f"checkers.{name} must be a non-negative number, got {v!r}"
    return None


class PerfChecker:
    """Throughput, latency quantiles and availability inside/outside fault windows."""

    name = "perf"
    #: the [checkers] spec options it reads
    options = ("min_availability", "max_p999_latency_ms", "min_availability_outside_faults", "fault_grace_s")
    check_options = staticmethod(option_errors)

    @without_gc
    def check(self, history: History, ctx: CheckContext) -> Result:
        pairs = client_pairs(history)
        if not pairs:
            return Result(self.name, Verdict.UNKNOWN, {"availability": None, "p999_latency_ms": None},
                          reason="no client ops")
        lat: dict[tuple[str, str], list[float]] = defaultdict(list)
        by_outcome: dict[str, int] = defaultdict(int)
        timeline: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        t0 = pairs[0].invoke.time
        t_last = t0
        ok_lat: list[float] = []
        for p in pairs:
            by_outcome[p.outcome] += 1
            c = p.completion
            if c is None:
                continue
            ms = (c.time - p.invoke.time) / NS_PER_MS
            lat[(p.f, c.type)].append(ms)
            if c.type == "ok":
                ok_lat.append(ms)
            timeline[(c.time - t0) // NS_PER_S][c.type] += 1
            t_last = max(t_last, c.time)
        span_s = max((t_last - t0) / NS_PER_S, 1e-9)
        completed = sum(v for k, v in by_outcome.items() if k != "open")
        overall = summarize(ok_lat)
        availability = sum(p.served for p in pairs) / len(pairs)

        windows = fault_windows(history)
        invoke_times = [p.invoke.time for p in pairs]  # invoke order = time order
        rows = []
        for w in windows:
            lo, hi = bisect_left(invoke_times, w.start), bisect_right(invoke_times, w.end)
            rows.append({**w.to_json(), **availability_of(pairs[lo:hi])})
        grace = float(ctx.options.get("fault_grace_s", FAULT_GRACE_S))
        spans = fault_spans(windows, int(grace * NS_PER_S))
        starts, end = [s for s, _ in spans], end_of_history(history)
        inside, outside = [], []
        for p in pairs:
            (inside if in_faults(p, spans, starts, end) else outside).append(p)
        free = availability_of(outside)["availability"]

        counts = {
            "availability": availability,
            "p999_latency_ms": overall["p999"],
            "p99_latency_ms": overall["p99"],
            "throughput_ops_s": completed / span_s,
            "ok_throughput_ops_s": by_outcome.get("ok", 0) / span_s,
            "load_ok_ops_per_s": load_ok_ops_per_s(pairs),
            "ops": len(pairs),
            **{f"{k}_ops": v for k, v in sorted(by_outcome.items())},
            "availability_in_faults": availability_of(inside)["availability"],
            "availability_outside_faults": free,
            "unavailable_outside_faults": sum(1 for p in outside if not p.served),
        }
        details = {
            "latency_ms": {f"{f}:{t}": summarize(v) for (f, t), v in sorted(lat.items())},
            "ok_latency_ms": overall,
            "windows": rows,
            "inside_faults": availability_of(inside),
            "outside_faults": availability_of(outside),
            "timeline_per_s": [{"second": s, **dict(v)} for s, v in sorted(timeline.items())],
            "span_s": span_s,
            "fault_grace_s": grace,
        }
        reasons, anomalies = [], ()
        min_free = float(ctx.options.get("min_availability_outside_faults", MIN_AVAILABILITY_OUTSIDE_FAULTS))
        if free is not None and len(outside) >= MIN_OPS_OUTSIDE_FAULTS and free < min_free:
            reasons.append(f"availability outside faults {free:.4f} below {min_free:g} "
                           f"({counts['unavailable_outside_faults']} of {len(outside)} fault-free ops not served)")
            anomalies = tuple(unavailable(p) for p in outside if not p.served)[:MAX_LISTED]
        min_av = ctx.options.get("min_availability")
        if min_av is not None and availability < float(min_av):
            reasons.append(f"availability {availability:.4f} below {min_av}")
        max_p999 = ctx.options.get("max_p999_latency_ms")
        if max_p999 is not None and overall["p999"] is not None and overall["p999"] > float(max_p999):
            reasons.append(f"p99.9 latency {overall['p999']:.1f} ms above {max_p999} ms")
        verdict = Verdict.INVALID if reasons else Verdict.VALID
        return Result(self.name, verdict, counts, anomalies, details, "; ".join(reasons) or None)
