"""The linearizability section of a run report: a per-key table a person can read, and the counterexample drawn.

Why: the checker's details are JSON, and a key the search never reached showed a grey UNKNOWN
that read like a checker failure. Here each key gets one row (verdict, ops, how far its search
got, and for a key left undecided a plain reason: "not reached: the checker stopped at the first
non-linearizable key", "search budget exhausted after N steps"), built from the checker's
``details.keys`` (``stopped``/``depth`` where recorded; older results are read from their
``reason`` text, so every stored run still renders).

An invalid key's counterexample is drawn as Knossos's linear.svg and Porcupine's visualizer do:
one row per process, each op a bar from invoke to completion on the run's clock (history
positions for an import without times), the longest linearizable prefix the search found in
green and numbered in its linearization order (the model's state after it in the caption), the
op that cannot be placed after it in red and marked ✗, with a dashed line where it completed
(it must have taken effect by then), the shrunk proof's ops outlined, and with the history at
hand the key's other ops of the non-linearizable prefix in grey (the proof takes them as
may-or-may-not-have-happened). Only the search's own results are used, so the view is there
even when shrinking stopped at its budget. The data is small and bounded (:data:`MAX_KEYS`
keys, the last :data:`MAX_PREFIX` prefix ops, :data:`MAX_ROWS` bars); ``run.html.j2`` draws it
as inline SVG.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

MAX_KEYS = 3
MAX_PREFIX = 12
MAX_ROWS = 60
MAX_TABLE = 500

#: SVG geometry of a drawing (``run.html.j2`` uses the same numbers through the view's fields).
WIDTH, LABEL_W, ROW_H, AXIS_H = 1000, 96, 36, 26
CHAR_W = 6.6   # width of one character of the bars' 11 px monospace labels, in the drawing's units


def _cause(info: Mapping[str, Any]) -> str | None:
    """Why an undecided key stopped: the recorded ``stopped``, else read from an older result's reason."""
    if info.get("stopped"):
        return str(info["stopped"])
    reason = str(info.get("reason") or "")
    for needle, cause in (("stopped once key", "invalid-elsewhere"), ("time limit", "time-limit"),
                          ("memory cap", "memory-cap"), ("cache cap", "cache-cap")):
        if needle in reason:
            return cause
    return None


