"""The reference store's bug zoo as ``dynharness selftest`` reads it: which short runs expose which bug.

Why data and not code: a scenario is only a handful of test-spec fields (workload, N/R/W,
versioning mode, a fault and when it comes, how long), so it is written here as the dotted
overrides a campaign cell takes, next to the bugs it is meant to catch. The harness turns them
into campaign cells (``harness/selftest.py``); nothing here runs anything.

Every scenario is at most about 25 s of load on a few local nodes and finishes within a minute. A
scenario with ``needs`` depends on a plug-in that is not part of today's harness (a checker or
workload named ``group:name``): selftest lists it as waiting for that plug-in, and never counts
it as catching anything, until the plug-in is registered.

The bugs themselves, and where each one hooks into the store, are :mod:`targets.dynamo.bugs`;
``docs/bug-zoo.md`` is the table with what each scenario measured.
"""
from __future__ import annotations

from typing import Any, Mapping

from targets.adapter import BugZoo, ZooBug, ZooScenario
from targets.dynamo.bugs import BUGS

#: Fields every scenario shares: no fsync (a fault-free run on a busy machine then has no disk
#: stalls to mistake for a bug), three nodes, and short recovery and final-read waits.
_BASE: Mapping[str, Any] = {"nodes": 3, "target.fsync": "never", "target.n": 3, "target.r": 2, "target.w": 2,
                            "recovery": 2, "final_read_timeout": 10}
#: No faults. Peer calls may take 4-5 s (request timeout, gossip timeout = 2 x interval): on a loaded
#: machine a node stalled for two seconds made a peer call time out, which aborts the link and fails
#: the requests on it, so a final read could not ask every replica and lost-writes could only say
#: "unknown" (2 of 6 runs of two bugs in the first measured selftest).
_CALM: Mapping[str, Any] = {**_BASE, "nemesis.faults": [], "target.request_timeout": 4.0,
                            "target.gossip_interval": 2.5, "client_timeout": 8.0}

