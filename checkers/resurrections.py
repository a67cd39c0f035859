"""Resurrections: acknowledged removes and real deletes whose item is back in the final read.

**Removes** (the cart's rewrite without the item): the Dynamo paper's accepted anomaly (a remove
concurrent with a stale add is undone by the union merge). The rule mirrors the lost-write rule
(:func:`checkers.set_rules.presence_explained`): an item present in the key's final read is
*resurrected* when an ``ok`` remove of it completed before the final read began, it was added by
some non-failed add (items never added are the lost-writes checker's "unexpected"), and no legal
set execution lets that add take effect after every ok remove that completed before the read.
Removes and adds concurrent with the final read, and ``info`` adds that may land late, therefore
never count. Valid (the anomaly is expected of vector-clock carts) unless the option
``resurrections_invalid`` is true.

**Real deletes** (``f = "delete"``: DELETE with the context of the delete's own read, which leaves
a tombstone covering every version that read saw). A delete is *judged* when it is ``ok``, is the
key's first (no other non-failed delete began before it completed), no non-failed remove of the
key began before it completed (a remove's version carries no item of its own, so a read that
missed it cannot be told apart), and its read saw every item whose add was acknowledged before
the delete began. Then each acknowledged add's version (it alone has that add's item) was seen,
so the tombstone covers every acknowledged version of the key. An item of a judged delete present
in the final read (the delete completed before that read began) is:

* **undone** (accepted, counted): some non-failed add or remove of the key that could have read
  the item (invoked after an add of it began) may take effect after the delete began: a concurrent
  or stale read-modify-write wrote it back, the same mechanism as a remove-resurrection;
* **resurrected delete** (anomaly, **invalid** whatever ``resurrections_invalid`` says):
  nothing could have written it back, so the store lost its tombstone (reaped before every
  replica had it, a merge that drops it, a replica that revives what it had).

In ``lww`` mode with a clock fault in the history a later write may beat the tombstone by its
skewed stamp: deletes are then not judged. The cart workload's bin carts (``cart-w{worker}-{n}``:
filled by one worker, deleted once, only read after) are built to be judged.

Verdict: invalid on a resurrected delete, or on a remove-resurrection with
``resurrections_invalid``; unknown when an acknowledged remove or delete has no ok final read of
its key; else valid.
"""
from __future__ import annotations

from checkers.base import Anomaly, CheckContext, Result, Verdict
from checkers.lost_writes import MAX_LISTED, NS_PER_MS
from checkers.quantiles import OpPair, without_gc
from checkers.set_rules import SetOps, collect_set_ops, last_op_before_read, presence_explained, read_set
from harness.history import History


def judged(so: SetOps, d: OpPair) -> bool:
    """Whether delete ``d`` covers every acknowledged version of its key (see the module docstring)."""
    if not d.ok:
        return False
    if any(o is not d and not o.failed and o.s < d.e for o in so.delete_ops):
        return False
    if any(not r.failed and r.s < d.e for rs in so.removes.values() for r in rs):
        return False
    seen = read_set(d.read_value)
    return all(x in seen for x, adds in so.adds.items() if any(a.ok and a.e < d.s for a in adds))


def carriers(so: SetOps, x: object) -> list[OpPair]:
    """The writes of the key that could have written ``x`` back: the adds of ``x``, and every
    read-modify-write add or remove invoked after an add of ``x`` began (it writes what its read
    saw; a blind add writes only its own item)."""
    adds_x = so.adds.get(x, [])
    if not adds_x:
        return []
    first = min(a.s for a in adds_x)
    writes = [o for ops in (*so.adds.values(), *so.removes.values()) for o in ops if not o.flag("blind")]
    return list({id(o): o for o in [*adds_x, *(o for o in writes if o.s >= first)]}.values())


def judge_deletes(k: object, so: SetOps, final: OpPair, final_set: frozenset) -> tuple[list[Anomaly], int, int]:
    """(resurrected-delete anomalies, items undone by a write-back, deletes judged) of one key."""
    found: list[Anomaly] = []
    undone = 0
    ds = [d for d in so.delete_ops if judged(so, d)]
    for d in ds:
        if d.e >= final.s:
            continue  # the final read may have come first
        for x in sorted(read_set(d.read_value) & final_set, key=repr):
            if last_op_before_read(carriers(so, x), [d], final) is not False:
                undone += 1
                continue
            found.append(Anomaly(
                "resurrected-delete",
                f"item {x!r} of {k} was deleted by op {d.index} (acked at {d.end / NS_PER_MS:.3f} ms; its read "
                f"saw every acknowledged item) and no later write could restore it, yet it is back in the "
                f"final read (op {final.index})", (d.index, final.index), None if k is None else str(k), int(d.end)))
    return found, undone, len(ds)


