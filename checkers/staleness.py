"""Staleness as in PBS (Bailis et al., VLDB 2012): k-staleness and t-visibility, measured per run.

For register (int values) and session (per-key increasing values, reads
return sibling lists) histories. Every value identifies its write (values
are unique per key). Order is by history index.

* **k-staleness** of an ok read ``r`` of key ``k``: the number of ``ok``
  writes to ``k`` that were acknowledged before ``r`` began and that began
  after the write ``r`` returned had been acknowledged (writes *definitely
  newer* than what it saw). For a read of several siblings, the freshest one
  counts; ``null`` / ``[]`` counts as the initial version (older than every
  write); a returned ``info`` write, or one still in flight when ``r``
  began, counts as fresh (k = 0). A read is *stale* when k >= 1.
* **t-visibility**: for each ok read, the last write acknowledged before it
  began, ``t`` = ms from that ack to the read's invoke, and whether the read
  saw it (returned it or something not definitely older); bucketed by t.
* **theory**: P(k-staleness >= k) = (C(N-W, R) / C(N, R))^k for the run's
  N, R, W (``ctx.settings`` n / r / w), beside the observed share.

Reads whose value no write produced are counted as ``unexplained`` and left
out (that is the linearizability checker's business). Headline
``stale_read_share``. Verdict: valid (staleness is measured, not forbidden)
unless option ``stale_reads_invalid`` is true and some read was stale.
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from typing import Any

from checkers.base import Anomaly, CheckContext, Result, Verdict
from checkers.lost_writes import MAX_LISTED
from checkers.quantiles import OpPair, client_pairs, summarize, without_gc
from harness.history import History

NS_PER_MS = 1_000_000
#: t-visibility bucket edges in ms (a bucket is [edge, next edge)).
T_EDGES = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)
K_MAX = 5


def written_value(p: OpPair) -> Any:
    """The value a write installs (``cas`` ``[old, new]`` installs ``new``)."""
    v = p.invoke.value
    if p.f == "cas" and isinstance(v, (list, tuple)) and len(v) == 2:
        return v[1]
    return v


def returned_values(value: Any) -> list[Any]:
    """The versions a read returned: [] for null, the list of siblings, or the single value."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def theoretical_staleness(n: int, r: int, w: int, k: int) -> float | None:
    """PBS: probability a read is at least k versions stale, (C(N-W,R)/C(N,R))^k (no anti-entropy).

    None when N/R/W make no sense (results must stay strict JSON: no NaN).
    """
    if not (0 < r <= n and 0 < w <= n):
        return None
    p = math.comb(n - w, r) / math.comb(n, r)
    return p ** k


class _Fenwick:
    """Counts of inserted ranks, with prefix sums in O(log n)."""

    def __init__(self, n: int) -> None:
        self.t = [0] * (n + 1)

    def add(self, i: int) -> None:
        i += 1
        while i < len(self.t):
            self.t[i] += 1
            i += i & -i

    def prefix(self, i: int) -> int:
        """How many inserted ranks are < i."""
        s = 0
        while i > 0:
            s += self.t[i]
            i -= i & -i
        return s


