"""Session guarantees (Terry et al. 1994) per client session, for the session workload.

Each session (the ``session`` extra field; the process when absent) writes
its own keys with values that increase per key (1, 2, 3, ...), so for a key
a larger value is a later version, and a read *reflects* value ``v`` when the
largest sibling it returned is ``>= v`` (``[]`` reflects nothing). A read
*observes* the write whose (key, value) is its largest sibling.

Session order: a session's ops by invoke. An op *counts* (may constrain later
ops) only if it completed before the session's next op was invoked; only
``ok`` writes and ``ok`` reads ever constrain anything (an ``info`` write may
or may not have happened, so missing it is never a violation). For an ok read
``r`` of key ``k`` by session ``q``, with ``r1``, ``w`` ... ranging over
counting ok ops before ``r`` in their sessions:

* **read-your-writes**: ``r`` reflects every ok write of ``q`` to ``k`` before ``r``.
* **monotonic reads**: ``r`` reflects the largest value of every read of ``k`` by ``q`` before ``r``.
* **monotonic writes**: if ``q`` earlier read (``r1``) a write ``w'`` of session
  ``p``, ``r`` reflects every ok write of ``p`` to ``k`` that preceded ``w'``
  in ``p``'s order (writes become visible in the order they were issued).
* **writes-follow-reads**: if ``q`` earlier read a write ``w'`` of session
  ``s``, ``r`` reflects the largest value of every read of ``k`` by ``s`` that
  preceded ``w'`` (a write is visible only after what its writer had read).

A violating read counts once, under the first guarantee it breaks in the
order above, and names the session, the read, the write it missed and the
ops that made it required. Verdict: invalid when any guarantee is broken
(option ``session_violations_invalid: false`` reports them and stays valid).

Because each key's versions are totally ordered by value, every guarantee
reduces to comparing a read with a running maximum; no cycle search is needed
and the check is O(ops x sessions) (monotonic writes / writes-follow-reads
walk each writer's session once per reader).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from checkers.base import Anomaly, CheckContext, Result, Verdict
from checkers.lost_writes import MAX_LISTED
from checkers.quantiles import OpPair, client_pairs, without_gc
from harness.history import History

GUARANTEES = (("ryw", "read-your-writes", "rw_violations"), ("mr", "monotonic-reads", "mr_violations"),
              ("mw", "monotonic-writes", "mw_violations"), ("wfr", "writes-follow-reads", "wfr_violations"))


def read_max(value: Any) -> int:
    """The newest version a read returned: its largest sibling value, 0 for an absent key."""
    if value is None:
        return 0
    if isinstance(value, (list, tuple)):
        nums = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return max(nums) if nums else 0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return 0


@dataclass(frozen=True)
class SessionOp:
    """One op of a session: its pair, position in the session, and whether it counts."""

    pair: OpPair
    session: Any
    pos: int
    counts: bool

    @property
    def is_write(self) -> bool:
        return self.pair.f == "write"

    @property
    def value(self) -> int:
        """Written value for writes, newest version returned for reads."""
        return self.pair.invoke.value if self.is_write else read_max(self.pair.read_value)


def sessions_of(history: History) -> dict[Any, list[SessionOp]]:
    """Each session's read/write ops in session order, with the 'counts' flag set."""
    raw: dict[Any, list[OpPair]] = defaultdict(list)
    for p in client_pairs(history):
        if p.f not in ("read", "write"):
            continue
        s = p.flag("session")
        raw[p.process if s is None else s].append(p)
    out: dict[Any, list[SessionOp]] = {}
    for s, ps in raw.items():
        ops = []
        for i, p in enumerate(ps):
            nxt = ps[i + 1].invoke.index if i + 1 < len(ps) else None
            counts = p.completion is not None and (nxt is None or p.completion.index < nxt)
            ops.append(SessionOp(p, s, i, counts))
        out[s] = ops
    return out


def writes_by_version(sessions: dict[Any, list[SessionOp]]) -> dict[tuple[Any, Any], SessionOp]:
    """(key, value) -> the (first) non-failed write of it: what a read's newest sibling observed."""
    out: dict[tuple[Any, Any], SessionOp] = {}
    for ops in sessions.values():
        for o in ops:
            if o.is_write and not o.pair.failed:
                out.setdefault((o.pair.key, o.pair.invoke.value), o)
    return out


def _fmt(o: SessionOp) -> str:
    return f"op {o.pair.index}"


