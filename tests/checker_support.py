"""Building small histories by hand for the checker tests, and brute-force oracles.

``HistoryBuilder`` lets a test say "process 1 added 7 to cart-1 from t=10 to
t=20 ms, ok" and produces the exact ops a run would record (indexes by time).
The oracles restate each checker's rule in the most direct quadratic way, so
property tests can compare the fast checkers against them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.history import History, validate_ops
from harness.ops import Op

MS = 1_000_000


@dataclass
class HistoryBuilder:
    """Collects operations as (invoke time, completion time) intervals, then orders them into ops."""

    events: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    _seq: int = 0

    def op(self, process: int | str, f: str, key: str | None, value: Any, start_ms: float,
           end_ms: float | None, outcome: str = "ok", result: Any = None, *, siblings: int | None = None,
           **extra: Any) -> "HistoryBuilder":
        """One operation; ``end_ms=None`` leaves it open. ``result`` is the completion's value
        (defaults to ``value``); ``extra`` goes on both records."""
        inv = dict(process=process, type="invoke", f=f, key=key, value=value, extra=extra)
        self._add(int(start_ms * MS), inv)
        if end_ms is not None:
            done = dict(process=process, type=outcome, f=f, key=key,
                        value=value if result is None else result, extra=extra,
                        siblings=siblings, error=None if outcome == "ok" else "test")
            self._add(int(end_ms * MS), done)
        return self

    def nemesis(self, f: str, start_ms: float, end_ms: float, outcome: str = "info", value: Any = None,
                effective_ms: float | None = None) -> "HistoryBuilder":
        """A nemesis action (invoke + completion); ``effective_ms``: when it took effect (the
        completion's ``effective``), absent by default as in imported histories."""
        done = {"effective": int(effective_ms * MS)} if effective_ms is not None else {}
        self._add(int(start_ms * MS), dict(process="nemesis", type="invoke", f=f, value=value, extra={}))
        self._add(int(end_ms * MS), dict(process="nemesis", type=outcome, f=f, value=value, extra=done))
        return self

    def _add(self, t: int, fields: dict[str, Any]) -> None:
        self.events.append((t, self._seq, fields))
        self._seq += 1

    def build(self) -> History:
        """The history: ops sorted by time (ties by insertion order), validated like a real one."""
        ops = []
        for i, (t, _, fl) in enumerate(sorted(self.events, key=lambda e: (e[0], e[1]))):
            extra = {k: v for k, v in fl["extra"].items() if v is not None}
            ops.append(Op(index=i, time=t, process=fl["process"], type=fl["type"], f=fl["f"],
                          key=fl.get("key"), value=fl.get("value"), error=fl.get("error"),
                          siblings=fl.get("siblings"), extra=extra))
        validate_ops(ops)
        return History.of(ops)


# --------------------------------------------------------------------------- oracles

def _realizable(order: list[Any]) -> bool:
    """Can ops (objects with .s/.e positions) take effect in this order, each inside its interval?

    For intervals a pairwise check suffices: no op may come before one that
    finished before it began.
    """
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if b.e < a.s:
                return False
    return True


def set_oracle(adds: list[Any], removes: list[Any], final: Any, present: bool) -> bool:
    """Brute force: is there a legal execution in which the final read sees the element as ``present``?

    Tries every subset of the info/open ops and every order of the chosen ops
    plus the read; ok ops must all be in, failed ops never.
    """
    from itertools import permutations
    forced = [o for o in adds + removes if o.ok]
    optional = [o for o in adds + removes if not o.ok and not o.failed]
    n = len(optional)
    for mask in range(1 << n):
        chosen = forced + [optional[i] for i in range(n) if mask >> i & 1] + [final]
        for order in permutations(chosen):
            if not _realizable(list(order)):
                continue
            state = False
            for o in order:
                if o is final:
                    break
                state = o in adds
            if state == present:
                return True
    return False


def session_oracle(history: History) -> list[tuple[str, int]]:
    """Brute force of docs/checkers.md's session guarantees: (guarantee, read index) per violating read.

    Restates every definition with plain loops over whole sessions (quadratic),
    sharing nothing with checkers/session.py but the meaning.
    """
    from collections import defaultdict

    from checkers.quantiles import client_pairs

    def vmax(v):
        if v is None:
            return 0
        if isinstance(v, list):
            return max(v, default=0)
        return v

    by_s = defaultdict(list)
    for p in client_pairs(history):
        if p.f in ("read", "write"):
            s = p.flag("session")
            by_s[p.invoke.process if s is None else s].append(p)
    counts, pos, sess = {}, {}, {}
    for s, ps in by_s.items():
        ps.sort(key=lambda p: p.invoke.index)
        for i, p in enumerate(ps):
            nxt = ps[i + 1].invoke.index if i + 1 < len(ps) else None
            counts[id(p)] = p.completion is not None and (nxt is None or p.completion.index < nxt)
            pos[id(p)], sess[id(p)] = i, s
    writes = {}
    for p in sorted((p for ps in by_s.values() for p in ps), key=lambda p: p.invoke.index):
        if p.f == "write" and not p.failed:
            writes.setdefault((p.key, p.invoke.value), p)

    def good(p):
        return p.ok and counts[id(p)]

    out = []
    for ps in by_s.values():
        for i, r in enumerate(ps):
            if r.f != "read" or not r.ok:
                continue
            k, got = r.key, vmax(r.read_value)
            before = ps[:i]
            ryw = max([w.invoke.value for w in before if w.f == "write" and good(w) and w.key == k], default=0)
            mr = max([vmax(x.read_value) for x in before if x.f == "read" and good(x) and x.key == k], default=0)
            mw = wfr = 0
            for r1 in before:
                if r1.f != "read" or not good(r1):
                    continue
                w_obs = writes.get((r1.key, vmax(r1.read_value)))
                if w_obs is None:
                    continue
                prior = by_s[sess[id(w_obs)]][:pos[id(w_obs)]]
                mw = max([mw] + [w.invoke.value for w in prior if w.f == "write" and good(w) and w.key == k])
                wfr = max([wfr] + [vmax(x.read_value) for x in prior if x.f == "read" and good(x) and x.key == k])
            for g, need in (("read-your-writes", ryw), ("monotonic-reads", mr),
                            ("monotonic-writes", mw), ("writes-follow-reads", wfr)):
                if got < need:
                    out.append((g, r.index))
                    break
    return sorted(out, key=lambda t: t[1])
