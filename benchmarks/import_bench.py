"""Parse + check time for Jepsen-shaped EDN histories, next to Porcupine's: benchmarks/RESULTS.md ("Jepsen imports").

Run: ``python benchmarks/import_bench.py [--runs 3] [--keep DIR]``. Writes 100 etcd-shaped
and 6 kv-shaped histories (``jepsen_shapes.py``: 1, 10 and 50 clients, ok and bad), then
for each family times reading them (``checkers.jepsen_edn.import_edn``) and checking them
(the ``linearizable`` checker with its defaults: model chosen from the ops, counterexamples
shrunk), best of ``--runs``. Porcupine's figures were measured on this machine earlier (Go
is not installed now, and the corpora are not fetched), on its own test files of the same
shapes; they are printed beside ours as the issue gives them.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from jepsen_shapes import etcd_history, kv_history  # noqa: E402

from checkers.base import CheckContext  # noqa: E402
from checkers.jepsen_edn import import_edn  # noqa: E402
from checkers.linearizability import LinearizabilityChecker  # noqa: E402

#: Porcupine (Go) on its own test data, this machine, same sitting as our earlier figures (issue 19).
PORCUPINE_MS = {"etcd (100 histories)": 807.0, "kv (6 histories)": 217.0, "c50-ok": 190.0}
KV_NAMES = [f"c{c:02d}-{kind}" for c in (1, 10, 50) for kind in ("ok", "bad")]


def write_corpus(folder: Path) -> dict[str, list[Path]]:
    """The generated histories, by family (and c50-ok alone, the case the issue names)."""
    etcd = []
    for i in range(100):
        p = folder / f"etcd_{i:03d}.edn"
        p.write_text(etcd_history(i))
        etcd.append(p)
    kv = []
    for name in KV_NAMES:
        p = folder / f"{name}.edn"
        p.write_text(kv_history(int(name[1:3]), seed=int(name[1:3]), bad=name.endswith("bad")))
        kv.append(p)
    return {"etcd (100 histories)": etcd, "kv (6 histories)": kv, "c50-ok": [folder / "c50-ok.edn"]}


def measure(paths: list[Path], runs: int) -> dict:
    """Best-of-``runs`` parse and check times (ms) over ``paths``, and the verdicts."""
    best = {"parse_ms": float("inf"), "check_ms": float("inf"), "search_ms": float("inf"), "cpu_ms": float("inf")}
    verdicts: dict[str, int] = {}
    for _ in range(runs):
        parse = check = search = cpu = 0.0
        verdicts = {}
        for p in paths:
            c0 = time.process_time()
            t0 = time.perf_counter()
            history = import_edn(p).history
            t1 = time.perf_counter()
            result = LinearizabilityChecker().check(history, CheckContext())
            t2 = time.perf_counter()
            cpu += time.process_time() - c0
            LinearizabilityChecker().check(history, CheckContext(options={"linearizable_counterexample_time": 0}))
            search += time.perf_counter() - t2
            parse, check = parse + (t1 - t0), check + (t2 - t1)
            verdicts[result.verdict.value] = verdicts.get(result.verdict.value, 0) + 1
        best["parse_ms"] = min(best["parse_ms"], parse * 1000)
        best["check_ms"] = min(best["check_ms"], check * 1000)
        best["search_ms"] = min(best["search_ms"], search * 1000)
        best["cpu_ms"] = min(best["cpu_ms"], cpu * 1000)
    return {**{k: round(v, 1) for k, v in best.items()}, "verdicts": verdicts}


def edn_format_ms(paths: list[Path]) -> float | None:
    """What parsing alone took with edn_format (the reader used before), if it is installed."""
    try:
        import edn_format
    except ImportError:
        return None
    t0 = time.perf_counter()
    for p in paths:
        edn_format.loads_all(p.read_text())
    return round((time.perf_counter() - t0) * 1000, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3, help="repetitions; the best is kept (the machine is shared)")
    ap.add_argument("--keep", metavar="DIR", help="write the histories here and keep them")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        families = write_corpus(folder)
        for name, paths in families.items():
            row = measure(paths, args.runs)
            total = row["parse_ms"] + row["check_ms"]
            ref = PORCUPINE_MS[name]
            print(f"{name}: parse {row['parse_ms']} ms + check {row['check_ms']} ms = {total:.1f} ms "
                  f"(CPU {row['cpu_ms']} ms; search alone, no shrinking {row['search_ms']} ms); Porcupine {ref} ms; ratio {total / ref:.2f}; "
                  f"verdicts {row['verdicts']}; edn_format parse alone {edn_format_ms(paths)} ms", flush=True)


if __name__ == "__main__":
    main()
