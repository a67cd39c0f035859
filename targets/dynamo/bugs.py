"""The bug zoo: named, realistic bugs a node can be started with, to test the harness itself.

Why: a consistency checker is only worth the bugs it finds, and a store that passes every run
proves nothing about the checkers. Each bug here is a small mistake of a kind real Dynamo-style
stores have shipped (a quorum counted wrong, a merge that is not a join, a hint deleted too soon),
so ``dynharness selftest`` can start the reference store with one of them and show which
scenario and which checker catches it, and that the clean store passes the same scenarios.

How it stays apart from the real logic: a node runs at most one bug, chosen explicitly with
``--bug NAME`` (``[target] bug = "NAME"`` in a test spec; there is no default and no way to turn
one on by accident). The store's code consults a bug at exactly one hook point, written as
``if bugs.active("name"):`` next to the correct line, or by calling the wrong-on-purpose function
kept here, so reading the store shows the right code first and the bug as a marked detour.
``tests/test_bug_zoo.py`` checks that every bug below has exactly one hook and every hook names a
bug below.

The table of bugs, their areas and the scenario that exposes each is ``docs/bug-zoo.md``; the
scenarios (harness spec overrides, as data) are :mod:`targets.dynamo.zoo`.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from targets.adapter import TargetError

log = logging.getLogger("dynamo.bugs")


@dataclass(frozen=True)
class Bug:
    """One named bug: the area of the store it breaks, where its hook is, and what goes wrong."""

    name: str
    area: str
    hook: str                         # module.function holding the ``bugs.active`` line
    summary: str                      # what the store does wrong, and why that is realistic


BUGS: Mapping[str, Bug] = {b.name: b for b in (
    Bug("quorum-counts-self-twice", "coordinator quorum counting", "coordinator.Coordinator.write",
        "the coordinator counts its own commit twice, so a W=2 write is acknowledged once it alone "
        "stored it (an off-by-one in the ack tally)"),
    Bug("read-returns-first-reply", "reply merging", "coordinator.Coordinator.read",
        "a read waits for R replies but answers with the first one (usually the coordinator's own "
        "copy) instead of their merge"),
    Bug("dot-from-context", "vector clock: event counters", "versioning.causal.new_dot_counter",
        "the coordinator takes the new event's counter from the client's context alone, not from "
        "its own clock, so two writes can carry the same dot and superseding one drops the other"),
    Bug("write-supersedes-local", "vector clock / DVV comparison", "versioning.causal.CausalVersioning.write",
        "a client write supersedes every version the coordinator holds, not only those its context "
        "saw (the context is widened with the local clock): concurrent siblings vanish"),
    Bug("merge-by-clock-size", "DVV merge", "versioning.causal.merge",
        "replica merge keeps whichever state has the larger clock (sum of counters) instead of "
        "joining both: a total order where versions are only partially ordered"),
    Bug("siblings-keyed-by-node", "sibling bookkeeping", "versioning.causal.build",
        "siblings are kept in a map keyed by the writing node, so two concurrent siblings "
        "coordinated by the same node collapse into one"),
    Bug("lww-second-timestamps", "LWW ordering", "versioning.lww.LwwVersioning.write",
        "last-write-wins stamps writes with whole seconds, so two writes within one second are "
        "ordered by node name, not by time"),
    Bug("replica-put-overwrites", "replica merge on put", "storage.Storage.merge_in",
        "a replica stores the object it is sent in place of its own instead of merging the two, "
        "dropping siblings only it had"),
    Bug("read-repair-backwards", "read repair direction", "coordinator.Coordinator._read_repair",
        "read repair spreads the stale reply's value, re-stamped as a new write over the merge, "
        "instead of spreading the merge to the stale replica"),
    Bug("handoff-skips-known", "hinted handoff", "peer_api.internal_handoff",
        "a primary receiving handed-off objects ignores keys it already holds (taking 'I have the "
        "key' for 'I have this version'), while the fallback deletes its copy"),
    Bug("tombstone-grace-ms", "tombstone reaping", "antientropy.reaper_loop",
        "the reaper reads tombstone_grace as milliseconds: tombstones are reaped almost at once, so "
        "a replica that missed a delete brings the value back"),
    Bug("ae-always-in-sync", "anti-entropy", "antientropy.AntiEntropy.tree_reply",
        "the Merkle exchange answers 'same' for every partition, so a replica that missed writes "
        "(wiped, cut off) is never refilled by anti-entropy"),
    Bug("ring-wrap-truncated", "ring / preference lists", "ring.Ring._compute_replicas",
        "the ring walk stops at the last partition instead of wrapping around, so the last "
        "partitions get one or two replicas instead of N"),
    Bug("unreachable-never-cleared", "gossip failure detection", "gossip.Membership.record_ok",
        "a peer marked unreachable by a failed call stays down after calls to it succeed again, so "
        "after a partition heals hints are never handed back and reads skip it"),
    Bug("storage-drops-wal", "durability of storage", "storage.Storage.__init__",
        "on start the node deletes the SQLite write-ahead log as if it were a stale temp file, "
        "losing every commit not yet checkpointed into the database"),
)}

#: The bug this process runs, or None (set once at start by :func:`activate`).
ACTIVE: str | None = None


def active(name: str) -> bool:
    """Whether this node runs bug ``name`` (the hook points' one question)."""
    return ACTIVE == name


def check(name: str, flag: str = "--bug") -> None:
    """TargetError (one line) unless ``name`` is empty (no bug) or a bug of the zoo."""
    if name and name not in BUGS:
        raise TargetError(f"{flag}: unknown bug {name!r} (known: {', '.join(sorted(BUGS))})")


def activate(name: str) -> None:
    """Run this process with bug ``name`` ("" for none); said loudly in the node's log."""
    global ACTIVE
    check(name)
    ACTIVE = name or None
    if ACTIVE:
        bug = BUGS[ACTIVE]
        log.warning("BUG ZOO: this node runs the deliberate bug %r (%s): %s", bug.name, bug.area, bug.summary)


# -- the wrong-on-purpose code that does not fit on a hook's one line ---------------------------------


def widen_context(ctx: Mapping[str, Any], local_clock: Mapping[str, Any]) -> dict[str, Any]:
    """``write-supersedes-local``: the context as the buggy coordinator sees it, at least its own clock."""
    out = dict(ctx)
    for node, entry in local_clock.items():
        if node not in out or out[node].counter < entry.counter:
            out[node] = entry
    return out


def bigger_clock(a: Any, b: Any, clock_of: Callable[[Any], Mapping[str, Any]]) -> Any:
    """``merge-by-clock-size``: the state whose clock has the larger sum of counters (a on ties)."""
    return a if sum(e.counter for e in clock_of(a).values()) >= sum(e.counter for e in clock_of(b).values()) else b


def restamp_stale(v: Any, node: str, merged: Any, replies: list[tuple[Any, Any]]) -> Any:
    """``read-repair-backwards``: a new write, over the merge, of the first stale reply's value.

    Returns ``merged`` unchanged when no reply was stale or the stale one holds no value."""
    want = v.digest(merged)
    for _, obj in replies:
        if obj is not None and v.digest(obj) != want and v.values(obj):
            return v.write(merged, v.context(merged), v.values(obj)[0], node, time.time())
    return merged


def unknown_only(objects: Mapping[str, Any], cached: Callable[[str], tuple[bool, Any]]) -> dict[str, Any]:
    """``handoff-skips-known``: the handed-off objects whose key the receiver does not hold yet."""
    return {k: o for k, o in objects.items() if cached(k)[1] is None}


def remove_wal(db_path: str) -> None:
    """``storage-drops-wal``: delete the database's write-ahead log (and its index) before opening it."""
    for suffix in ("-wal", "-shm"):
        try:
            os.remove(db_path + suffix)
        except FileNotFoundError:
            pass
