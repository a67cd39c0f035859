"""Fault windows on Docker: from a fault's request to its effect and to its probe's verdict.

Starts a Docker cluster of each size (its own containers and network, removed at the end),
starts and stops every fault kind the Docker backend can run with the reference Dynamo target
``--rounds`` times each through the real nemesis worker and history journal (so the figures are
what a run records), and prints per fault:

* request -> effect: the completion's ``effective`` minus the invoke (iptables rules in place, a
  clock file written, an in-process link fault set, SIGKILL / SIGSTOP returned, a data dir wiped,
  a lazy disk's unsynced writes dropped; for a stop, the fault undone / the node answering);
* request -> confirmed: the completion minus the invoke (the probe's verdict);
* whether the fault window (``checkers.fault_windows``, what reports and the perf checker
  use) opened within 1.5 s of the request.

Each occurrence is drawn by its fault kind's own draw (``FaultKind.draw``, default settings,
``--seed``), so the ops are those a run would schedule; the clock is measured once per mode.
The cluster is started as a run naming the same faults would start it: under libfaketime when
``clock`` is measured, on lazy disks (FUSE) when ``power-loss`` is. A kind this machine cannot
run is said in one line and left out, never reported as measured.

    python benchmarks/fault_windows_bench.py [--sizes 5,9] [--rounds 3] [--faults crash,pause] [--seed 1]

Needs a Docker engine and the node image (``dynharness image build``). Paste the figures into
benchmarks/RESULTS.md. Exit 1 if a window opened late or a probe failed, 3 on bad arguments.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkers.fault_windows import fault_windows  # noqa: E402
from harness.backends import FEATURES  # noqa: E402
from harness.backends.base import ClusterConfig  # noqa: E402
from harness.backends.docker import DockerBackend, fuse_unavailable  # noqa: E402
from harness.errors import UserError  # noqa: E402
from harness.history import History, HistoryJournal  # noqa: E402
from harness.spec import target_defaults  # noqa: E402
from harness.workers import NemesisWorker  # noqa: E402
from nemeses import fault_kind, registry  # noqa: E402
from nemeses.base import NemesisContext, NemesisOp  # noqa: E402
from nemeses.schedule import CLOCK_MODES, NemesisSpec  # noqa: E402
from targets.dynamo.target import DynamoTarget  # noqa: E402

TARGET_S = 1.5


def measurable(kinds: list[str]) -> tuple[list[str], list[str]]:
    """(the kinds this machine can run on Docker with the Dynamo target, one line per kind it cannot)."""
    target, refused = DynamoTarget(), []
    for name in kinds:
        why = (fault_kind.target_refusals([name], target)
               + fault_kind.backend_refusals([name], "docker", FEATURES["docker"]))
        if not why and "lazy-disks" in fault_kind.backend_features([name]) and (fuse := fuse_unavailable()):
            why = [f"no lazy disks: {fuse}"]
        if why:
            refused.append(f"{name}: not measured on this machine ({why[0]})")
    return [k for k in kinds if not any(line.startswith(f"{k}:") for line in refused)], refused


def faults(kinds: list[str], names: list[str], seed: int) -> list[tuple[str, NemesisOp, NemesisOp]]:
    """(label, start op, stop op) per fault kind (per mode for the clock), each drawn by the kind's
    own draw from ``Random(seed)`` with the default settings."""
    records = fault_kind.requested(kinds)
    out = []
    for name in kinds:
        specs = [NemesisSpec(faults=(name,), clock_modes=(m,)) for m in CLOCK_MODES] if name == "clock" \
            else [NemesisSpec(faults=(name,))]
        for spec in specs:
            start, stop = records[name].draw(spec, names, random.Random(seed))
            said = records[name].describe(start.f, start.value).replace("|", "\\|")   # escaped for a markdown table
            out.append((f"{name}: {said}", start, stop))
    return out


def run_size(size: int, rounds: int, kinds: list[str], seed: int) -> list[dict]:
    """Every fault ``rounds`` times on a fresh ``size``-node Docker cluster: one row per action."""
    names = [f"n{i}" for i in range(1, size + 1)]
    backend = DockerBackend({"reuse": False})
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="fault-windows-bench-") as tmp:
        try:
            t0 = time.monotonic()
            nodes = backend.setup(ClusterConfig(
                target=DynamoTarget(), nodes=tuple(names), settings=target_defaults(), run_dir=Path(tmp),
                faketime="clock" in kinds, extra={"features": fault_kind.backend_features(kinds)}))
            print(f"\n{size} Docker nodes up in {time.monotonic() - t0:.1f} s "
                  f"(faketime {'on' if 'clock' in kinds else 'off'}, lazy disks "
                  f"{'on' if 'power-loss' in kinds else 'off'}); load average {os.getloadavg()[0]:.1f}")
            nem = registry.build_for(kinds)
            nem.setup(NemesisContext(backend, nodes, seed, DynamoTarget()))
            journal = HistoryJournal(Path(tmp) / "history.jsonl")
            worker = NemesisWorker(journal, nem, [])
            try:
                for label, start, stop in faults(kinds, names, seed):
                    print(f"  {size} nodes  {label.replace(chr(92), '')}", flush=True)
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
    failed = "" if row["ok"] else f" ({str(row['detail'])[:200]})"
    return (f"    {row['size']} nodes  {row['f']:<16} round {row['round']}: request->effect {eff}, "
            f"request->confirmed {row['confirmed_s'] * 1000:6.0f} ms, probe {'ok' if row['ok'] else 'FAILED'}{failed}")


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


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5,9", help="cluster sizes, comma-separated (default 5,9)")
    ap.add_argument("--rounds", type=int, default=3, help="start/stop rounds per fault (default 3)")
    ap.add_argument("--faults", default=",".join(fault_kind.names()),
                    help="fault kinds to measure, comma-separated (default: every registered kind)")
    ap.add_argument("--seed", type=int, default=1, help="seed of each fault kind's draw (default 1)")
    args = ap.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--sizes {args.sizes!r}: comma-separated whole numbers, e.g. 5,9") from None
    if not args.sizes or any(not 3 <= s <= 20 for s in args.sizes) or not 1 <= args.rounds <= 20:
        raise UserError("sizes must be 3..20 nodes and rounds 1..20")
    args.faults = list(dict.fromkeys(f.strip() for f in args.faults.split(",") if f.strip()))
    if not args.faults:
        raise UserError("--faults names no fault kind")
    fault_kind.requested(args.faults)      # UserError naming any unknown kind
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = _args(argv)
    except UserError as e:
        print(f"fault_windows_bench: {e}", file=sys.stderr)
        return 3
    kinds, refused = measurable(args.faults)
    for line in refused:
        print(line, flush=True)
    if not kinds:
        print("nothing to measure")
        return 1
    rows = [row for size in args.sizes for row in run_size(size, args.rounds, kinds, args.seed)]
    summary(rows)
    opened = [r["window_after_s"] for r in rows if "window_after_s" in r]
    late = [f"{r['size']} nodes {r['f']} round {r['round']}" for r in rows if r.get("window_after_s", 0) > TARGET_S]
    print(f"\n{len(opened) - len(late)}/{len(opened)} fault windows opened within {TARGET_S} s of their request"
          + (f"; late: {', '.join(late)}" if late else ""))
    for line in refused:
        print(line)
    return 0 if not late and all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