class SessionChecker:
    """Read-your-writes, monotonic reads, monotonic writes and writes-follow-reads per session."""

    name = "session"

    @without_gc
    def check(self, history: History, ctx: CheckContext) -> Result:
        sessions = sessions_of(history)
        versions = writes_by_version(sessions)
        # Per writer session: the counting ok ops that can become requirements, as
        # (pos, kind, key, value, op); reads only where they raise the writer's running max.
        deps: dict[Any, list[tuple[int, str, Any, int, SessionOp]]] = {}
        for s, ops in sessions.items():
            seen: dict[Any, int] = {}
            ev = []
            for o in ops:
                if not (o.counts and o.pair.ok):
                    continue
                k, v = o.pair.key, o.value
                if o.is_write:
                    ev.append((o.pos, "w", k, v, o))
                elif v > seen.get(k, 0):
                    seen[k] = v
                    ev.append((o.pos, "r", k, v, o))
            deps[s] = ev

        found: dict[str, list[Anomaly]] = {g: [] for g, _, _ in GUARANTEES}
        checked_reads = 0
        for q, ops in sessions.items():
            req: dict[str, dict[Any, tuple[int, tuple]]] = {g: {} for g, _, _ in GUARANTEES}
            frontier: dict[Any, int] = defaultdict(int)   # writer -> index into deps[writer]
            for o in ops:
                p = o.pair
                k = p.key
                if not p.ok:
                    continue
                if o.is_write:
                    if o.counts and o.value > req["ryw"].get(k, (0,))[0]:
                        req["ryw"][k] = (o.value, (o,))
                    continue
                checked_reads += 1
                got = o.value
                for g, gname, _ in GUARANTEES:
                    need = req[g].get(k)
                    if need is not None and got < need[0]:
                        found[g].append(self._anomaly(g, gname, q, o, need, versions))
                        break
                if not o.counts:
                    continue
                if got > req["mr"].get(k, (0,))[0]:
                    req["mr"][k] = (got, (o,))
                w_obs = versions.get((k, got))
                if w_obs is None:
                    continue
                ev = deps.get(w_obs.session, [])
                j = frontier[w_obs.session]
                while j < len(ev) and ev[j][0] < w_obs.pos:
                    _, kind, dk, dv, dop = ev[j]
                    g = "mw" if kind == "w" else "wfr"
                    if dv > req[g].get(dk, (0,))[0]:
                        req[g][dk] = (dv, (dop, w_obs, o))
                    j += 1
                frontier[w_obs.session] = j

        counts: dict[str, Any] = {c: len(found[g]) for g, _, c in GUARANTEES}
        counts["sessions"] = len(sessions)
        counts["reads_checked"] = checked_reads
        total = sum(len(v) for v in found.values())
        invalid_wanted = bool(ctx.options.get("session_violations_invalid", True))
        anomalies = tuple(a for g, _, _ in GUARANTEES for a in found[g][:MAX_LISTED])
        if total and invalid_wanted:
            verdict = Verdict.INVALID
        elif checked_reads == 0:
            verdict = Verdict.UNKNOWN
        else:
            verdict = Verdict.VALID
        reason = (", ".join(f"{len(found[g])} {name}" for g, name, _ in GUARANTEES if found[g])
                  if total else ("no ok reads to check" if checked_reads == 0 else None))
        return Result(self.name, verdict, counts, anomalies, {"violations_invalid": invalid_wanted}, reason)

    @staticmethod
    def _anomaly(g: str, gname: str, q: Any, r: SessionOp, need: tuple[int, tuple],
                 versions: dict[tuple[Any, Any], SessionOp]) -> Anomaly:
        """The violation record: session, read, the write missed, and why it was required."""
        value, why = need
        k = r.pair.key
        missed = versions.get((k, value))
        head = (f"session {q}: read {_fmt(r)} of {k} returned {r.pair.read_value!r}, "
                f"missing version {value}" + (f" written by {_fmt(missed)}" if missed else ""))
        if g == "ryw":
            tail = f"; the session wrote it itself ({_fmt(why[0])})"
        elif g == "mr":
            tail = f"; the session had already read it ({_fmt(why[0])})"
        elif g == "mw":
            dop, w_obs, r1 = why
            tail = (f"; it precedes {_fmt(w_obs)} of session {w_obs.session}, "
                    f"which this session saw in {_fmt(r1)}")
        else:
            dop, w_obs, r1 = why
            tail = (f"; session {w_obs.session} read it ({_fmt(dop)}) before writing {_fmt(w_obs)}, "
                    f"which this session saw in {_fmt(r1)}")
        ops = [missed.pair.index] if missed else []
        ops += [x.pair.index for x in why if x is not r]
        ops.append(r.pair.index)
        return Anomaly(gname, head + tail, tuple(dict.fromkeys(ops)), None if k is None else str(k),
                       r.pair.completion.time)  # type: ignore[union-attr]
