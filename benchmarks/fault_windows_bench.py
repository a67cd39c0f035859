"""Fault windows on Docker: from a fault's request to its effect and to its probe's verdict.

Starts a Docker cluster of each size (its own containers and network, removed at the end),
runs partitions, kills and pauses ``--rounds`` times each through the real nemesis worker and
history journal (so the figures are what a run records), and prints per fault:

* request -> effect: the completion's ``effective`` minus the invoke (iptables rules in place,
  SIGKILL / SIGSTOP returned; for a stop, the rules gone / the node answering / SIGCONT);
* request -> confirmed: the completion minus the invoke (the probe's verdict);
* whether the fault window (``checkers.fault_windows``, what reports and the perf checker
  use) opened within 1.5 s of the request.

    python benchmarks/fault_windows_bench.py [--sizes 5,9] [--rounds 3]

Needs a Docker engine and the node image (``dynharness image build``). Paste the figures into
benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkers.fault_windows import fault_windows  # noqa: E402
from harness.backends.base import ClusterConfig  # noqa: E402
from harness.backends.docker import DockerBackend  # noqa: E402
from harness.history import History, HistoryJournal  # noqa: E402
from harness.spec import target_defaults  # noqa: E402
from harness.workers import NemesisWorker  # noqa: E402
from nemeses import registry  # noqa: E402
from nemeses.base import NemesisContext, NemesisOp  # noqa: E402
from targets.dynamo.target import DynamoTarget  # noqa: E402

TARGET_S = 1.5


def faults(names: list[str]) -> list[tuple[str, NemesisOp, NemesisOp]]:
    """(label, start op, stop op): a majority/minority partition, a kill and a pause of one node."""
    minority = names[: len(names) // 2]
    majority = names[len(names) // 2:]
    grudge = {n: (majority if n in minority else minority) for n in names}
    label = f"partition {{{','.join(minority)}}} \\| {{{','.join(majority)}}}"   # escaped for a markdown table
    victim = names[-1]
    return [(label, NemesisOp("start-partition", {"topology": "halves", "grudge": grudge}), NemesisOp("stop-partition")),
            (f"kill {victim} / start", NemesisOp("kill", {"nodes": [victim]}), NemesisOp("start", {"nodes": [victim]})),
            (f"pause {victim} / resume", NemesisOp("pause", {"nodes": [victim]}),
             NemesisOp("resume", {"nodes": [victim]}))]


def run_size(size: int, rounds: int) -> list[dict]:
    """Every fault ``rounds`` times on a fresh ``size``-node Docker cluster: one row per action."""
    names = [f"n{i}" for i in range(1, size + 1)]
    backend = DockerBackend({"reuse": False})
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="fault-windows-bench-") as tmp:
        try:
            t0 = time.monotonic()
            nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=tuple(names), settings=target_defaults(),
                                                run_dir=Path(tmp), faketime=False))
            print(f"\n{size} Docker nodes up in {time.monotonic() - t0:.1f} s; load average {os.getloadavg()[0]:.1f}")
            nem = registry.build_for(["partition", "crash", "pause"])
            nem.setup(NemesisContext(backend, nodes, 0, DynamoTarget()))
            journal = HistoryJournal(Path(tmp) / "history.jsonl")
            worker = NemesisWorker(journal, nem, [])
            try:
                for label, start, stop in faults(names):
                    for r in range(rounds):
                        for op in (start, stop):
                            worker.invoke(op)
                            inv, done = journal.ops[-2], journal.ops[-1]
                            rows.append(_row(size, label, r, inv, done))
                            print(_line(rows[-1]), flush=True)
                        time.sleep(1.0)   # let the cluster settle between rounds
            finally:
                nem.heal()
                journal.close()
            opened = {w.open_index: w for w in fault_windows(History.of(journal.ops))}
            for row in rows:
                w = opened.get(row["index"])
                if w is not None:
                    row["window_after_s"] = (w.start - row["requested"]) / 1e9
        finally:
            backend.teardown()
    return rows


def _row(size: int, label: str, r: int, inv, done) -> dict:
    eff = done.get("effective")
    return {"size": size, "fault": label, "round": r, "f": inv.f, "index": inv.index, "requested": inv.time,
            "ok": done.type == "info",
            "effect_s": (eff - inv.time) / 1e9 if eff is not None else None,
            "confirmed_s": (done.time - inv.time) / 1e9, "detail": (done.get("probe") or {}).get("detail", done.error)}


def _line(row: dict) -> str:
    eff = f"{row['effect_s'] * 1000:7.0f} ms" if row["effect_s"] is not None else "      - ms"
    return (f"  {row['size']} nodes  {row['f']:<16} round {row['round']}: request->effect {eff}, "
            f"request->confirmed {row['confirmed_s'] * 1000:6.0f} ms, probe {'ok' if row['ok'] else 'FAILED'}")


def summary(rows: list[dict]) -> None:
    print(f"\n| nodes | fault | action | n | request -> effect (median, max) | request -> confirmed (median, max) "
          f"| window opened within {TARGET_S} s | probes ok |")
    print("|---|---|---|---|---|---|---|---|")
    keys = list(dict.fromkeys((r["size"], r["fault"], r["f"]) for r in rows))
    for size, fault, f in keys:
        sel = [r for r in rows if (r["size"], r["fault"], r["f"]) == (size, fault, f)]
        eff = [r["effect_s"] for r in sel if r["effect_s"] is not None]
        conf = [r["confirmed_s"] for r in sel]
        opened = [r["window_after_s"] for r in sel if "window_after_s" in r]
        within = f"{sum(1 for x in opened if x <= TARGET_S)}/{len(opened)}" if opened else "(closes a window)"
        fmt = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms, {max(xs) * 1000:.0f} ms" if xs else "-"  # noqa: E731
        print(f"| {size} | {fault} | {f} | {len(sel)} | {fmt(eff)} | {fmt(conf)} | {within} | "
              f"{sum(r['ok'] for r in sel)}/{len(sel)} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5,9", help="cluster sizes, comma-separated (default 5,9)")
    ap.add_argument("--rounds", type=int, default=3, help="start/stop rounds per fault (default 3)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(not 3 <= s <= 20 for s in sizes) or not 1 <= args.rounds <= 20:
        ap.error("sizes must be 3..20 nodes and rounds 1..20")
    rows = [row for size in sizes for row in run_size(size, args.rounds)]
    summary(rows)
    opened = [r["window_after_s"] for r in rows if "window_after_s" in r]
    late = [f"{r['size']} nodes {r['f']} round {r['round']}" for r in rows if r.get("window_after_s", 0) > TARGET_S]
    print(f"\n{len(opened) - len(late)}/{len(opened)} fault windows opened within {TARGET_S} s of their request"
          + (f"; late: {', '.join(late)}" if late else ""))
    return 0 if not late and all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
