"""Synthetic run folders: realistic stored runs without a cluster.

Reports, campaigns and their benchmarks need run folders (``docs/contracts.md``
§4) of any size and with known anomalies, in milliseconds and on machines
with no cluster. This module writes one: a cart or register history with
invoke/ok/fail/info ops, a partition mid-run recorded as nemesis ops, and a
``results.json`` whose anomalies point at the ops of that history that prove
them (lost adds missing from the final read; a stale read as a
linearizability counterexample). Real runs have the same shape.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from harness.ops import Op

MS = 1_000_000


def _quantile(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[i]


class _Builder:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(self, t: int, process: Any, type_: str, f: str, **kw: Any) -> Op:
        extra = {k: v for k, v in kw.items() if k not in ("key", "value", "node", "error", "siblings")}
        op = Op(index=len(self.ops), time=t, process=process, type=type_, f=f, key=kw.get("key"),
                value=kw.get("value"), node=kw.get("node"), error=kw.get("error"),
                siblings=kw.get("siblings"), extra=extra)
        self.ops.append(op)
        return op


def write_synthetic_run(run_dir: str | Path, *, workload: str = "cart", ops: int = 2000, seed: int = 1,
                        nodes: int = 5, concurrency: int = 5, mode: str = "lww", n: int = 3, r: int = 2,
                        w: int = 2, lost_share: float = 0.4, partition: bool = True, name: str | None = None,
                        duration_s: float = 20.0) -> Path:
    """Write a run folder with about ``ops`` client operations; return its path.

    ``lost_share`` of the acknowledged adds (cart) are missing from the final
    read; for ``register`` one key gets a stale read after a newer write was
    acknowledged (a linearizability counterexample). ``partition`` shades a
    {n1,n2}|rest window over the middle third of the run.
    """
    rng = random.Random(seed)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "nodes").mkdir(exist_ok=True)
    names = [f"n{i + 1}" for i in range(nodes)]
    b = _Builder()
    dur = int(duration_s * 1e9)
    p_start, p_end = dur // 3, 2 * dur // 3
    minority = names[:2]
    grudge = {"n1": names[2:], "n2": names[2:], **{x: minority for x in names[2:]}}
    events: list[tuple[int, str, dict[str, Any]]] = []
    if partition:
        events = [(p_start, "start-partition", {"grudge": grudge}), (p_end, "stop-partition", {})]
    per_worker = max(1, ops // concurrency)
    step = dur // per_worker
    # Interleave workers by generating (time, worker) slots, then emitting in time order.
    slots = sorted((k * step + rng.randrange(max(1, step)), wk) for wk in range(concurrency) for k in range(per_worker))
    process_of = {wk: wk for wk in range(concurrency)}
    next_process = concurrency
    open_until: dict[int, int] = {}
    item = 0
    keys = [f"cart-{i}" for i in range(3)] if workload == "cart" else [f"r{i}" for i in range(8)]
    acked_adds: list[tuple[Op, Op]] = []
    acked_writes: dict[str, list[tuple[Op, Op]]] = {}
    last_value: dict[str, int | None] = {k: None for k in keys}
    reads: list[tuple[Op, Op]] = []
    sibling_counts: list[int] = []
    latencies: list[float] = []
    ev_i = 0
    import heapq
    heap: list[tuple[int, int, int, Op, dict[str, Any]]] = []
    seq = 0

    def flush_until(t: int) -> None:
        nonlocal ev_i
        while True:
            nxt_c = heap[0][0] if heap else None
            nxt_e = events[ev_i][0] if ev_i < len(events) else None
            cands = [x for x in (nxt_c, nxt_e) if x is not None and x <= t]
            if not cands:
                return
            if nxt_e is not None and nxt_e <= t and (nxt_c is None or nxt_e <= nxt_c):
                et, f, val = events[ev_i]
                ev_i += 1
                b.add(et, "nemesis", "invoke", f, value=val)
                done = {x: "isolated from " + ",".join(grudge[x]) for x in names} if f == "start-partition" else {x: "healed" for x in names}
                b.add(et + 3 * MS, "nemesis", "info", f, value=done, mechanism="iptables",
                      probe={"ok": True, "detail": "probed", "measurements": {}})
            else:
                ct, _, _, inv, comp = heapq.heappop(heap)
                op = b.add(ct, inv.process, comp.pop("type"), inv.f, **comp)
                _complete(inv, op)

    def _complete(inv: Op, op: Op) -> None:
        latencies.append((op.time - inv.time) / MS)
        if op.type == "ok" and inv.f in ("add",):
            acked_adds.append((inv, op))
        if op.type == "ok" and inv.f == "write":
            acked_writes.setdefault(inv.key, []).append((inv, op))
            last_value[inv.key] = inv.value
        if op.type == "ok" and inv.f == "read":
            reads.append((inv, op))
            sibling_counts.append(op.siblings or 1)

    for t, wk in slots:
        if open_until.get(wk, -1) > t:
            continue
        flush_until(t)
        node = names[wk % nodes]
        key = rng.choice(keys)
        in_part = partition and p_start <= t < p_end
        lat = int(rng.lognormvariate(1.2, 0.6) * MS) + (int(rng.uniform(50, 400) * MS) if in_part and rng.random() < 0.2 else 0)
        roll = rng.random()
        sib = 1 if mode == "lww" else 1 + int(rng.random() < (0.5 if in_part else 0.08)) + int(rng.random() < 0.05)
        proc = process_of[wk]
        if workload == "cart":
            item += 1
            f, value = ("read", None) if rng.random() < 0.15 else ("add", item)
        else:
            item += 1
            f, value = ("read", None) if rng.random() < 0.5 else ("write", item)
        inv = b.add(t, proc, "invoke", f, key=key, value=value, node=node, session=wk)
        if in_part and node in minority and roll < 0.25:
            comp = {"type": "info", "key": key, "value": value, "node": node, "error": "timeout", "session": wk}
            lat = int(1000 * MS)
            process_of[wk] = next_process
            next_process += 1
        elif roll < 0.03:
            comp = {"type": "fail", "key": key, "value": value, "node": node, "error": "quorum not reached: needed 2, replied 1", "session": wk}
        else:
            if f == "read":
                v: Any = (sorted(rng.sample(range(1, item + 1), min(3, item))) if workload == "cart" else last_value[key])
                comp = {"type": "ok", "key": key, "value": v, "node": node, "siblings": sib, "session": wk}
            else:
                comp = {"type": "ok", "key": key, "value": value, "node": node, "siblings": sib, "session": wk}
        open_until[wk] = t + lat
        heapq.heappush(heap, (t + lat, seq, wk, inv, comp))
        seq += 1
    flush_until(dur * 10)
    end = max((o.time for o in b.ops), default=0) + 200 * MS

    # Final reads after heal: cart keeps all but lost_share of acked adds.
    lost: list[tuple[Op, Op]] = []
    final_reads: dict[str, tuple[Op, Op]] = {}
    if workload == "cart":
        lrng = random.Random(seed + 1)
        for k in keys:
            adds = [(i, c) for i, c in acked_adds if i.key == k]
            survivors = []
            for pair in adds:
                (lost if lrng.random() < lost_share else survivors).append(pair)
            inv = b.add(end, 10_000 + len(final_reads), "invoke", "read", key=k, node=names[0], final=True, session=-1)
            comp = b.add(end + 5 * MS, inv.process, "ok", "read", key=k, node=names[0], final=True, session=-1,
                         value=sorted(i.value for i, _ in survivors), siblings=1)
            final_reads[k] = (inv, comp)
            end += 10 * MS
    ops_list = b.ops
    _write(run_dir, ops_list)

    # Results, computed from the history above.
    client = [o for o in ops_list if o.process != "nemesis" and o.type != "invoke"]
    ok_n = sum(1 for o in client if o.type == "ok")
    lat_sorted = sorted(latencies)
    checkers: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    sib_hist: dict[str, int] = {}
    for s in sibling_counts:
        sib_hist[str(s)] = sib_hist.get(str(s), 0) + 1
    max_sib = max(sibling_counts, default=1)
    checkers["siblings"] = {"checker": "siblings", "verdict": "valid", "counts": {"max_siblings": max_sib},
                            "anomalies": [], "details": {"histogram": sib_hist}, "reason": None, "seconds": 0.01}
    load = [o for o in ops_list if o.process != "nemesis" and not o.get("final")]   # the ops before the final reads
    load_span_s = (max(o.time for o in load) - min(o.time for o in load)) / 1e9 if load else 0.0
    perf_counts = {"availability": ok_n / max(1, len(client)), "p999_latency_ms": _quantile(lat_sorted, 0.999),
                   "load_ok_ops_per_s": sum(o.type == "ok" for o in load) / load_span_s if load_span_s else None}
    checkers["perf"] = {"checker": "perf", "verdict": "valid", "counts": perf_counts, "anomalies": [],
                        "details": {"quantiles_ms": {q: _quantile(lat_sorted, float(q)) for q in ("0.5", "0.95", "0.99", "0.999")}},
                        "reason": None, "seconds": 0.01}
    if workload == "cart":
        anomalies = [{"kind": "lost-write", "description": f"add of {i.value} to {i.key} was acknowledged at {c.time / 1e9:.2f}s but is missing from the final read",
                      "ops": [i.index, c.index, final_reads[i.key][1].index], "key": i.key, "time": c.time} for i, c in lost]
        checkers["lost-writes"] = {"checker": "lost-writes", "verdict": "invalid" if lost else "valid",
                                   "counts": {"acked_writes": len(acked_adds), "lost_writes": len(lost),
                                              "lost_share": len(lost) / max(1, len(acked_adds))},
                                   "anomalies": anomalies, "details": {}, "reason": f"{len(lost)} acknowledged adds lost" if lost else None,
                                   "seconds": 0.02}
        checkers["resurrections"] = {"checker": "resurrections", "verdict": "valid", "counts": {"resurrections": 0},
                                     "anomalies": [], "details": {}, "reason": None, "seconds": 0.0}
    else:
        anomalies = []
        # A stale read: the first ok read after two acked writes to a key that returned an older value.
        for k, writes in acked_writes.items():
            if len(writes) >= 2:
                w_old, w_new = writes[-2], writes[-1]
                inv = b.add(end, 20_000, "invoke", "read", key=k, node=names[-1], session=0)
                comp = b.add(end + 2 * MS, 20_000, "ok", "read", key=k, node=names[-1], session=0, value=w_old[0].value, siblings=1)
                anomalies.append({"kind": "nonlinearizable", "description": f"read of {k} returned {w_old[0].value} after write of {w_new[0].value} was acknowledged",
                                  "ops": [w_old[0].index, w_old[1].index, w_new[0].index, w_new[1].index, inv.index, comp.index], "key": k, "time": comp.time})
                _write(run_dir, b.ops)
                break
        checkers["linearizable"] = {"checker": "linearizable", "verdict": "invalid" if anomalies else "valid",
                                    "counts": {"linearizable": "invalid" if anomalies else "valid"}, "anomalies": anomalies,
                                    "details": {"keys": {k: {"verdict": "invalid" if any(a["key"] == k for a in anomalies) else "valid",
                                                             "ops": sum(1 for o in b.ops if o.key == k)} for k in keys}},
                                    "reason": None, "seconds": 0.05}
        stale = sum(1 for _ in reads) and 0.1
        checkers["staleness"] = {"checker": "staleness", "verdict": "valid", "counts": {"stale_read_share": stale},
                                 "anomalies": [], "details": {"t_visibility": [[t, min(1.0, 0.4 + t / 50)] for t in range(0, 40, 5)],
                                                              "k_staleness": [[k, 0.33 ** k] for k in range(0, 5)]},
                                 "reason": None, "seconds": 0.01}
    verdicts = [c["verdict"] for c in checkers.values()]
    verdict = "invalid" if "invalid" in verdicts else ("unknown" if "unknown" in verdicts else "valid")
    for c in checkers.values():
        for k2, v2 in c["counts"].items():
            summary.setdefault(k2, v2)
    (run_dir / "results.json").write_text(json.dumps({"verdict": verdict, "summary": summary, "checkers": checkers}, indent=1))
    spec = {"name": name or f"synthetic-{workload}", "backend": "local", "nodes": nodes, "seed": seed,
            "duration": duration_s, "rate": 100, "concurrency": concurrency, "recovery": 5,
            "target": {"n": n, "r": r, "w": w, "pr": 0, "pw": 0, "mode": mode, "fsync": "one"},
            "workload": {"name": workload, "keys": len(keys)},
            "nemesis": {"faults": ["partition"] if partition else [], "partition": "fixed:n1,n2|n3,n4,n5"},
            "synthetic": True}
    (run_dir / "spec.json").write_text(json.dumps(spec, indent=1))
    (run_dir / "nemesis-schedule.json").write_text(json.dumps([{"at": e[0] / 1e9, "f": e[1], "value": e[2]} for e in events]))
    for x in names:
        (run_dir / "nodes" / f"{x}.log").write_text(f"{x} synthetic log\n")
    return run_dir


def _write(run_dir: Path, ops: list[Op]) -> None:
    with open(run_dir / "history.jsonl", "w", encoding="utf-8") as fh:
        for o in ops:
            fh.write(json.dumps(o.to_json(), separators=(",", ":")) + "\n")


def write_counterexample_run(run_dir: str | Path, *, down_s: tuple[float, float] = (1.0, 5.3)) -> Path:
    """A small hand-built register run (history and spec, no results: run the checkers on it) with known answers.

    Key ``x`` is not linearizable: ``write 1`` (process 0), then ``write 2`` (process 1) are
    acknowledged one after the other, process 3 reads 2, then process 2 reads 1: that read cannot
    be placed after the longest linearizable prefix (write 1, write 2, read 2); process 4's write
    of 3 timed out (info: it may or may not have happened, and explains nothing). Key ``y`` is linearizable; key ``z`` has more ops, so the
    checker (smallest keys first, stopping at the first invalid key) never reaches it. Node n2 is
    wiped at ``down_s[0]`` s and answers again at ``down_s[1]`` s (the ``start`` op's effect).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    b = _Builder()
    s = 1_000 * MS
    wipe_at, back_at = (int(t * s) for t in down_s)
    script: list[tuple[int, Any, str, str, dict[str, Any]]] = []

    def op(t0: float, t1: float, p: int, f: str, key: str, value: Any, node: str = "n1") -> None:
        script.append((int(t0 * s), p, "invoke", f, {"key": key, "value": None if f == "read" else value, "node": node}))
        script.append((int(t1 * s), p, "ok", f, {"key": key, "value": value, "node": node}))

    op(0.20, 0.40, 0, "write", "x", 1)
    op(0.50, 0.70, 1, "write", "x", 2)
    op(0.60, 0.85, 3, "read", "x", 2, node="n2")
    op(0.90, 1.20, 2, "read", "x", 1, node="n3")
    script.append((int(0.75 * s), 4, "invoke", "write", {"key": "x", "value": 3, "node": "n2"}))   # never answered
    script.append((int(1.05 * s), 4, "info", "write", {"key": "x", "value": 3, "node": "n2", "error": "timeout"}))
    op(0.25, 0.45, 3, "write", "y", 7)
    op(1.50, 1.90, 3, "read", "y", 7)
    for k in range(4):
        op(2.0 + k, 2.4 + k, k, "write", "z", k)
        op(2.5 + k, 2.8 + k, k, "read", "z", k)
    wiped = {"n2": {"signal": "KILL", "process_gone": True, "wiped": True, "data_dir_empty": True, "ok": True}}
    script += [(wipe_at, "nemesis", "invoke", "wipe", {"value": {"nodes": ["n2"]}}),
               (wipe_at + 20 * MS, "nemesis", "info", "wipe", {"value": wiped, "mechanism": "SIGKILL",
                                                               "effective": wipe_at + 10 * MS}),
               (back_at - 250 * MS, "nemesis", "invoke", "start", {"value": {"nodes": ["n2"]}}),
               (back_at + 2 * MS, "nemesis", "info", "start", {"value": {"n2": {"started": True, "health": "ok", "ok": True}},
                                                               "mechanism": "start", "effective": back_at})]
    for t, p, type_, f, kw in sorted(script, key=lambda e: e[0]):
        b.add(t, p, type_, f, **kw)
    _write(run_dir, b.ops)
    spec = {"name": "counterexample", "backend": "local", "nodes": 3, "seed": 1, "duration": 6.0,
            "target": {"n": 3, "r": 1, "w": 1, "mode": "lww"}, "workload": {"name": "register", "keys": 3},
            "nemesis": {"faults": ["wipe"]}, "synthetic": True}
    (run_dir / "spec.json").write_text(json.dumps(spec, indent=1))
    return run_dir
