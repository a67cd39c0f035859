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

from bisect import bisect_left
from collections import defaultdict
from typing import Any, NamedTuple

from checkers.base import Anomaly, CheckContext, Result, Verdict
from checkers.lost_writes import MAX_LISTED
from checkers.quantiles import OpPair, client_pairs, without_gc
from harness.history import History

_NONE = (0, ())
GUARANTEES = (("ryw", "read-your-writes", "rw_violations"), ("mr", "monotonic-reads", "mr_violations"),
              ("mw", "monotonic-writes", "mw_violations"), ("wfr", "writes-follow-reads", "wfr_violations"))
_NAMES = {g: name for g, name, _ in GUARANTEES}


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


class SessionOp(NamedTuple):
    """One op of a session: its pair, position in the session, and whether it counts.

    A NamedTuple rather than a dataclass: a 1M-op history makes 500k of them.
    ``value`` is the written value for writes, the newest version returned for
    ok reads (0 otherwise).
    """

    pair: OpPair
    session: Any
    pos: int
    counts: bool
    is_write: bool
    ok: bool
    key: Any
    value: Any


def sessions_of(history: History) -> dict[Any, list[SessionOp]]:
    """Each session's read/write ops in session order, with the 'counts' flag set."""
    raw: dict[Any, list[OpPair]] = defaultdict(list)
    for p in client_pairs(history):
        inv = p.invoke
        f = inv.f
        if f != "read" and f != "write":
            continue
        s = inv.extra.get("session")
        if s is None:
            s = p.flag("session")
        raw[inv.process if s is None else s].append(p)
    out: dict[Any, list[SessionOp]] = {}
    for s, ps in raw.items():
        ops = []
        n = len(ps)
        for i, p in enumerate(ps):
            c = p.completion
            counts = c is not None and (i + 1 == n or c.index < ps[i + 1].invoke.index)
            ok = c is not None and c.type == "ok"
            is_write = p.invoke.f == "write"
            value = p.invoke.value if is_write else (read_max(c.value) if ok else 0)  # type: ignore[union-attr]
            ops.append(SessionOp(p, s, i, counts, is_write, ok, p.invoke.key, value))
        out[s] = ops
    return out


def writes_by_version(sessions: dict[Any, list[SessionOp]]) -> dict[tuple[Any, Any], SessionOp]:
    """(key, value) -> the (first) non-failed write of it: what a read's newest sibling observed."""
    out: dict[tuple[Any, Any], SessionOp] = {}
    for ops in sessions.values():
        for o in ops:
            if o.is_write and not o.pair.failed:
                try:
                    out.setdefault((o.key, o.value), o)
                except TypeError:
                    continue  # unhashable value: no read can name it
    return out


def _fmt(o: SessionOp) -> str:
    return f"op {o.pair.index}"


class _WriterIndex:
    """Per writer session: what observing one of its writes makes required of the observer.

    ``writes[(p, k)]`` = positions of p's counting ok writes to k and the
    running (max value, write) at each, for a bisect at read time (monotonic
    writes). ``reads[p]`` = p's counting ok reads that raise the newest
    version p had seen or written of their key, in order (writes-follow-reads):
    a read not above p's own earlier acked write of the key can only require
    what monotonic writes already requires, which is checked first.
    """

    def __init__(self, sessions: dict[Any, list[SessionOp]]) -> None:
        self.writes: dict[tuple[Any, Any], tuple[list[int], list[tuple[Any, SessionOp]]]] = {}
        self.writers_of: dict[Any, list[Any]] = defaultdict(list)
        self.reads: dict[Any, list[SessionOp]] = {}
        for s, ops in sessions.items():
            seen: dict[Any, Any] = {}
            evs = []
            for o in ops:
                if not (o.counts and o.ok):
                    continue
                k, v = o.key, o.value
                if o.is_write:
                    entry = self.writes.get((s, k))
                    if entry is None:
                        entry = self.writes[(s, k)] = ([], [])
                        self.writers_of[k].append(s)
                    poss, best = entry
                    poss.append(o.pos)
                    best.append((v, o) if not best or v > best[-1][0] else best[-1])
                    if v > seen.get(k, 0):
                        seen[k] = v
                elif v > seen.get(k, 0):
                    seen[k] = v
                    evs.append(o)
            self.reads[s] = evs

    def mw_required(self, k: Any, frontier: dict[Any, tuple[int, SessionOp, SessionOp]]) -> tuple[Any, tuple] | None:
        """The newest write to k that precedes an observed write of the same writer, with the witnesses."""
        need = None
        for p in self.writers_of.get(k, ()):
            f = frontier.get(p)
            if f is None:
                continue
            poss, best = self.writes[(p, k)]
            i = bisect_left(poss, f[0]) - 1
            if i >= 0 and (need is None or best[i][0] > need[0]):
                need = (best[i][0], (best[i][1], f[1], f[2]))
        return need


