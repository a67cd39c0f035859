"""Lost writes for the cart / set workloads: is every acknowledged add in the final read?

The rule (also in ``docs/checkers.md``): for each key, the *final read* is
the last ``ok`` read marked ``final: true`` (when no op of the history is
marked final, e.g. an imported Jepsen history, the last ``ok`` read of the
key). Then for every item added to that key:

* **lost**: an ``ok`` add of the item completed before the final read was
  invoked, the item is absent from the final read, and no legal set execution
  explains the absence (:func:`absence_explained`): ok ops take effect inside
  their interval, ``info``/open ops at any later moment or never, failed ops
  never; a non-failed remove explains the absence when it began before the
  final read completed and can be placed after every ok add that completed
  before ``max(read invoke, remove invoke)``. Order is by history index.
* **concurrent with the final read**: absent, but every ``ok`` add was
  acknowledged after the final read began (the read may go first): not lost.
* **removed**: absent and explained by a remove, or by a real delete whose
  read saw the item (``checkers.set_rules``).
* **unacknowledged but present**: present; of the adds begun before the
  final read completed none is ``ok`` but some are ``info``/open (they may
  have happened: fine).
* **failed but present** (anomaly): present, and every add begun before the
  final read completed failed (``fail`` means it definitely did not happen).
* **unexpected** (anomaly): present, and never added at all, or added only
  after the final read completed.
* **never read**: an ``ok`` add whose key has no ``ok`` final read; the
  checker cannot say, so the verdict is ``unknown`` (unless another anomaly
  already makes it invalid).
* **maybe lost**: lost by the rule above, but the final read is marked
  ``partial``: the harness could not read every replica (r = N) and fell back
  to the default R, so the item may sit on the replica it did not reach. The
  checker cannot say: ``unknown``, never ``invalid``.

Verdict: invalid if anything is lost, failed-but-present or unexpected;
unknown if an acked add was never read or maybe lost, or nothing was
acknowledged; else valid.

It also reports, per element, the time to become *stable* the way Jepsen's
``set-full`` checker does, using every ``ok`` read of the key (see
:func:`stabilisation`).
"""
from __future__ import annotations

import math
from typing import Any

from checkers.base import Anomaly, CheckContext, Result, Verdict
from checkers.quantiles import OpPair, summarize, without_gc
from checkers.set_rules import SetOps, absence_explained, collect_set_ops, read_set
from harness.history import History

NS_PER_MS = 1_000_000
#: How many anomalies of one kind a result lists (counts are always complete).
MAX_LISTED = 1000


def _sort_key(x: Any) -> tuple[str, Any]:
    return (type(x).__name__, x)


def stabilisation(reads: list[OpPair], sets: list[frozenset], element: Any, known: float,
                  last_present: int | None) -> tuple[str, float | None]:
    """Jepsen set-full's per-element outcome: ("stable" | "lost" | "never-read", latency ms).

    ``known`` is when the element was first known to exist (its add's ok, or
    the first read that showed it). Reads invoked after ``known`` that lack
    the element are *absent* reads; reads containing it are *present* reads.
    Stable: the last present read comes after the last absent one (in
    completion order); its latency is from ``known`` to the completion of the
    last absent read (0 when none). Lost: the last relevant read lacks it;
    latency from ``known`` to the last present read (0 when none). Never-read:
    no relevant read. ``last_present`` is the position in ``reads`` of the last
    read containing the element (computed in one forward pass by the caller).
    """
    last_absent = None
    i = len(reads) - 1
    while i >= 0:
        r = reads[i]
        if r.completion.time <= known:  # type: ignore[union-attr]
            break
        if element not in sets[i]:
            if r.start > known:
                last_absent = i
                break
        i -= 1
    if last_present is None and last_absent is None:
        return "never-read", None
    if last_present is not None and (last_absent is None or last_absent < last_present):
        t = reads[last_absent].completion.time if last_absent is not None else known  # type: ignore[union-attr]
        return "stable", max(0.0, (t - known) / NS_PER_MS)
    t = reads[last_present].completion.time if last_present is not None else known  # type: ignore[union-attr]
    return "lost", max(0.0, (t - known) / NS_PER_MS)