def removes_resurrected(k: object, so: SetOps, final: OpPair, final_set: frozenset) -> list[Anomaly]:
    """The accepted kind: acknowledged removes of items back in the final read (module docstring)."""
    found = []
    for x, rms in so.removes.items():
        ok_rms = [r for r in rms if r.ok]
        if not ok_rms or x not in final_set:
            continue
        if not any(r.e < final.s for r in ok_rms):
            continue  # every acked remove overlaps the final read: the read may come first
        adds = so.adds.get(x, [])
        if not any(not a.failed and a.s < final.e for a in adds):
            continue  # no add could precede the read: lost-writes reports it (unexpected / failed-present)
        if presence_explained(adds, rms, final) is not False:
            continue
        rm = max((r for r in ok_rms if r.e < final.s), key=lambda r: r.s)
        found.append(Anomaly(
            "resurrection",
            f"item {x!r} removed from {k} by op {rm.index} (acked at {rm.end / NS_PER_MS:.3f} ms) "
            f"is back in the final read (op {final.index})",
            (rm.index, final.index), None if k is None else str(k), int(rm.end)))
    return found


class ResurrectionsChecker:
    """Removes undone by the final read (accepted by default) and real deletes undone (invalid)."""

    name = "resurrections"
    options = ("resurrections_invalid",)  # the [checkers] spec options it reads
    needs_final_reads = True   # as lost-writes: a run without final reads is not judged from ordinary reads

    @without_gc
    def check(self, history: History, ctx: CheckContext) -> Result:
        by_key, _ = collect_set_ops(history)
        found: list[Anomaly] = []
        deleted: list[Anomaly] = []
        acked_removes = acked_deletes = unread = undone = judged_deletes = 0
        skew = ctx.settings.get("mode") == "lww" and any("clock" in o.f for o in history.nemesis_ops())
        for k, so in by_key.items():
            k_removes = sum(1 for rms in so.removes.values() if any(r.ok for r in rms))
            k_deletes = sum(1 for d in so.delete_ops if d.ok)
            acked_removes, acked_deletes = acked_removes + k_removes, acked_deletes + k_deletes
            if so.final is None:
                unread += k_removes + k_deletes
                continue
            final_set = read_set(so.final.read_value)
            found += removes_resurrected(k, so, so.final, final_set)
            if not skew:
                more, k_undone, k_judged = judge_deletes(k, so, so.final, final_set)
                deleted, undone, judged_deletes = deleted + more, undone + k_undone, judged_deletes + k_judged
        invalid_wanted = bool(ctx.options.get("resurrections_invalid", False))
        counts = {"resurrections": len(found), "acked_removes": acked_removes, "removes_never_read": unread,
                  "resurrected_deletes": len(deleted), "acked_deletes": acked_deletes,
                  "deletes_judged": judged_deletes, "deletes_undone": undone}
        details = {"resurrections_invalid": invalid_wanted, "deletes_judged_rule": "skipped: lww with clock faults"
                   if skew else "first ok delete of its key, no remove before it, its read saw every acked item"}
        anomalies = tuple(deleted[:MAX_LISTED]) + tuple(found[:MAX_LISTED])
        if deleted:
            reason = f"{len(deleted)} deleted items came back with nothing to write them back"
            return Result(self.name, Verdict.INVALID, counts, anomalies, details, reason)
        if found and invalid_wanted:
            verdict, reason = Verdict.INVALID, f"{len(found)} acknowledged removes resurrected"
        elif unread:
            verdict, reason = Verdict.UNKNOWN, f"{unread} acknowledged removes or deletes have no ok final read of their key"
        else:
            verdict = Verdict.VALID
            reason = (f"{len(found)} acknowledged removes resurrected (accepted: resurrections_invalid is off)"
                      if found else None)
        return Result(self.name, verdict, counts, anomalies, details, reason)
