"""Sibling explosion: how many versions reads saw, per read, per key and over time.

Counts come from the ``siblings`` field every ok read carries (and the
internal read of a cart add/remove, recorded on its ok/info completion).

* Distribution over client reads (f = ``read``, ok): max, p99, and the Dynamo
  paper's divergent-versions table (share of reads that saw 1, 2, 3, 4+
  versions; reads of absent keys, 0 versions, are counted apart).
* Per key: max, and the growth rate (least-squares slope of sibling count
  against time, siblings per second), plus a per-second timeline of the keys
  with the most siblings.
* Thresholds as Riak: a read above ``sibling_warn`` (default 25) is a
  warning, above ``sibling_fail`` (default 100) makes the verdict invalid.
* Concurrency bound: a key's sibling count should not exceed the number of
  writes to it that were truly concurrent, computed from the history as the
  most write intervals (invoke..completion; ``info``/open writes open until
  the end of the history; failed writes excluded) in flight at one moment,
  plus every blind write (``blind: true``: no context, so it may stand beside
  anything). Reads above that bound are flagged. Whether that makes the
  verdict invalid is option ``siblings_bound_invalid``; by default it does only
  in ``dvv`` mode (dotted version vectors promise siblings only from true
  concurrency; vector clocks' false concurrency is the expected anomaly) and
  only when R + W > N and no fault was injected (:func:`bound_is_a_bug`): a
  write whose internal read was stale (partition, sloppy quorum) legitimately
  creates a sibling beside a write it did not overlap.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from checkers.base import Anomaly, CheckContext, Result, Verdict
from checkers.fault_windows import fault_windows
from checkers.quantiles import client_pairs, quantile, without_gc
from harness.history import History
from harness.ops import INFO, NEMESIS, OK

WRITE_FS = frozenset({"add", "remove", "write", "cas", "delete"})
NS_PER_S = 1_000_000_000
#: Keys with the most siblings whose timelines a result includes.
TIMELINE_KEYS = 20


def concurrency_bounds(history: History) -> dict[Any, int]:
    """Per key: most non-blind writes in flight at once (info/open = until the end) + blind writes."""
    events: dict[Any, list[tuple[float, int]]] = defaultdict(list)
    blind: dict[Any, int] = defaultdict(int)
    for p in client_pairs(history):
        if p.f not in WRITE_FS or p.failed:
            continue
        if p.flag("blind"):
            blind[p.key] += 1
            continue
        end = p.e  # positions order events totally; +inf for info/open
        events[p.key].append((p.s, 1))
        events[p.key].append((end, -1))
    out: dict[Any, int] = {}
    for k in set(events) | set(blind):
        cur = best = 0
        for _, d in sorted(events.get(k, ()), key=lambda e: (e[0], e[1])):  # ends before starts at a tie
            cur += d
            best = max(best, cur)
        out[k] = best + blind.get(k, 0)
    return out


def bound_is_a_bug(history: History, ctx: CheckContext) -> tuple[bool, str]:
    """Whether siblings above the concurrency bound make the verdict invalid, and why.

    The option ``siblings_bound_invalid`` decides when given. By default only
    in ``dvv`` mode, and only when nothing could have made a write's internal
    read stale: R + W > N (when the settings say) and no fault window in the
    history. A stale internal read (partition, killed node, sloppy quorum)
    gives the write an old context, and the sibling it then creates is true
    concurrency the history cannot show; flagging it would invent a bug.
    """
    if "siblings_bound_invalid" in ctx.options:
        return bool(ctx.options["siblings_bound_invalid"]), "option siblings_bound_invalid"
    if ctx.settings.get("mode") != "dvv":
        return False, "mode is not dvv: false concurrency is expected"
    n, r, w = (ctx.settings.get(x) for x in ("n", "r", "w"))
    if isinstance(n, int) and isinstance(r, int) and isinstance(w, int) and r + w <= n:
        return False, f"dvv, but R + W <= N ({r} + {w} <= {n}): stale internal reads are expected"
    if any(not fw.failed for fw in fault_windows(history)):
        return False, "dvv, but faults were injected: stale internal reads can create true siblings"
    return True, "dvv, R + W > N, no faults: every sibling must come from concurrent writes"


class SiblingsChecker:
    """Sibling counts: distribution, per-key growth, Riak thresholds and the true-concurrency bound."""

    name = "siblings"
    # the [checkers] spec options it reads
    options = ("sibling_warn", "sibling_fail", "sibling_bucket_ms", "siblings_bound_invalid")

    @without_gc
    def check(self, history: History, ctx: CheckContext) -> Result:
        warn = int(ctx.options.get("sibling_warn", 25))
        fail = int(ctx.options.get("sibling_fail", 100))
        bound_invalid, bound_rule = bound_is_a_bug(history, ctx)
        bucket_ns = int(float(ctx.options.get("sibling_bucket_ms", 1000)) * 1_000_000)

        read_counts: list[int] = []
        absent_reads = 0
        max_all = 0
        per_key_max: dict[Any, int] = defaultdict(int)
        # least-squares sums per key: n, sum t, sum s, sum t*s, sum t*t (t in seconds)
        sums: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0, 0.0])
        timeline: dict[Any, dict[int, int]] = defaultdict(dict)
        observed: list[tuple[Any, int, int, int]] = []  # (key, siblings, op index, time)
        for o in history.ops:
            if o.siblings is None or o.process == NEMESIS or o.type not in (OK, INFO):
                continue
            s = o.siblings
            k = o.key
            max_all = max(max_all, s)
            if s > per_key_max[k]:
                per_key_max[k] = s
            observed.append((k, s, o.index, o.time))
            t = o.time / NS_PER_S
            acc = sums[k]
            acc[0] += 1; acc[1] += t; acc[2] += s; acc[3] += t * s; acc[4] += t * t
            b = o.time // bucket_ns
            tl = timeline[k]
            if s > tl.get(b, -1):
                tl[b] = s
            if o.f == "read" and o.type == OK:
                if s == 0:
                    absent_reads += 1
                else:
                    read_counts.append(s)

        bounds = concurrency_bounds(history)
        anomalies: list[Anomaly] = []
        flagged: dict[str, set] = {"sibling-fail": set(), "sibling-warn": set(), "siblings-exceed-concurrency": set()}
        for k, s, idx, t in observed:
            kind = "sibling-fail" if s > fail else "sibling-warn" if s > warn else None
            if kind and k not in flagged[kind]:
                flagged[kind].add(k)
                limit = fail if kind == "sibling-fail" else warn
                anomalies.append(Anomaly(kind, f"op {idx} saw {s} siblings of {k} (threshold {limit})", (idx,), k, t))
            bound = bounds.get(k, 0)
            if s > max(bound, 1) and k not in flagged["siblings-exceed-concurrency"]:
                flagged["siblings-exceed-concurrency"].add(k)
                anomalies.append(Anomaly(
                    "siblings-exceed-concurrency",
                    f"op {idx} saw {s} siblings of {k}, but at most {bound} writes to it were ever concurrent",
                    (idx,), k, t))

        growth = {}
        for k, (n, st, ss, sts, stt) in sums.items():
            den = n * stt - st * st
            growth[k] = (n * sts - st * ss) / den if n >= 2 and den > 1e-12 else 0.0
        read_counts.sort()
        nreads = len(read_counts)
        table = {label: (sum(1 for c in read_counts if lo <= c <= hi) / nreads if nreads else 0.0)
                 for label, lo, hi in (("1", 1, 1), ("2", 2, 2), ("3", 3, 3), ("4+", 4, math.inf))}
        top = sorted(per_key_max, key=lambda k: (-per_key_max[k], str(k)))[:TIMELINE_KEYS]
        counts = {
            "max_siblings": max_all,
            "p99_siblings": quantile(read_counts, 0.99) or 0,
            "reads_with_siblings": sum(1 for c in read_counts if c > 1),
            "keys_over_warn": len(flagged["sibling-warn"] | flagged["sibling-fail"]),
            "keys_over_fail": len(flagged["sibling-fail"]),
            "keys_over_concurrency_bound": len(flagged["siblings-exceed-concurrency"]),
            "max_growth_per_s": max(growth.values(), default=0.0),
        }
        details = {
            "divergent_versions": table,
            "keys_by_max_siblings": {label: sum(1 for m in per_key_max.values() if lo <= m <= hi)
                                     for label, lo, hi in (("0", 0, 0), ("1", 1, 1), ("2", 2, 2), ("3", 3, 3),
                                                           ("4-25", 4, 25), ("26-100", 26, 100),
                                                           ("100+", 101, math.inf))},
            "reads": nreads, "absent_reads": absent_reads,
            "thresholds": {"warn": warn, "fail": fail},
            "bound_invalid": bound_invalid,
            "bound_rule": bound_rule,
            "per_key": {str(k): {"max": per_key_max[k], "growth_per_s": growth.get(k, 0.0),
                                 "concurrency_bound": bounds.get(k, 0)} for k in top},
            "timeline_bucket_ms": bucket_ns / 1_000_000,
            "timeline": {str(k): sorted(timeline[k].items()) for k in top},
        }
        reasons = []
        if flagged["sibling-fail"]:
            reasons.append(f"{len(flagged['sibling-fail'])} keys over {fail} siblings")
        if flagged["siblings-exceed-concurrency"] and bound_invalid:
            reasons.append(f"{len(flagged['siblings-exceed-concurrency'])} keys with more siblings than concurrent writers")
        if reasons:
            verdict, reason = Verdict.INVALID, "; ".join(reasons)
        elif nreads == 0 and not observed:
            verdict, reason = Verdict.UNKNOWN, "no op recorded a sibling count"
        else:
            verdict, reason = Verdict.VALID, None
        return Result(self.name, verdict, counts, tuple(anomalies), details, reason)