Need = tuple[Any, tuple]   # (version the read had to reach at least, the ops that require it)


def _first_violation(got: Any, ryw: Need | None, mr: Need | None, index: _WriterIndex, k: Any,
                     frontier: dict[Any, tuple[int, SessionOp, SessionOp]], wfr: Need | None
                     ) -> tuple[str, Need] | None:
    """The first guarantee (in GUARANTEES order) that a read of version ``got`` of ``k`` breaks,
    and what it needed; monotonic writes is only worked out (it walks the writers' index) when
    the first two hold."""
    for name, need in (("ryw", ryw), ("mr", mr)):
        if need is not None and got < need[0]:
            return name, need
    need = index.mw_required(k, frontier) if frontier else None
    if need is not None and got < need[0]:
        return "mw", need
    if wfr is not None and got < wfr[0]:
        return "wfr", wfr
    return None


class SessionChecker:
    """Read-your-writes, monotonic reads, monotonic writes and writes-follow-reads per session."""

    name = "session"
    options = ("session_violations_invalid",)  # the [checkers] spec options it reads

    @without_gc
    def check(self, history: History, ctx: CheckContext) -> Result:
        sessions = sessions_of(history)
        versions = writes_by_version(sessions)
        index = _WriterIndex(sessions)
        found: dict[str, list[Anomaly]] = {g: [] for g, _, _ in GUARANTEES}
        checked_reads = 0
        for q, ops in sessions.items():
            ryw: dict[Any, tuple[Any, tuple]] = {}
            mr: dict[Any, tuple[Any, tuple]] = {}
            wfr: dict[Any, tuple[Any, tuple]] = {}
            frontier: dict[Any, tuple[int, SessionOp, SessionOp]] = {}  # writer -> newest observed write
            walked: dict[Any, int] = defaultdict(int)                    # writer -> reads[writer] consumed
            for o in ops:
                if not o.ok:
                    continue
                k = o.key
                if o.is_write:
                    if o.counts and o.value > ryw.get(k, _NONE)[0]:
                        ryw[k] = (o.value, (o,))
                    continue
                checked_reads += 1
                got = o.value
                violated = _first_violation(got, ryw.get(k), mr.get(k), index, k, frontier, wfr.get(k))
                if violated is not None:
                    hit, need = violated
                    found[hit].append(self._anomaly(hit, _NAMES[hit], q, o, need, versions))
                if not o.counts:
                    continue
                if got > mr.get(k, _NONE)[0]:
                    mr[k] = (got, (o,))
                try:
                    w_obs = versions.get((k, got))
                except TypeError:
                    w_obs = None
                if w_obs is None:
                    continue
                p = w_obs.session
                f = frontier.get(p)
                if f is None or w_obs.pos > f[0]:
                    frontier[p] = (w_obs.pos, w_obs, o)
                evs = index.reads.get(p, ())
                j = walked[p]
                while j < len(evs) and evs[j].pos < w_obs.pos:
                    d = evs[j]
                    if d.value > wfr.get(d.key, _NONE)[0]:
                        wfr[d.key] = (d.value, (d, w_obs, o))
                    j += 1
                walked[p] = j

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
    def _anomaly(g: str, gname: str, q: Any, r: SessionOp, need: tuple[Any, tuple],
                 versions: dict[tuple[Any, Any], SessionOp]) -> Anomaly:
        """The violation record: session, read, the write missed, and why it was required."""
        value, why = need
        k = r.key
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