def _n(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else "?"


def _plain(info: Mapping[str, Any]) -> tuple[str, str, str]:
    """(label shown as the verdict, how far the search got, the reason in plain words) for one key."""
    verdict = str(info.get("verdict", "?"))
    steps, ops, depth, secs = info.get("steps"), info.get("ops"), info.get("depth"), info.get("seconds")
    cost = f" in {_n(steps)} steps" if isinstance(steps, int) else ""
    cost += f" ({secs:.3g} s)" if isinstance(secs, (int, float)) and secs >= 0.001 else ""
    if verdict == "valid":
        return "valid", f"all {_n(ops)} ops linearized{cost}" if ops is not None else "", ""
    if verdict == "invalid":
        prefix = info.get("longest_prefix")
        blocked = info.get("blocked") if isinstance(info.get("blocked"), Mapping) else None
        far = f"{len(prefix)} of {_n(ops)} ops linearized, then stuck{cost}" if isinstance(prefix, list) else ""
        why = (f"{blocked.get('op')} [{blocked.get('invoke')}..{blocked.get('complete')}] cannot be placed after "
               f"the longest linearizable prefix" if blocked else "no linearization exists")
        return "invalid", far, why
    if verdict != "unknown":
        return verdict, "", str(info.get("reason") or "")
    cause = _cause(info)
    reason = str(info.get("reason") or "")
    searched = not (isinstance(steps, int) and steps == 0)
    far = (f"{depth} of {_n(ops)} ops deep{cost}" if isinstance(depth, int) and searched
           else f"stopped{cost}" if searched and cost else "never searched" if not searched else "")
    if cause == "invalid-elsewhere":
        found = re.search(r"key (.+) was found", reason)
        which = f" ({found.group(1)})" if found else ""
        if not searched:
            return "not reached", far, (f"not reached: the checker stopped at the first non-linearizable key{which}; "
                                        "nothing is known about this key")
        return "undecided", far, f"not finished: the checker stopped when another key{which} was found non-linearizable"
    if cause == "time-limit":
        return "undecided", far, f"search budget exhausted: the time limit ran out after {_n(steps)} steps"
    if cause in ("memory-cap", "cache-cap"):
        return "undecided", far, (f"search budget exhausted: the memory cap was reached with "
                                  f"{_n(info.get('cache_peak'))} states cached, after {_n(steps)} steps")
    return "undecided", far, reason or "the search did not decide this key"


def key_rows(details: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per key of a linearizability checker's details (``keys``, or ``per_key`` of older
    results): invalid keys first, then undecided, then valid; at most :data:`MAX_TABLE`."""
    table = details.get("keys") or details.get("per_key") or {}
    out = []
    if isinstance(table, Mapping):
        for k, info in table.items():
            info = info if isinstance(info, Mapping) else {"verdict": info}
            label, far, reason = _plain(info)
            cx = info.get("counterexample")
            proof = ", ".join(f"{c.get('op')} [{c.get('invoke')}..{c.get('complete')}]" for c in cx
                              if isinstance(c, Mapping)) if isinstance(cx, list) else ""
            out.append({"key": str(k), "verdict": str(info.get("verdict", "?")), "label": label,
                        "ops": info.get("ops"), "progress": far, "reason": reason, "counterexample": proof})
    order = {"invalid": 0, "unknown": 1}
    return sorted(out, key=lambda r: (order.get(r["verdict"], 2), r["label"] != "undecided", r["key"]))[:MAX_TABLE]


def key_summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many keys carry each label (the sentence above the table)."""
    out: dict[str, int] = {}
    for r in rows:
        out[r["label"]] = out.get(r["label"], 0) + 1
    return out


def _bar(op: Mapping[str, Any], role: str, order: int | None, proof: bool) -> dict[str, Any]:
    complete = op.get("complete")
    text = f"{op.get('op', '?')} [{op.get('invoke')}..{'open' if complete is None else complete}]"
    return {"invoke": op.get("invoke"), "complete": complete, "role": role, "order": order, "proof": proof,
            "text": text, "op": str(op.get("op", "?")), "process": op.get("process")}


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Axis ticks on a 1-2-5 series over [lo, hi], at most about ``n``."""
    span = max(hi - lo, 1e-9)
    step = 10 ** math.floor(math.log10(span / n))
    step *= next((m for m in (1, 2, 5, 10) if span / (step * m) <= n), 10)
    k0 = math.ceil(lo / step)
    return [k * step for k in range(k0, k0 + n + 2) if k * step <= hi]


def _tick_text(t: float, step: float, unit: str) -> str:
    if unit == "position":
        return f"{t:.0f}"
    decimals = max(0, -math.floor(math.log10(step / 1000) + 1e-9))
    return f"{t / 1000:.{decimals}f} s"


def linear_views(results: Mapping[str, Any], time_of: Callable[[int], float | None] | None = None,
                 key_ops: Callable[[str], list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Per invalid key (at most :data:`MAX_KEYS`), the drawing's bars, rows and caption facts.

    ``time_of(index)`` gives a history op's time in ms (None: the axis is history positions);
    ``key_ops(key)`` the key's ops from the history (as the checker shows them) to draw the rest
    of the non-linearizable prefix in grey."""
    lin = ((results.get("checkers") or {}).get("linearizable") or {})
    keys = (lin.get("details") or {}).get("keys") or {}
    views = []
    for key, info in keys.items():
        if len(views) >= MAX_KEYS:
            break
        if not isinstance(info, Mapping) or info.get("verdict") != "invalid" or not isinstance(info.get("blocked"), Mapping):
            continue
        views.append(_view(str(key), info, time_of, key_ops))
    return [v for v in views if v is not None]


def _view(key: str, info: Mapping[str, Any], time_of: Callable[[int], float | None] | None,
          key_ops: Callable[[str], list[dict[str, Any]]] | None) -> dict[str, Any] | None:
    prefix = [op for op in info.get("longest_prefix") or () if isinstance(op, Mapping)]
    cx = [op for op in info.get("counterexample") or () if isinstance(op, Mapping)]
    proof = {op.get("invoke") for op in cx}
    # the last prefix ops before the red one, and every op of the proof wherever it is
    shown = [(n, op) for n, op in enumerate(prefix) if n >= len(prefix) - MAX_PREFIX or op.get("invoke") in proof]
    blocked = info["blocked"]
    bars = [_bar(op, "prefix", n + 1, op.get("invoke") in proof) for n, op in shown]
    bars.append(_bar(blocked, "blocked", None, blocked.get("invoke") in proof))
    drawn = {b["invoke"] for b in bars}
    bars += [_bar(op, "proof", None, True) for op in cx if op.get("invoke") not in drawn and isinstance(op.get("invoke"), int)]
    window = min((b["invoke"] for b in bars if isinstance(b["invoke"], int)), default=0)
    scope_end = info.get("counterexample_scope_end")
    end = int(scope_end) if isinstance(scope_end, str) and scope_end.isdigit() else blocked.get("complete")
    if key_ops is not None and isinstance(end, int):   # the rest of the non-linearizable prefix, in grey
        drawn = {b["invoke"] for b in bars}
        bars += [_bar(op, "other", None, False) for op in key_ops(key)
                 if window <= op["invoke"] <= end and op["invoke"] not in drawn][:MAX_ROWS]
    bars = sorted((b for b in bars if isinstance(b["invoke"], int)), key=lambda b: b["invoke"])
    if len(bars) > MAX_ROWS:   # keep every bar that proves something, then the others nearest the red op
        keep = [b for b in bars if b["role"] != "other"]
        bars = sorted(keep + [b for b in bars if b["role"] == "other"][:max(0, MAX_ROWS - len(keep))],
                      key=lambda b: b["invoke"])
    if not bars:
        return None
    real = time_of is not None and all(time_of(b["invoke"]) is not None for b in bars)

    def at(index: int) -> float:
        t = time_of(index) if real and time_of is not None else None
        return float(index) if t is None else t

    t_lo = min(at(b["invoke"]) for b in bars)
    t_hi = max(at(b["complete"]) if isinstance(b["complete"], int) else at(b["invoke"]) for b in bars)
    t_hi = t_hi + max((t_hi - t_lo) * 0.04, 1e-6 if real else 1)  # room for open ops' fading ends
    span = max(t_hi - t_lo, 1e-9)
    plot_w = WIDTH - LABEL_W - 10

    def x(t: float) -> float:
        return round(LABEL_W + (t - t_lo) / span * plot_w, 2)

    procs = sorted({str(b["process"]) for b in bars}, key=lambda p: (not p.lstrip("-").isdigit(), int(p) if p.lstrip("-").isdigit() else 0, p))
    for b in bars:
        b["x0"] = x(at(b["invoke"]))
        b["open"] = not isinstance(b["complete"], int)
        b["x1"] = max(b["x0"] + 3, x(at(b["complete"])) if not b["open"] else x(t_hi))
        b["row"] = procs.index(str(b["process"]))
        b["label"] = (f"#{b['order']} " if b["order"] else "✗ " if b["role"] == "blocked" else "") + b["op"]
    for row in range(len(procs)):   # a label runs on until the next bar of its row; the last one's may end at its bar's end
        mine = [b for b in bars if b["row"] == row]
        for prev, b, nxt in zip([None] + mine, mine, mine[1:] + [None]):
            need, room = len(b["label"]) * CHAR_W, (nxt["x0"] if nxt else WIDTH) - b["x0"] - 4
            b["anchor"], b["tx"] = "start", b["x0"] + 1
            if need > room and nxt is None:
                left_room = b["x1"] - (prev["tx"] + len(prev["label"]) * CHAR_W if prev else LABEL_W) - 6
                if left_room > room:
                    b["anchor"], b["tx"], room = "end", min(b["x1"], WIDTH - 4), left_room
            if need > room:
                b["label"] = b["label"][:max(0, int(room / CHAR_W) - 1)] + "…" if room > 20 else ""
    unit = "ms" if real else "position"
    ticks = _ticks(t_lo, t_hi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else span
    cut = blocked.get("complete")
    height = len(procs) * ROW_H + AXIS_H
    return {"key": key, "state": info.get("state_after_prefix"), "prefix_len": len(prefix),
            "hidden_prefix": len(prefix) - len(shown), "blocked": _bar(blocked, "blocked", None, False)["text"],
            "proof_len": len(proof), "minimal": info.get("counterexample_minimal"),
            "cut": x(at(cut)) if isinstance(cut, int) else None, "unit": unit,
            "processes": procs, "bars": bars, "width": WIDTH, "height": height, "label_w": LABEL_W, "row_h": ROW_H,
            "ticks": [{"x": x(t), "text": _tick_text(t, step, "position" if not real else unit)} for t in ticks],
            "others": sum(1 for b in bars if b["role"] == "other")}
