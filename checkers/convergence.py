"""Convergence: once faults heal and the store settles, do the replicas of every key agree?

Dynamo's own promise is eventual consistency: after the last fault, hinted handoff, read repair
and anti-entropy bring every replica of a key to the same versions. Final reads cannot check it:
a read at r = N merges all replicas (hiding a replica that never repaired) and then repairs them.
So after heal and settle, before the final reads, the runner asks every node for its own stored
copy of every final key (``NodeAdmin.replica_snapshot``: no coordination, no read repair), again
every half second until the copies agree or ``final_read_timeout`` passes, and stores the first
and the last round in the run folder (``replicas.json``, :data:`REPLICAS`), where this checker
reads them (``CheckContext.replicas``), so ``dynharness check`` judges a stored run the same way.

Per key, with its preference list (the N nodes that should hold it), in the last round:

* **under-replicated**: some live version exists, yet a node of the preference list holds no
  copy at all (a wiped replica that nothing refilled, a hint dropped before delivery);
* **divergent**: every node of the preference list holds a copy, but their live version sets
  differ (a repair that never happened). Tombstones are compared as absence of live versions, so
  a replica that reaped a tombstone after ``tombstone_grace`` agrees with one that still keeps it;
* **stray**: a node outside the preference list still holds a copy (reported: hinted handoff
  deletes a fallback's copy once delivered, but a leftover loses nothing by itself);
* **unread**: a node of the preference list did not answer the snapshot (unknown).

Verdict: invalid when the last round has an under-replicated or divergent key; unknown when
there is no snapshot (a target without the ``replica-snapshot`` capability: the runner then does
not run this checker at all and says why) or a replica could not be read; else valid. Counts:
``divergent_keys``, ``under_replicated_keys``, ``stray_copies``, ``keys``; ``converged_after_s``
is how long after settle the copies first agreed (``None``: never within the timeout), and
``disagreeing_at_settle`` how many keys disagreed in the first round.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from checkers.base import Anomaly, CheckContext, Result, Verdict
from harness.history import History

#: The run folder file the runner writes the snapshot to (``harness/replica_snapshot.py``).
REPLICAS = "replicas.json"
#: Anomalies listed per kind (counts are always complete).
MAX_LISTED = 1000


@dataclass
class Findings:
    """What one snapshot round shows, key by key (each list: (key, one-line description))."""

    keys: int = 0
    under_replicated: list[tuple[str, str]] = field(default_factory=list)
    divergent: list[tuple[str, str]] = field(default_factory=list)
    stray: list[tuple[str, str]] = field(default_factory=list)
    unread: list[tuple[str, str]] = field(default_factory=list)

    @property
    def agreed(self) -> bool:
        """Every key's preference list read and in agreement (strays do not make replicas disagree)."""
        return not (self.under_replicated or self.divergent or self.unread)


def examine(round_: Mapping[str, Any]) -> Findings:
    """Classify every key of one snapshot round (``{"keys": {key: {"preference", "replicas"}}}``)."""
    out = Findings()
    for key, entry in sorted((round_.get("keys") or {}).items()):
        out.keys += 1
        preference = list(entry.get("preference") or ())
        copies: Mapping[str, Any] = entry.get("replicas") or {}
        unread = [n for n in preference if n not in copies]
        if unread:
            out.unread.append((key, f"{key}: no copy read from {', '.join(unread)}"))
            continue
        live = {n: frozenset(c.get("versions") or ()) for n, c in copies.items() if c.get("held")}
        every = frozenset().union(*live.values()) if live else frozenset()
        for n in sorted(set(live) - set(preference)):
            out.stray.append((key, f"{key}: {n} holds a copy outside the preference list {preference}"))
        if not every:
            continue  # absent or deleted on every node
        missing = [n for n in preference if n not in live]
        sets = {n: live[n] for n in preference if n in live}
        if missing:
            out.under_replicated.append((key, f"{key}: held by {len(sets)} of {len(preference)} replicas "
                                              f"({', '.join(missing)} hold nothing; live versions {_ids(every)})"))
        elif len(set(sets.values())) > 1:
            shown = "; ".join(f"{n}: {_ids(s)}" for n, s in sets.items())
            out.divergent.append((key, f"{key}: replicas hold different versions ({shown})"))
    return out


def _ids(versions: frozenset[str]) -> str:
    listed = sorted(versions)
    return "{" + ", ".join(listed[:6]) + (f", +{len(listed) - 6}" if len(listed) > 6 else "") + "}"


class ConvergenceChecker:
    """Replicas of every key agree after heal and settle (see the module docstring)."""

    name = "convergence"
    #: target capabilities the run needs for this checker to mean anything (``checkers.registry``)
    needs = ("replica-snapshot",)

    def check(self, history: History, ctx: CheckContext) -> Result:
        snap = ctx.replicas
        if not snap or not snap.get("last"):
            why = (snap or {}).get("reason") or f"no replica snapshot stored with this run ({REPLICAS})"
            return Result(self.name, Verdict.UNKNOWN, {"divergent_keys": None, "under_replicated_keys": None},
                          reason=why)
        last, first = examine(snap["last"]), examine(snap.get("first") or snap["last"])
        counts = {"keys": last.keys, "divergent_keys": len(last.divergent),
                  "under_replicated_keys": len(last.under_replicated), "stray_copies": len(last.stray),
                  "unread_keys": len(last.unread), "converged_after_s": snap.get("agreed_after_s"),
                  "disagreeing_at_settle": len(first.divergent) + len(first.under_replicated),
                  "snapshot_rounds": snap.get("rounds")}
        t = int(float(snap["last"].get("t_ns") or 0))
        anomalies = tuple(Anomaly(kind, text, (), key, t or None)
                          for kind, found in (("under-replicated", last.under_replicated),
                                              ("divergent-replicas", last.divergent), ("stray-copy", last.stray))
                          for key, text in found[:MAX_LISTED])
        details = {"errors": dict(snap["last"].get("errors") or {}), "timeout_s": snap.get("timeout_s"),
                   "unread": [text for _, text in last.unread[:MAX_LISTED]]}
        if last.divergent or last.under_replicated:
            return Result(self.name, Verdict.INVALID, counts, anomalies, details,
                          f"{len(last.under_replicated)} under-replicated and {len(last.divergent)} divergent "
                          f"keys still {snap.get('waited_s')}s after settle")
        if last.unread:
            return Result(self.name, Verdict.UNKNOWN, counts, anomalies, details,
                          f"{len(last.unread)} keys have a replica that could not be read")
        return Result(self.name, Verdict.VALID, counts, anomalies, details,
                      f"{len(last.stray)} copies outside their preference list" if last.stray else None)
