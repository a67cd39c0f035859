"""The ``durable`` checker: a write the store acknowledged must be in the final read of its key.

A plugin checker is a class with ``name`` and ``check(history, ctx) -> Result`` (registered under
``dynharness.checkers``); ``options`` names the ``[checkers]`` settings it reads.
"""
from checkers.base import Anomaly, Result, Verdict


class DurableChecker:
    name = "durable"
    options = ("durable_max_lost",)

    def check(self, history, ctx):
        acked, final = {}, {}
        for inv, comp in history.pairs():
            if comp is None or comp.type != "ok" or inv.process == "nemesis":
                continue
            if inv.f == "write":
                acked[inv.key] = (inv.value, comp.index)
            elif inv.f == "read" and comp.get("final"):
                final[inv.key] = comp.value
        unread = sorted(k for k in acked if k not in final)
        lost = [Anomaly("lost-write", f"{k}: acknowledged {v}, final read saw {final[k]!r}", (i,), key=k)
                for k, (v, i) in sorted(acked.items()) if k in final and final[k] != v]
        counts = {"acked_writes": len(acked), "lost_writes": len(lost)}
        if len(lost) > int(ctx.options.get("durable_max_lost", 0)):
            return Result(self.name, Verdict.INVALID, counts, tuple(lost), reason=f"{len(lost)} acknowledged write(s) lost")
        if unread:
            return Result(self.name, Verdict.UNKNOWN, counts, reason=f"{len(unread)} key(s) have no final read")
        return Result(self.name, Verdict.VALID, counts)
