"""The rules of a set history (cart), shared by the lost-writes and resurrections checkers.

A cart history grouped per key (:func:`collect_set_ops`): its adds, removes and real deletes
per item, its ok reads and its final read; and the one question both checkers ask of an item in
that final read: does some legal execution of the history explain its absence (lost-writes) or its
presence (resurrections)? Ops take effect inside their interval (ok), at any later moment or
never (info / open), or never (fail); positions are history indexes, which order all events.

A real delete (``f = "delete"``, ``harness.workloads.cart``) takes out exactly the items its own
read saw: its completion's value lists them, and it acts as a remove of each of them.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from checkers.quantiles import OpPair, client_pairs
from harness.history import History


def items_of(value: Any) -> list[Any]:
    """The items an add/remove names: a bare item, or a list of them (blind adds write ``[item]``)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def read_set(value: Any) -> frozenset:
    """The set a read returned (a list of items; None when the key was absent)."""
    if value is None:
        return frozenset()
    if isinstance(value, (list, tuple, set, frozenset)):
        return frozenset(value)
    return frozenset([value])


@dataclass(frozen=True)
class SetOps:
    """The add / remove / delete / read pairs of one key, and its final read (None when none was ok)."""

    adds: dict[Any, list[OpPair]]
    removes: dict[Any, list[OpPair]]
    reads: list[OpPair]        # ok reads, in completion order
    final: OpPair | None
    final_attempted: bool      # some read of this key was marked final (or, unmarked history, any read)
    deletes: dict[Any, list[OpPair]] = field(default_factory=dict)  # item -> deletes whose read saw it
    delete_ops: list[OpPair] = field(default_factory=list)          # every delete of the key

    def removals(self, x: Any) -> list[OpPair]:
        """Every op that may take ``x`` out of the set: its removes, and the deletes that saw it."""
        return [*self.removes.get(x, ()), *self.deletes.get(x, ())]


def collect_set_ops(history: History) -> tuple[dict[Any, SetOps], bool]:
    """Group a cart/set history by key and pick each key's final read.

    Returns ``(by_key, marked)`` where ``marked`` says whether the history
    marks final reads (``final: true``); shared with the resurrections checker
    so both use one definition of "the final read".
    """
    adds: dict[Any, dict[Any, list[OpPair]]] = defaultdict(lambda: defaultdict(list))
    removes: dict[Any, dict[Any, list[OpPair]]] = defaultdict(lambda: defaultdict(list))
    deletes: dict[Any, dict[Any, list[OpPair]]] = defaultdict(lambda: defaultdict(list))
    delete_ops: dict[Any, list[OpPair]] = defaultdict(list)
    reads: dict[Any, list[OpPair]] = defaultdict(list)
    finals: dict[Any, list[OpPair]] = defaultdict(list)
    keys: dict[Any, None] = {}
    marked = False
    for p in client_pairs(history):
        k = p.key
        if p.f == "add":
            keys[k] = None
            for x in items_of(p.invoke.value):
                adds[k][x].append(p)
        elif p.f == "remove":
            keys[k] = None
            for x in items_of(p.invoke.value):
                removes[k][x].append(p)
        elif p.f == "delete":  # a real delete takes out what its own read saw (the completion's value)
            keys[k] = None
            delete_ops[k].append(p)
            for x in items_of(p.read_value) if p.read_value is not None else ():
                deletes[k][x].append(p)
        elif p.f == "read":
            keys[k] = None
            is_final = bool(p.flag("final"))
            marked = marked or is_final
            if is_final:
                finals[k].append(p)
            if p.ok:
                reads[k].append(p)
    out: dict[Any, SetOps] = {}
    for k in keys:
        rs = sorted(reads.get(k, []), key=lambda p: p.completion.index)  # type: ignore[union-attr]
        if marked:
            oks = [p for p in finals.get(k, []) if p.ok]
            final = max(oks, key=lambda p: p.completion.index) if oks else None  # type: ignore[union-attr]
            attempted = bool(finals.get(k))
        else:
            final = rs[-1] if rs else None
            attempted = final is not None
        out[k] = SetOps(dict(adds.get(k, {})), dict(removes.get(k, {})), rs, final, attempted,
                        dict(deletes.get(k, {})), delete_ops.get(k, []))
    return out, marked


def _latest_forced_start(ops: Iterable[OpPair], cutoff: int) -> float:
    """Largest invoke position among ok ops that completed before event ``cutoff`` (-inf if none)."""
    return max((o.s for o in ops if o.ok and o.e < cutoff), default=-math.inf)


def absence_explained(adds: list[OpPair], removes: Iterable[OpPair], final: OpPair) -> OpPair | bool:
    """Can the final read lack this element in some legal set execution? (The lost-write rule.)

    Every ok op takes effect at one moment inside its interval, info/open ops
    at any moment after their invoke or never, failed ops never; the read
    sees the element iff the last add/remove before its own moment is an add.
    Positions are history indexes, which order all events totally.

    Absence is explained when no ok add completed before the read began
    (the read can go first: returns True), or when some non-failed remove
    ``rm`` began before the read completed and can be placed after every ok
    add that completed before ``max(read invoke, rm invoke)`` (returns ``rm``).
    Returns False when nothing explains it: the element is lost.
    """
    if not any(a.ok and a.e < final.s for a in adds):
        return True
    return last_op_before_read(removes, adds, final)


def presence_explained(adds: Iterable[OpPair], removes: list[OpPair], final: OpPair) -> OpPair | bool:
    """The mirror rule (resurrections): can the final read contain this element legally?

    Returns the non-failed add that began before the read completed and can
    be placed after every ok remove that completed before ``max(read invoke,
    add invoke)``, or False when none can.
    """
    return last_op_before_read(adds, removes, final)


def last_op_before_read(candidates: Iterable[OpPair], opposite: list[OpPair], final: OpPair) -> OpPair | bool:
    """A candidate op that can be the last one on the element before ``final`` reads it, or False.

    It must not have failed, must begin before the read completes, and must
    be placeable after every ok ``opposite`` op forced before the read's
    earliest possible moment at or after its own invoke. That earliest moment
    is optimal: a later one only forces more opposite ops in before it.
    """
    for c in candidates:
        if c.failed or c.s >= final.e:
            continue
        if c.e > _latest_forced_start(opposite, max(final.s, c.s)):
            return c
    return False