SCENARIOS: Mapping[str, ZooScenario] = {s.name: s for s in (
    ZooScenario(
        "session-race", "sessions under lww, no faults, fsync on every commit: 8 sessions each write one key, and "
        "80% of reads are of other sessions' keys, racing their writes. A read that starts after a write was "
        "acknowledged must see it or a newer one (staleness, stale_reads_invalid); session-guarantee "
        "violations are only reported, since a foreign read may see a write still in flight and the next "
        "one not (monotonic reads, which Dynamo does not promise across clients)",
        {**_CALM, "target.fsync": "always", "workload.name": "session", "workload.keys": 1,
         "workload.foreign_reads": 0.8, "target.mode": "lww", "checkers.stale_reads_invalid": True,
         "checkers.session_violations_invalid": False, "duration": 10, "rate": 400, "concurrency": 8}),
    ZooScenario(
        "cart-contention", "carts under dvv, no faults, 8 clients read-modify-writing 2 carts: concurrent adds "
        "must all survive as siblings (lost writes)",
        {**_CALM, "workload.name": "cart", "workload.keys": 2, "target.mode": "dvv",
         "duration": 10, "rate": 200, "concurrency": 8}),
    ZooScenario(
        "cart-partition-until-heal", "carts under vclock on 5 nodes, {n1,n2,n3} | {n4,n5} from 3 s to the end of "
        "the load: writes the minority took for keys of n1-n3 live only on fallbacks, and after the heal only "
        "hinted handoff can bring them home (lost writes)",
        {**_BASE, "nodes": 5, "workload.name": "cart", "workload.keys": 10, "target.mode": "vclock",
         "nemesis.faults": ["partition"], "nemesis.partition": "split:n1,n2,n3|n4,n5", "nemesis.start_at": 3,
         "nemesis.interval": 10.9, "duration": 14, "rate": 100, "concurrency": 10, "final_read_timeout": 8}),
    ZooScenario(
        "cart-crash-all", "carts under vclock, every node killed (kill -9) at 6 s and restarted 3 s later: what "
        "was acknowledged before must still be there (lost writes)",
        {**_BASE, "workload.name": "cart", "workload.keys": 10, "target.mode": "vclock",
         "nemesis.faults": ["crash"], "nemesis.targets": "all", "nemesis.start_at": 6, "nemesis.interval": 5,
         "nemesis.crash.restart_delay": 3, "duration": 14, "rate": 100, "concurrency": 6}),
    ZooScenario(
        "cart-availability", "carts under vclock, no faults, 8 carts (cart-7 hashes to the ring's last "
        "partition): with nothing wrong every op should succeed (perf min_availability = 0.97)",
        {**_CALM, "workload.name": "cart", "workload.keys": 8, "target.mode": "vclock",
         "checkers.min_availability": 0.97, "duration": 10, "rate": 200, "concurrency": 8,
         "final_read_timeout": 5}),
    ZooScenario(
        "cart-wipe-cold", "carts under vclock, 200 carts touched rarely, two of three nodes wiped (disk lost) "
        "every 7 s: only anti-entropy refills a wiped node with carts nobody touches, before the next wipe "
        "takes the last copy (lost writes)",
        {**_BASE, "workload.name": "cart", "workload.keys": 200, "target.mode": "vclock", "target.ae_interval": 1.0,
         "nemesis.faults": ["wipe"], "nemesis.targets": "majority", "nemesis.start_at": 3, "nemesis.interval": 5,
         "nemesis.crash.restart_delay": 2, "duration": 24, "rate": 40, "concurrency": 4, "recovery": 3}),
    ZooScenario(
        "deletes-after-partition", "carts under vclock on 5 nodes with real DELETEs (each worker fills a bin "
        "cart, deletes it with the read's context, reads it again), random halves cut off every 4 s, tombstones "
        "kept 20 s (the reaper sweeps every grace/2) and anti-entropy every second, so every tombstone reaches "
        "every replica long before it is reaped: a deleted item must stay deleted (resurrections: "
        "resurrected-delete)",
        {**_BASE, "nodes": 5, "workload.name": "cart",
         "workload.mix": {"add": 6, "remove": 1, "read": 3, "delete": 2}, "target.mode": "vclock",
         "target.ae_interval": 1.0, "target.tombstone_grace": 20.0, "nemesis.faults": ["partition"],
         "nemesis.interval": 4, "duration": 24,
         "rate": 100, "concurrency": 10, "recovery": 4}),
    ZooScenario(
        "convergence-after-partition", "carts under vclock, one node cut off from 3 s to the end of the load, "
        "then 8 s of recovery with no client ops: with three nodes there is no fallback to hold a hint, so "
        "only anti-entropy can bring the cut-off replica what it missed, and every replica of every key must "
        "agree (the convergence checker)",
        {**_BASE, "workload.name": "cart", "workload.keys": 50, "target.mode": "vclock", "target.ae_interval": 1.0,
         "nemesis.faults": ["partition"], "nemesis.partition": "isolate-one", "nemesis.start_at": 3,
         "nemesis.interval": 8.9, "duration": 12, "rate": 60, "concurrency": 4, "recovery": 8},
        needs=("checkers:convergence",)),
)}

#: Bug -> the scenarios meant to expose it (in the order selftest runs them).
EXPOSED_BY: Mapping[str, tuple[str, ...]] = {
    "quorum-counts-self-twice": ("session-race",),
    "read-returns-first-reply": ("session-race",),
    "dot-from-context": ("cart-contention",),
    "write-supersedes-local": ("cart-contention",),
    "merge-by-clock-size": ("cart-contention",),
    "siblings-keyed-by-node": ("cart-contention",),
    "lww-second-timestamps": ("session-race",),
    "replica-put-overwrites": ("cart-contention",),
    "read-repair-backwards": ("session-race",),
    "handoff-skips-known": ("cart-partition-until-heal",),
    "tombstone-grace-ms": ("deletes-after-partition",),
    "ae-always-in-sync": ("cart-wipe-cold", "convergence-after-partition"),
    "ring-wrap-truncated": ("cart-availability",),
    "unreachable-never-cleared": ("cart-partition-until-heal",),
    "storage-drops-wal": ("cart-crash-all",),
}

ZOO = BugZoo(
    bugs={name: ZooBug(name, bug.area, bug.summary, EXPOSED_BY[name]) for name, bug in BUGS.items()},
    scenarios=SCENARIOS,
)
