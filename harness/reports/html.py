"""A run's ``report.html``: one self-contained page that shows a person what went wrong.

``build_run_model`` turns a stored run (``docs/contracts.md`` §4) into the
JSON the page's script draws from: every client op as compact columns
(lane, node, f, outcome, start/end ms, key, value), the nemesis windows, the
anomalies with the full ops that prove them, and pre-computed aggregates
(throughput, latency quantiles, sibling histogram, divergent versions,
staleness curves). ``write_run_report`` renders it with the inlined script
and styles of ``assets/``: no network is needed to view it.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Mapping

from harness.errors import UserError
from harness.history import History, read_history
from harness.limits import json_loads
from harness.ops import NEMESIS, Op
from harness.reports.linear_view import key_rows, key_summary, linear_views
from harness.reports.render import render_page

OUTCOMES = ("ok", "fail", "info", "open")
MAX_ANOMALIES = 2000          # listed in the page (the count says how many there were)
MAX_VALUE_CHARS = 48          # op values longer than this are cut in the timeline data (anomaly ops keep theirs)
QUANTILES = (0.5, 0.95, 0.99, 0.999, 1.0)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json_loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None


def _short(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _quantile(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


def fault_windows(history: History, end_ms: float) -> list[dict[str, Any]]:
    """Fault windows in ms for the page, from ``checkers.fault_windows`` (the perf checker's own windows).

    Each carries a short kind (partition, clock, crash, pause, link, wipe), when
    it was requested, in effect (``start``) and confirmed by its probe, what it did to whom
    (``detail``: nodes, sides, offsets, rates, from the fault kind's ``describe``; ``raw`` keeps
    the nemesis's own report for a tooltip) and how, and ``failed`` for a fault whose
    completion was ``fail`` (refused, or its probe found no effect): the page
    marks that attempt instead of shading a window that never was.
    """
    from checkers.fault_windows import fault_windows as windows_of
    from nemeses import fault_kind

    kinds = fault_kind.registered()
    completion = {inv.index: comp for inv, comp in history.pairs() if inv.process == NEMESIS and comp is not None}
    out = []
    for w in windows_of(history):
        comp = completion.get(w.open_index)
        done = comp.value if comp is not None and comp.value is not None else w.value
        detail = ((comp.error if comp is not None and w.failed and comp.error else None)
                  or fault_kind.describe_op(w.kind, w.value, done, kinds))
        kind = fault_kind.window_name(w.kind, kinds)
        out.append({"kind": kind, "f": w.kind, "start": w.start / 1e6, "end": min(w.end / 1e6, end_ms) if w.end else end_ms,
                    "requested": w.requested / 1e6 if w.requested is not None else None,
                    "confirmed": w.confirmed / 1e6 if w.confirmed is not None else None,
                    "failed": w.failed, "detail": detail, "raw": _short(done),
                    "mechanism": comp.get("mechanism") if comp is not None else None})
    return out


def _lane_of(op: Op) -> Any:
    if op.get("final"):
        return "final"
    s = op.get("session")
    return s if isinstance(s, int) and not isinstance(s, bool) and s >= 0 else f"p{op.process}"


def build_run_model(run_dir: str | Path, history: History | None = None) -> dict[str, Any]:
    """Everything the run page shows, as JSON-able data (see the module docstring).
    ``history``: the run's history when the caller has read it already."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a run folder")
    spec = _read_json(run_dir / "spec.json", {})
    results = _read_json(run_dir / "results.json", None)
    if history is None:
        history = read_history(run_dir / "history.jsonl")
    pairs = history.pairs()
    end_ns = max((o.time for o in history.ops), default=0)
    nodes: dict[str, int] = {}
    fs: dict[str, int] = {}
    keys: dict[str, int] = {}
    lanes_seen: dict[Any, int] = {}
    # Compact columns (the page decodes them): t0 in 0.1 ms, dur = t1 - t0 in 0.1 ms, dcomp = completion index - invoke index.
    cols: dict[str, list[Any]] = {k: [] for k in ("lane", "node", "f", "type", "t0", "dur", "key", "value", "inv", "dcomp", "proc", "sib")}
    lat_by_f: dict[str, list[float]] = defaultdict(list)
    per_sec: dict[int, Counter[str]] = defaultdict(Counter)
    sib_reads: Counter[int] = Counter()   # ok reads by sibling count (the divergent-versions table)
    sib_seen: Counter[int] = Counter()    # every ok op that saw siblings (reads and read-modify-writes)
    for inv, comp in pairs:
        if inv.process == NEMESIS:
            continue
        lane = _lane_of(inv)
        outcome = comp.type if comp is not None else "open"
        t0 = inv.time / 1e6
        t1 = (comp.time if comp is not None else end_ns) / 1e6
        node = inv.node or (comp.node if comp is not None else None) or "?"
        cols["lane"].append(lanes_seen.setdefault(lane, len(lanes_seen)))
        cols["node"].append(nodes.setdefault(node, len(nodes)))
        cols["f"].append(fs.setdefault(inv.f, len(fs)))
        cols["type"].append(OUTCOMES.index(outcome))
        cols["t0"].append(round(t0 * 10))
        cols["dur"].append(round(t1 * 10) - round(t0 * 10))
        cols["key"].append(keys.setdefault(inv.key, len(keys)) if inv.key is not None else -1)
        shown = comp.value if comp is not None and comp.type == "ok" and comp.value is not None else inv.value
        cols["value"].append(_short(shown))
        cols["inv"].append(inv.index)
        cols["dcomp"].append(comp.index - inv.index if comp is not None else -1)
        cols["proc"].append(inv.process if isinstance(inv.process, int) else -1)
        sib = comp.siblings if comp is not None else None
        cols["sib"].append(sib if sib is not None else -1)
        if comp is not None:
            per_sec[int(comp.time // 1_000_000_000)][outcome] += 1
            if outcome == "ok":
                lat_by_f[inv.f].append(t1 - t0)
                if sib is not None:
                    sib_seen[sib] += 1
                    if inv.f == "read":
                        sib_reads[sib] += 1
    lane_names = sorted(lanes_seen, key=lambda x: (isinstance(x, str), x if isinstance(x, int) else 0, str(x)))
    remap = {lanes_seen[name]: i for i, name in enumerate(lane_names)}
    cols["lane"] = [remap[x] for x in cols["lane"]]
    windows = fault_windows(history, end_ns / 1e6)
    secs = range(0, int(end_ns // 1_000_000_000) + 1)
    throughput = {o: [per_sec[s][o] for s in secs] for o in ("ok", "fail", "info")}
    quantiles = []
    for f, lats in sorted(lat_by_f.items()):
        lats.sort()
        quantiles.append({"f": f, "count": len(lats), **{f"q{q}": _quantile(lats, q) for q in QUANTILES}})
    all_lat = sorted(x for v in lat_by_f.values() for x in v)
    if all_lat:
        quantiles.append({"f": "all", "count": len(all_lat), **{f"q{q}": _quantile(all_lat, q) for q in QUANTILES}})
    total_reads = sum(v for k, v in sib_reads.items() if k >= 1)  # reads of absent keys see 0 versions
    divergent = [{"versions": label, "reads": n, "share": n / total_reads if total_reads else 0.0}
                 for label, n in (("1", sib_reads[1]), ("2", sib_reads[2]), ("3", sib_reads[3]),
                                  ("4+", sum(v for k, v in sib_reads.items() if k >= 4)))]
    checkers, anomalies, proof_ops = _results_model(results or {}, history)
    accepted = sum(1 for a in anomalies if a["accepted"])
    return {
        "name": spec.get("name") or run_dir.parent.name, "run_dir": str(run_dir), "spec": spec,
        "verdict": (results or {}).get("verdict", "unknown"), "has_results": results is not None,
        "summary": (results or {}).get("summary", {}), "checkers": checkers, "anomalies": anomalies[:MAX_ANOMALIES],
        "anomaly_count": len(anomalies), "accepted_count": accepted, "alarm_count": len(anomalies) - accepted,
        "accepted_keys": accepted_counts(checkers), "proof_ops": proof_ops, "warnings": list(history.warnings),
        "ops": cols, "lanes": [str(x) for x in lane_names], "nodes": list(nodes), "fs": list(fs),
        "keys": [k for k in keys], "outcomes": list(OUTCOMES), "windows": windows, "end_ms": end_ns / 1e6,
        "throughput": throughput, "quantiles": quantiles,
        "siblings": {"histogram": sorted(([k, v] for k, v in sib_seen.items()), key=lambda kv: kv[0]),
                     "divergent": divergent, "reads": total_reads,
                     "over_time": _sibling_timelines((results or {}).get("checkers", {}).get("siblings", {}).get("details", {}))},
        "staleness": _curves((results or {}).get("checkers", {}).get("staleness", {}).get("details", {})),
        "linear_views": linear_views(results or {}, *_history_for_views(history)),
        "linear_summary": {c["name"]: key_summary(c["per_key"]) for c in checkers if c["per_key"]},
        "history_ops": len(history.ops),
    }


def accepted_counts(checkers: list[dict[str, Any]]) -> list[str]:
    """Counts that are non-zero though every checker reporting them judged the run valid: anomalies
    accepted by design (a cart's resurrected removes, Dynamo's documented trade-off), which the
    page shows as notes beside the verdict rather than as alarms."""
    by_count: dict[str, list[str]] = defaultdict(list)
    for c in checkers:
        for k, v in c["counts"].items():
            if v:
                by_count[k].append(c["verdict"])
    return sorted(k for k, verdicts in by_count.items() if all(v == "valid" for v in verdicts))


def _results_model(results: Mapping[str, Any], history: History) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Checker rows, the anomaly list, and the full JSON of every op an anomaly cites (by index)."""
    checkers, anomalies = [], []
    proof: dict[str, Any] = {}
    by_index = {o.index: o for o in history.ops}
    for name, res in (results.get("checkers") or {}).items():
        res = res or {}
        details = res.get("details") or {}
        checkers.append({"name": name, "verdict": res.get("verdict", "unknown"), "reason": res.get("reason"),
                         "counts": res.get("counts") or {}, "seconds": res.get("seconds"),
                         "anomalies": len(res.get("anomalies") or ()), "details": _trim(details),
                         "per_key": key_rows(details) if name.startswith("linear") else []})
        for a in res.get("anomalies") or ():
            aid = len(anomalies)
            ops = [i for i in (a.get("ops") or []) if isinstance(i, int)]
            anomalies.append({"id": aid, "checker": name, "kind": a.get("kind", name), "description": a.get("description", ""),
                              "ops": ops, "key": a.get("key"), "time": a.get("time"),
                              "accepted": res.get("verdict") == "valid"})
            if aid < MAX_ANOMALIES:
                for i in ops[:200]:
                    if i in by_index and str(i) not in proof:
                        proof[str(i)] = by_index[i].to_json()
    return checkers, anomalies, proof


def _history_for_views(history: History) -> tuple[Any, Any]:
    """``time_of`` (op index -> ms; None for an import ordered by position, whose times are
    positions) and ``key_ops`` (a key's register ops, as the linearizability checker shows them)
    for :func:`linear_views`."""
    by_index = {o.index: o for o in history.ops}
    positions = all(o.time == o.index for o in history.ops)

    def time_of(index: int) -> float | None:
        op = by_index.get(index)
        return None if op is None else op.time / 1e6

    def key_ops(key: str) -> list[dict[str, Any]]:
        out = []
        for inv, comp in history.pairs():
            if inv.process == NEMESIS or str(inv.key) != key or (comp is not None and comp.type == "fail"):
                continue
            done = comp is not None and comp.type == "ok"
            value = comp.value if done and inv.f == "read" else inv.value
            text = (f"read -> {_short(value) or 'absent'}" if done else "read") if inv.f == "read" else f"{inv.f} {_short(value)}"
            out.append({"invoke": inv.index, "complete": comp.index if done else None, "process": inv.process,
                        "op": text if done else text + " (info)"})
        return out

    return (None if positions else time_of), key_ops


def _sibling_timelines(details: Mapping[str, Any], keep: int = 6) -> list[dict[str, Any]]:
    """The siblings checker's per-key [second, max siblings] series, the keys that grew most first."""
    series = details.get("timeline") if isinstance(details, Mapping) else None
    if not isinstance(series, Mapping):
        return []
    out = []
    for key, pts in series.items():
        if isinstance(pts, list) and len(pts) >= 2 and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pts):
            out.append({"name": str(key), "series": [{"name": "", "points": [[float(x), float(y)] for x, y in pts]}]})
    out.sort(key=lambda c: -max(p[1] for p in c["series"][0]["points"]))
    return out[:keep]


def _trim(value: Any, depth: int = 0) -> Any:
    """Checker details cut to a size a page can show (long lists are cut, with a note)."""
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {str(k): _trim(v, depth + 1) for k, v in items[:200]}
        if len(items) > 200:
            out["…"] = f"{len(items) - 200} more entries"
        return out
    if isinstance(value, (list, tuple)):
        cut = [_trim(v, depth + 1) for v in value[:200]]
        return cut + ([f"… {len(value) - 200} more"] if len(value) > 200 else [])
    return value


X_FIELDS = ("x", "t_ms", "t_ms_to", "t_ms_from", "t", "k")
Y_FIELDS = ("y", "p_visible", "p", "probability", "share")
PAIRED = ("observed", "theory", "measured", "model", "expected")  # suffixes drawn together on one chart


def _curves(details: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Numeric curves in the staleness checker's details: lists of [x, y] pairs or {x: y} mappings."""
    out = []

    def visit(name: str, v: Any) -> None:
        if isinstance(v, list) and v and all(isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, (int, float)) for x in p) for p in v):
            out.append({"name": name, "points": [[float(x), float(y)] for x, y in v]})
        elif isinstance(v, list) and v and all(isinstance(p, Mapping) for p in v):
            xk = next((k for k in X_FIELDS if k in v[0]), None)
            yk = next((k for k in Y_FIELDS if k in v[0]), None)
            if xk and yk:
                pts = [[float(p[xk]), float(p[yk])] for p in v
                       if isinstance(p.get(xk), (int, float)) and isinstance(p.get(yk), (int, float))]
                if len(pts) >= 2:
                    out.append({"name": f"{name} ({yk} by {xk})", "points": pts})
        elif isinstance(v, Mapping):
            try:
                pts = sorted((float(k), float(x)) for k, x in v.items())
            except (TypeError, ValueError):
                for k, x in v.items():
                    visit(f"{name}.{k}" if name else str(k), x)
                return
            if len(pts) >= 2:
                out.append({"name": name, "points": [list(p) for p in pts]})

    visit("", details)
    # curves named A_observed / A_theory (and the like) share one chart, so a measurement sits beside its model
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in out:
        stem, _, suffix = c["name"].rpartition("_")
        groups.setdefault(stem if stem and suffix in PAIRED else c["name"], []).append(c)
    charts = []
    for gname, members in groups.items():
        if len(members) > 1:
            charts.append({"name": gname, "series": [{"name": m["name"].rsplit("_", 1)[-1], "points": m["points"]}
                                                     for m in members]})
        else:
            charts.append({"name": members[0]["name"], "series": [{"name": "", "points": members[0]["points"]}]})
    return charts[:12]


def write_run_report(run_dir: str | Path, history: History | None = None) -> Path:
    """(Re)write ``report.html`` in a run folder and return its path. Called by the runner after each run."""
    model = build_run_model(run_dir, history)
    page = render_page("run.html.j2", m=model, title=f"run {model['name']}")
    out = Path(run_dir) / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
