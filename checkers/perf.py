"""Performance: throughput, latency quantiles and availability, overall and per fault window.

* Latency = completion time - invoke time of a client op, in ms; quantiles
  p50, p95, p99, p99.9 and max (nearest rank) per ``f`` and outcome
  (ok / fail / info; open ops have no latency).
* Throughput: completed ops per second over the span from the first invoke
  to the last completion, and a per-second timeline by outcome.
* Availability: served ops / all client ops, where served is ok or a fail the
  store decided on purpose (a cas whose compare failed, ``compared: true``);
  other fails, info and still-open ops count as unavailable. Overall, inside each fault window, inside any window and
  outside all of them (an op belongs to a window when it was *invoked* inside
  it; windows from :mod:`checkers.fault_windows`).

Headline: ``availability`` and ``p999_latency_ms`` (of ok ops). Always valid,
unless the options ``min_availability`` or ``max_p999_latency_ms`` are given
and missed; unknown when there are no client ops.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from typing import Any, Sequence

from checkers.base import CheckContext, Result, Verdict
from checkers.fault_windows import fault_windows
from checkers.quantiles import OpPair, client_pairs, summarize, without_gc
from harness.history import History

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


def availability_of(pairs: Sequence[OpPair]) -> dict[str, Any]:
    """Served share and ok p99.9 latency of some ops (the per-window row)."""
    ok_lat = [(p.completion.time - p.invoke.time) / NS_PER_MS for p in pairs if p.ok]  # type: ignore[union-attr]
    lat = summarize(ok_lat)
    return {"ops": len(pairs), "ok": len(ok_lat),
            "availability": (sum(p.served for p in pairs) / len(pairs)) if pairs else None,
            "p99_latency_ms": lat["p99"], "p999_latency_ms": lat["p999"]}


class PerfChecker:
    """Throughput, latency quantiles and availability inside/outside fault windows."""

    name = "perf"
    options = ("min_availability", "max_p999_latency_ms")  # the [checkers] spec options it reads

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

        windows = [w for w in fault_windows(history)]
        invoke_times = [p.invoke.time for p in pairs]  # invoke order = time order
        covered = [0] * (len(pairs) + 1)
        rows = []
        for w in windows:
            lo, hi = bisect_left(invoke_times, w.start), bisect_right(invoke_times, w.end)
            row = {**w.to_json(), **availability_of(pairs[lo:hi])}
            rows.append(row)
            if not w.failed:
                covered[lo] += 1
                covered[hi] -= 1
        inside, outside, run = [], [], 0
        for i, p in enumerate(pairs):
            run += covered[i]
            (inside if run > 0 else outside).append(p)

        counts = {
            "availability": availability,
            "p999_latency_ms": overall["p999"],
            "p99_latency_ms": overall["p99"],
            "throughput_ops_s": completed / span_s,
            "ok_throughput_ops_s": by_outcome.get("ok", 0) / span_s,
            "ops": len(pairs),
            **{f"{k}_ops": v for k, v in sorted(by_outcome.items())},
            "availability_in_faults": availability_of(inside)["availability"],
            "availability_outside_faults": availability_of(outside)["availability"],
        }
        details = {
            "latency_ms": {f"{f}:{t}": summarize(v) for (f, t), v in sorted(lat.items())},
            "ok_latency_ms": overall,
            "windows": rows,
            "inside_faults": availability_of(inside),
            "outside_faults": availability_of(outside),
            "timeline_per_s": [{"second": s, **dict(v)} for s, v in sorted(timeline.items())],
            "span_s": span_s,
        }
        reasons = []
        min_av = ctx.options.get("min_availability")
        if min_av is not None and availability < float(min_av):
            reasons.append(f"availability {availability:.4f} below {min_av}")
        max_p999 = ctx.options.get("max_p999_latency_ms")
        if max_p999 is not None and overall["p999"] is not None and overall["p999"] > float(max_p999):
            reasons.append(f"p99.9 latency {overall['p999']:.1f} ms above {max_p999} ms")
        verdict = Verdict.INVALID if reasons else Verdict.VALID
        return Result(self.name, verdict, counts, (), details, "; ".join(reasons) or None)