class StalenessChecker:
    """k-staleness and t-visibility per run, with the PBS prediction for the run's N/R/W."""

    name = "staleness"
    options = ("stale_reads_invalid",)  # the [checkers] spec options it reads

    @without_gc
    def check(self, history: History, ctx: CheckContext) -> Result:
        writes: dict[Any, list[OpPair]] = defaultdict(list)
        by_value: dict[tuple[Any, Any], OpPair] = {}
        reads: dict[Any, list[OpPair]] = defaultdict(list)
        for p in client_pairs(history):
            inv, comp = p
            f = inv.f
            key = inv.key if inv.key is not None else p.key
            if f == "write" or f == "cas":
                if comp is not None and comp.type == "fail":
                    continue
                v = inv.value if f == "write" else written_value(p)
                try:
                    by_value.setdefault((key, v), p)
                except TypeError:
                    continue  # unhashable value: cannot be identified by a read
                if comp is not None and comp.type == "ok":
                    writes[key].append(p)
            elif f == "read" and comp is not None and comp.type == "ok":
                reads[key].append(p)

        k_hist: dict[int, int] = defaultdict(int)
        buckets = [[0, 0] for _ in T_EDGES]  # [reads, saw it]
        unexplained = considered = stale = 0
        anomalies: list[Anomaly] = []
        inf = math.inf
        for key, rs in reads.items():
            ws = sorted(writes.get(key, []), key=lambda w: w.completion.index)  # type: ignore[union-attr]
            ends = [w.completion.index for w in ws]  # type: ignore[union-attr]
            w_starts = [w.invoke.index for w in ws]
            starts = sorted(w_starts)
            fen = _Fenwick(len(ws))
            queries = []
            for r in rs:
                vals = returned_values(r.completion.value)  # type: ignore[union-attr]
                fresh: float = -1
                try:
                    for v in vals:
                        src = by_value.get((key, v))
                        if src is None:
                            raise LookupError
                        c = src.completion
                        e = c.index if c is not None and c.type == "ok" else inf
                        if e > fresh:
                            fresh = e
                except (LookupError, TypeError):
                    unexplained += 1
                    continue
                queries.append((r.invoke.index, fresh, r))
            queries.sort(key=lambda q: q[0])
            j = 0
            n_ws = len(ws)
            for x, fresh, r in queries:
                while j < n_ws and ends[j] < x:
                    fen.add(bisect_left(starts, w_starts[j]))
                    j += 1
                k = j - fen.prefix(bisect_right(starts, fresh)) if fresh != inf else 0
                considered += 1
                k_hist[k] += 1
                if k >= 1:
                    stale += 1
                    if len(anomalies) < MAX_LISTED:
                        anomalies.append(Anomaly(
                            "stale-read", f"read op {r.index} of {key} returned {r.read_value!r}, "
                            f"{k} acknowledged version(s) behind (latest acked: op {ws[j - 1].index})",
                            (ws[j - 1].index, r.index), None if key is None else str(key), r.invoke.time))
                if j:  # t-visibility against the last write acknowledged before the read began
                    last = ws[j - 1]
                    t_ms = (r.invoke.time - last.completion.time) / NS_PER_MS  # type: ignore[union-attr]
                    b = max(0, bisect_right(T_EDGES, t_ms) - 1)
                    buckets[b][0] += 1
                    buckets[b][1] += fresh > w_starts[j - 1]  # not definitely older than it

        observed = {k: sum(c for kk, c in k_hist.items() if kk >= k) / considered if considered else 0.0
                    for k in range(1, K_MAX + 1)}
        n, r_, w_ = (ctx.settings.get(x) for x in ("n", "r", "w"))
        theory = ({k: theoretical_staleness(int(n), int(r_), int(w_), k) for k in range(1, K_MAX + 1)}
                  if n and r_ and w_ else None)
        curve = [{"t_ms_from": T_EDGES[i], "t_ms_to": T_EDGES[i + 1] if i + 1 < len(T_EDGES) else None,
                  "reads": c, "p_visible": (s / c) if c else None} for i, (c, s) in enumerate(buckets)]
        counts = {
            "stale_read_share": (stale / considered) if considered else 0.0,
            "stale_reads": stale,
            "reads_checked": considered,
            "unexplained_reads": unexplained,
            "max_k_staleness": max(k_hist, default=0),
        }
        details = {
            "k_staleness_histogram": dict(sorted(k_hist.items())),
            "k_staleness_observed": observed,
            "k_staleness_theory": theory,
            "nrw": {"n": n, "r": r_, "w": w_},
            "t_visibility": curve,
            "k_summary": summarize(k for k, c in k_hist.items() for _ in range(c)),
        }
        if considered == 0:
            return Result(self.name, Verdict.UNKNOWN, counts, (), details, "no ok reads to measure")
        if stale and ctx.options.get("stale_reads_invalid"):
            return Result(self.name, Verdict.INVALID, counts, tuple(anomalies), details,
                          f"{stale} of {considered} reads were stale")
        return Result(self.name, Verdict.VALID, counts, tuple(anomalies), details, None)
