"""Resurrected deletes: acknowledged removes whose item is back in the final read.

The Dynamo paper's accepted anomaly for the shopping cart (a remove
concurrent with a stale add is undone by the union merge). The rule mirrors
the lost-write rule (:func:`checkers.lost_writes.presence_explained`): an
item present in the key's final read is *resurrected* when an ``ok`` remove
of it completed before the final read began, it was added by some non-failed
add (items never added are the lost-writes checker's "unexpected"), and no
legal set execution lets that add take effect after every ok remove that
completed before the read. Removes and adds concurrent with the final read,
and ``info`` adds that may land late, therefore never count.

Verdict: valid (the anomaly is expected of vector-clock carts) unless the
option ``resurrections_invalid`` is true; unknown when an acknowledged remove
has no ok final read of its key to check against.
"""
from __future__ import annotations

from checkers.base import Anomaly, CheckContext, Result, Verdict
from checkers.lost_writes import (
    MAX_LISTED,
    NS_PER_MS,
    collect_set_ops,
    presence_explained,
    read_set,
)
from checkers.quantiles import without_gc
from harness.history import History


class ResurrectionsChecker:
    """Counts acknowledged removes undone by the time of the final read (separately from lost writes)."""

    name = "resurrections"
    options = ("resurrections_invalid",)  # the [checkers] spec options it reads
    needs_final_reads = True   # as lost-writes: a run without final reads is not judged from ordinary reads

    @without_gc
    def check(self, history: History, ctx: CheckContext) -> Result:
        by_key, _ = collect_set_ops(history)
        found: list[Anomaly] = []
        acked_removes = unread = 0
        for k, so in by_key.items():
            final_set = read_set(so.final.read_value) if so.final is not None else frozenset()
            for x, rms in so.removes.items():
                ok_rms = [r for r in rms if r.ok]
                if not ok_rms:
                    continue
                acked_removes += 1
                if so.final is None:
                    unread += 1
                    continue
                if x not in final_set:
                    continue
                if not any(r.e < so.final.s for r in ok_rms):
                    continue  # every acked remove overlaps the final read: the read may come first
                adds = so.adds.get(x, [])
                if not any(not a.failed and a.s < so.final.e for a in adds):
                    continue  # no add could precede the read: lost-writes reports it (unexpected / failed-present)
                if presence_explained(adds, rms, so.final) is not False:
                    continue
                rm = max((r for r in ok_rms if r.e < so.final.s), key=lambda r: r.s)
                found.append(Anomaly(
                    "resurrection",
                    f"item {x!r} removed from {k} by op {rm.index} (acked at {rm.end / NS_PER_MS:.3f} ms) "
                    f"is back in the final read (op {so.final.index})",
                    (rm.index, so.final.index), None if k is None else str(k), int(rm.end)))
        invalid_wanted = bool(ctx.options.get("resurrections_invalid", False))
        counts = {"resurrections": len(found), "acked_removes": acked_removes, "removes_never_read": unread}
        if found and invalid_wanted:
            verdict, reason = Verdict.INVALID, f"{len(found)} acknowledged removes resurrected"
        elif unread:
            verdict, reason = Verdict.UNKNOWN, f"{unread} acknowledged removes have no ok final read of their key"
        else:
            verdict = Verdict.VALID
            reason = (f"{len(found)} acknowledged removes resurrected (accepted: resurrections_invalid is off)"
                      if found else None)
        return Result(self.name, verdict, counts, tuple(found[:MAX_LISTED]),
                      {"resurrections_invalid": invalid_wanted}, reason)
