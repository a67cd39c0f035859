"""``dvv`` mode: dotted version vectors (Preguiça et al. 2010; DVVSet, Almeida et al. 2014).

Every sibling carries the dot of the write that made it. A client write removes
exactly the dots its context covers (``1..ctx[node]`` for each node in the
context) and adds one new dotted sibling, so siblings never outnumber the writes
that were truly concurrent: N blind writers leave N siblings, and a writer that
read and writes back with its context supersedes exactly what it read, no matter
what other replicas have learnt meanwhile. This is Riak 2.0's default.

No clock pruning is needed: entries are per coordinating node, bounded by the
cluster size.
"""
from __future__ import annotations

from typing import Mapping

from .causal import CausalObj, CausalVersioning, Ranges
from .context import ClockEntry


class DvvVersioning(CausalVersioning):
    """Dotted-version-vector siblings: superseded = exactly what the context covers."""

    mode = "dvv"

    def __init__(self, **_ignored: object) -> None:
        pass

    def _superseded(self, local: CausalObj, ctx: Mapping[str, ClockEntry]
                    ) -> dict[str, Ranges]:
        return {node: ((1, e.counter),) for node, e in ctx.items()}
