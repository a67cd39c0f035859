"""The counterexample view of a non-linearizable key, as Porcupine's visualizer and Knossos's linear.svg draw it.

Why: a counterexample as text ("read -> 3 [17..23], write 3 [20..29], ...") makes the reader
rebuild the picture in their head. The view draws it: one bar per op over its interval
(invoke to completion, on the history's own axis, which is file order for an import without
``:time``), the longest linearizable prefix the search found (numbered in its linearization
order, the model's state after it in the caption), the op that cannot follow it in red, and
the shrunk proof's ops outlined. Only the search's own results are used (the checker's
``details.keys``), so the view costs nothing to compute and is there even when shrinking
stopped at its budget.

The data is small and bounded (at most :data:`MAX_KEYS` keys, the last :data:`MAX_PREFIX`
prefix ops each); ``run.html.j2`` draws it as inline SVG.
"""
from __future__ import annotations

from typing import Any, Mapping

MAX_KEYS = 3
MAX_PREFIX = 24
MAX_ROWS = 60


def _row(op: Mapping[str, Any], role: str, order: int | None, proof: bool) -> dict[str, Any]:
    complete = op.get("complete")
    return {"invoke": op.get("invoke"), "complete": complete, "role": role, "order": order, "proof": proof,
            "text": f"{op.get('op', '?')} [{op.get('invoke')}..{'open' if complete is None else complete}]",
            "process": op.get("process")}


def linear_views(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per invalid key: rows to draw (positions 0..1 across the drawn span) and the caption's facts."""
    lin = ((results.get("checkers") or {}).get("linearizable") or {})
    keys = (lin.get("details") or {}).get("keys") or {}
    views = []
    for key, info in keys.items():
        if len(views) >= MAX_KEYS:
            break
        if not isinstance(info, Mapping) or info.get("verdict") != "invalid" or not info.get("blocked"):
            continue
        prefix = [op for op in info.get("longest_prefix") or () if isinstance(op, Mapping)]
        proof = {op.get("invoke") for op in info.get("counterexample") or () if isinstance(op, Mapping)}
        shown = prefix[-MAX_PREFIX:]
        first = len(prefix) - len(shown) + 1
        rows = [_row(op, "prefix", first + n, op.get("invoke") in proof) for n, op in enumerate(shown)]
        blocked = info["blocked"]
        rows.append(_row(blocked, "blocked", None, blocked.get("invoke") in proof))
        drawn = {r["invoke"] for r in rows}
        window = min((r["invoke"] for r in rows if isinstance(r["invoke"], int)), default=0)
        extra = [op for op in info.get("counterexample") or ()
                 if isinstance(op, Mapping) and op.get("invoke") not in drawn and isinstance(op.get("invoke"), int)]
        rows += [_row(op, "proof", None, True) for op in extra if op["invoke"] >= window]
        proof_before = sum(1 for op in extra if op["invoke"] < window)  # drawn: the window around the red op
        rows = sorted(rows, key=lambda r: (r["invoke"] is None, r["invoke"] or 0))[:MAX_ROWS]
        ends = [r["complete"] for r in rows if isinstance(r["complete"], int)]
        starts = [r["invoke"] for r in rows if isinstance(r["invoke"], int)]
        if not starts:
            continue
        lo, hi = min(starts), max(ends + starts) + 1
        span = max(1, hi - lo)
        for r in rows:
            end = r["complete"] if isinstance(r["complete"], int) else hi
            r["x0"] = round((r["invoke"] - lo) / span, 4)
            r["x1"] = round(max(end - lo, r["invoke"] - lo + 0.3) / span, 4)
        cut = blocked.get("complete")
        views.append({"key": key, "state": info.get("state_after_prefix"), "prefix_len": len(prefix),
                      "hidden_prefix": first - 1, "blocked": rows and _row(blocked, "blocked", None, False)["text"],
                      "proof_len": len(proof), "proof_before": proof_before,
                      "minimal": info.get("counterexample_minimal"),
                      "cut": round((cut - lo) / span, 4) if isinstance(cut, int) else None,
                      "lo": lo, "hi": hi, "rows": rows})
    return views