class LostWritesChecker:
    """Every acknowledged add must survive into the final read (cart / set workloads)."""

    name = "lost-writes"
    #: A harness run cut short before its final reads is not judged from ordinary reads
    #: (a read during a partition may miss what is only late): harness.runs answers unknown.
    needs_final_reads = True

    @without_gc
    def check(self, history: History, ctx: CheckContext) -> Result:
        by_key, marked = collect_set_ops(history)
        acked = 0
        lost: list[Anomaly] = []
        failed_present: list[Anomaly] = []
        unexpected: list[Anomaly] = []
        never_read: list[Anomaly] = []
        maybe_lost: list[Anomaly] = []
        unacked_present = removed = concurrent_final = 0
        unacked_present_ops: list[int] = []
        stab_counts = {"stable": 0, "lost": 0, "never-read": 0}
        stable_lat: list[float] = []
        lost_lat: list[float] = []
        per_key: dict[str, dict[str, int]] = {}
        for k, so in by_key.items():
            final = so.final
            final_set = read_set(final.read_value) if final is not None else frozenset()
            partial = final is not None and bool(final.flag("partial"))    # fell back from r = N
            k_acked = k_lost = 0
            for x, adds in so.adds.items():
                ok_adds = [a for a in adds if a.ok]
                if not ok_adds:
                    continue
                acked += 1
                k_acked += 1
                if final is None:
                    first = ok_adds[0]
                    never_read.append(Anomaly(
                        "never-read", f"acknowledged add of {x!r} to {k} (op {first.index}) has no ok final read of the key",
                        (first.index,), _key(k), first.completion.time))  # type: ignore[union-attr]
                    continue
                if x in final_set:
                    continue
                # Absent: lost unless some legal execution lets the final read miss it.
                why = absence_explained(adds, so.removals(x), final)
                if why is True:
                    concurrent_final += 1
                    continue
                if why:
                    removed += 1
                    continue
                a = max((a for a in ok_adds if a.e < final.s), key=lambda a: a.s)
                if partial:
                    maybe_lost.append(Anomaly(
                        "maybe-lost-write",
                        f"acknowledged add of {x!r} to {k} (op {a.index}) is missing from the final read "
                        f"(op {final.index}), which could not ask every replica: maybe lost, maybe only "
                        f"on a replica it did not reach", (a.index, final.index), _key(k), int(a.end)))
                    continue
                k_lost += 1
                lost.append(Anomaly(
                    "lost-write",
                    f"acknowledged add of {x!r} to {k} (op {a.index}, acked at {a.end / NS_PER_MS:.3f} ms) "
                    f"is missing from the final read (op {final.index})",
                    (a.index, final.index), _key(k), int(a.end)))
            # Present elements that were never acknowledged.
            for x in sorted(final_set, key=_sort_key):
                # only adds begun before the final read completed can explain its presence
                cands = [a for a in so.adds.get(x, ()) if a.s < final.e]  # type: ignore[union-attr]
                if not cands:
                    what = "was added only after that read completed" if so.adds.get(x) else "was never added"
                    unexpected.append(Anomaly(
                        "unexpected", f"{x!r} is in the final read of {k} (op {final.index}) but {what}",  # type: ignore[union-attr]
                        (final.index,), _key(k), final.completion.time))  # type: ignore[union-attr]
                elif any(a.ok for a in cands):
                    continue
                elif all(a.failed for a in cands):
                    failed_present.append(Anomaly(
                        "failed-add-present",
                        f"{x!r} is in the final read of {k} (op {final.index}) but its add failed "  # type: ignore[union-attr]
                        f"(op {cands[0].index}): a failed op must not take effect",
                        (cands[0].index, final.index), _key(k), final.completion.time))  # type: ignore[union-attr]
                else:
                    unacked_present += 1
                    if len(unacked_present_ops) < MAX_LISTED:
                        unacked_present_ops.append(next(a.index for a in cands if not a.failed))
            per_key[_key(k)] = {"acked": k_acked, "lost": k_lost,
                                "final_read": final.index if final is not None else None}
            if partial:
                per_key[_key(k)]["final_read_partial"] = True
            self._stabilise(so, stab_counts, stable_lat, lost_lat)

        counts = {
            "acked_writes": acked,
            "lost_writes": len(lost),
            "lost_share": (len(lost) / acked) if acked else 0.0,
            "unacknowledged_present": unacked_present,
            "failed_present": len(failed_present),
            "unexpected": len(unexpected),
            "never_read": len(never_read),
            "maybe_lost": len(maybe_lost),
            "removed": removed,
            "concurrent_with_final_read": concurrent_final,
        }
        if lost or failed_present or unexpected:
            verdict, reason = Verdict.INVALID, _reason(lost, failed_present, unexpected)
        elif never_read or maybe_lost:
            verdict, reason = Verdict.UNKNOWN, "; ".join(filter(None, (
                never_read and f"{len(never_read)} acknowledged adds have no ok final read of their key",
                maybe_lost and f"{len(maybe_lost)} acknowledged adds are missing from final reads that could "
                               f"not ask every replica")))
        elif acked == 0:
            verdict, reason = Verdict.UNKNOWN, "no acknowledged adds to check"
        else:
            verdict, reason = Verdict.VALID, None
        details = {
            "final_read_rule": "last ok read marked final" if marked else "last ok read of each key (no op is marked final)",
            # every key when there are few; else the keys with losses or no final read
            "per_key": per_key if len(per_key) <= MAX_LISTED else
            {k: v for k, v in per_key.items() if v["lost"] or v["final_read"] is None or v.get("final_read_partial")},
            "unacknowledged_present_ops": unacked_present_ops,
            "stabilisation": {"counts": stab_counts, "stable_latency_ms": summarize(stable_lat),
                              "lost_latency_ms": summarize(lost_lat)},
        }
        anomalies = tuple(lost[:MAX_LISTED] + failed_present[:MAX_LISTED] + unexpected[:MAX_LISTED]
                          + never_read[:MAX_LISTED] + maybe_lost[:MAX_LISTED])
        return Result(self.name, verdict, counts, anomalies, details, reason)

    @staticmethod
    def _stabilise(so: SetOps, counts: dict[str, int], stable_lat: list[float], lost_lat: list[float]) -> None:
        """set-full stabilisation for each element of one key that was not (possibly) removed."""
        reads = so.reads
        sets = [read_set(r.read_value) for r in reads]
        last_present: dict[Any, int] = {}
        first_seen: dict[Any, float] = {}
        for i, s in enumerate(sets):
            t = reads[i].completion.time  # type: ignore[union-attr]
            for x in s:
                last_present[x] = i
                if x not in first_seen:
                    first_seen[x] = t
        elements = set(so.adds) | set(first_seen)
        for x in elements:
            if any(not rm.failed for rm in so.removals(x)):
                continue  # a removed element is meant to vanish: not a stabilisation case
            adds = so.adds.get(x, ())
            if adds and all(a.failed for a in adds) and x not in first_seen:
                continue  # never happened, never seen
            known = min([a.end for a in adds if a.ok] + [first_seen.get(x, math.inf)])
            if known == math.inf:
                counts["never-read"] += 1
                continue
            status, lat = stabilisation(reads, sets, x, known, last_present.get(x))
            counts[status] += 1
            if status == "stable":
                stable_lat.append(lat)  # type: ignore[arg-type]
            elif status == "lost":
                lost_lat.append(lat)  # type: ignore[arg-type]


def _key(k: Any) -> str | None:
    return None if k is None else str(k)


def _reason(lost: list, failed_present: list, unexpected: list) -> str:
    parts = []
    if lost:
        parts.append(f"{len(lost)} acknowledged adds lost")
    if failed_present:
        parts.append(f"{len(failed_present)} failed adds present")
    if unexpected:
        parts.append(f"{len(unexpected)} never-added items present")
    return ", ".join(parts)
