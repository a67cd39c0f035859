"""``vclock`` mode: server-side vector clocks as in Riak before 2.0.

The object carries one vector clock (entries keyed by the coordinating node, each
``(counter, timestamp of its last increment)``) and a list of siblings. A client
write whose context *descends* the stored clock replaces every stored sibling;
otherwise the new value is *added* beside all stored siblings, even the ones the
writer had read. Blind writes (no context) and stale contexts therefore pile up
siblings: this is the mode that shows sibling explosion. The clock is pruned past
``vclock_max`` entries by dropping the entries with the oldest timestamps, which
loses causal information and so can turn a causally newer version into a false
conflict (as the Dynamo paper warns).

Representation (shared with ``dvv``, see :mod:`.causal`): siblings carry dots and
the clock is the per-node maximum of live and removed dots. When a context does
not descend the stored clock, the write removes what the context covers *except*
the siblings stored here, which is Riak's outcome without its one anomaly (a
concurrent merge in Riak re-unions siblings that one side had already
superseded); this keeps replica merge a true join (commutative, associative,
idempotent), so replicas converge.

Differences from Riak worth knowing: pruning happens on coordinated writes only
(not on replica merges, which must stay a join), and never drops the entry of a
node that still has a live sibling here (that sibling's dot needs it).
"""
from __future__ import annotations

from typing import Mapping

from .causal import (CausalObj, CausalVersioning, Ranges, build, clock_of, descends,
                     prefix_minus, removed_map)
from .context import ClockEntry


class VClockVersioning(CausalVersioning):
    """Riak-1.x style object-level vector clocks with sibling explosion and pruning."""

    mode = "vclock"

    def __init__(self, *, vclock_max: int = 10, **_ignored: object) -> None:
        if isinstance(vclock_max, bool) or not isinstance(vclock_max, int) or vclock_max < 1:
            raise ValueError(f"vclock_max must be a positive integer, got {vclock_max!r}")
        self.vclock_max = vclock_max

    def _superseded(self, local: CausalObj, ctx: Mapping[str, ClockEntry]
                    ) -> dict[str, Ranges]:
        if descends(ctx, clock_of(local)):
            return {node: ((1, e.counter),) for node, e in ctx.items()}
        kept: dict[str, list[int]] = {}
        for s in local.siblings:
            kept.setdefault(s.node, []).append(s.counter)
        return {node: prefix_minus(e.counter, kept.get(node, ())) for node, e in ctx.items()}

    def _after_write(self, obj: CausalObj) -> CausalObj:
        return self.prune(obj)

    def prune(self, obj: CausalObj) -> CausalObj:
        """Drop the oldest clock entries until at most ``vclock_max`` remain.

        Only entries made of removed dots can go (a live sibling's node stays);
        forgetting them is exactly the information loss that makes false conflicts.
        """
        clock = clock_of(obj)
        excess = len(clock) - self.vclock_max
        if excess <= 0:
            return obj
        live_nodes = {s.node for s in obj.siblings}
        droppable = sorted((e.ts, e.node) for e in clock.values() if e.node not in live_nodes)
        rem = removed_map(obj)
        for _, node in droppable[:excess]:
            del rem[node]
        return build(self.mode, obj.siblings, rem)
