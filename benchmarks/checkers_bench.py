"""Time each checker on a generated 1,000,000-op history (target: under 30 s each).

    python benchmarks/checkers_bench.py [--ops 1000000] [--only lost-writes,session]

Three synthetic histories, deterministic (seeded), shaped like real runs:
cart (20,000 carts, add/remove/read, a few lost acked adds, final reads),
register (1,000 keys, unique writes, some stale reads) and session (10
sessions x 10 keys, per-key increasing writes, some stale reads), each with
info/fail outcomes, sibling counts and nemesis windows. Prints one row per
(history, checker): wall seconds, CPU seconds (the machine is shared), ops/s, verdict, and the process's peak RSS.
Linearizability is benchmarked by its own script.
"""
from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkers import quantiles
from checkers.base import CheckContext
from checkers.registry import build
from harness.history import History
from harness.ops import Op

WORKERS = 20
STEP_NS = 100_000  # one invoke every 0.1 ms across all workers


class Recorder:
    """Turns (invoke time, completion time) pairs into a time-ordered op list, like the journal would."""

    def __init__(self) -> None:
        self.events: list[tuple[int, int, dict[str, Any]]] = []
        self.seq = 0

    def pair(self, process: Any, f: str, key: str | None, value: Any, t0: int, t1: int | None, outcome: str,
             result: Any = None, siblings: int | None = None, **extra: Any) -> None:
        self.events.append((t0, self.seq, dict(process=process, type="invoke", f=f, key=key, value=value, extra=extra)))
        self.seq += 1
        if t1 is not None:
            self.events.append((t1, self.seq, dict(process=process, type=outcome, f=f, key=key,
                                                   value=value if result is None else result,
                                                   siblings=siblings, extra=extra)))
            self.seq += 1

    def history(self) -> History:
        self.events.sort(key=lambda e: (e[0], e[1]))
        ops = [Op(index=i, time=t, process=d["process"], type=d["type"], f=d["f"], key=d.get("key"),
                  value=d.get("value"), siblings=d.get("siblings"), extra=d["extra"])
               for i, (t, _, d) in enumerate(self.events)]
        self.events = []
        return History.of(ops)


def _outcome(rng: random.Random) -> str:
    x = rng.random()
    return "info" if x < 0.01 else "fail" if x < 0.02 else "ok"


def _nemesis(rec: Recorder, end: int) -> None:
    for i in range(1, 5):
        t = end * i // 5
        rec.pair("nemesis", "start-partition", None, "halves", t, t + 1000, "info")
        rec.pair("nemesis", "stop-partition", None, None, t + end // 20, t + end // 20 + 1000, "info")


def gen_cart(n_ops: int, seed: int = 1) -> History:
    rng = random.Random(seed)
    rec = Recorder()
    carts: dict[str, set[int]] = {}
    added: dict[str, list[int]] = {}
    procs = list(range(WORKERS))
    item = 0
    n_pairs = n_ops // 2 - 20_000
    for i in range(n_pairs):
        w = i % WORKERS
        t0 = i * STEP_NS
        t1 = t0 + rng.randrange(50_000, 1_900_000)
        key = f"cart-{rng.randrange(20_000)}"
        s = carts.setdefault(key, set())
        out = _outcome(rng)
        x = rng.random()
        if x < 0.6:
            item += 1
            if out != "fail" and rng.random() > 0.001:  # 0.1% of adds lost by the "store"
                s.add(item)
            added.setdefault(key, []).append(item)
            rec.pair(procs[w], "add", key, item, t0, t1, out, siblings=1, session=w)
        elif x < 0.7 and added.get(key):
            it = added[key].pop()
            if out != "fail":
                s.discard(it)
            rec.pair(procs[w], "remove", key, it, t0, t1, out, siblings=1, session=w)
        else:
            rec.pair(procs[w], "read", key, None, t0, t1, "ok", result=sorted(s),
                     siblings=1 + (rng.random() < 0.01), session=w)
        if out == "info":
            procs[w] += WORKERS
    end = n_pairs * STEP_NS
    for j, key in enumerate(sorted(carts)):
        t0 = end + 2_000_000 + j * STEP_NS
        rec.pair(10_000_000 + j % WORKERS, "read", key, None, t0, t0 + 50_000, "ok", result=sorted(carts[key]),
                 siblings=1, final=True)
    _nemesis(rec, end)
    return rec.history()


def gen_register(n_ops: int, seed: int = 2) -> History:
    rng = random.Random(seed)
    rec = Recorder()
    latest: dict[str, list[int]] = {}
    procs = list(range(WORKERS))
    n_pairs = n_ops // 2 - 8
    for i in range(n_pairs):
        w = i % WORKERS
        t0 = i * STEP_NS
        t1 = t0 + rng.randrange(50_000, 1_900_000)
        key = f"r{rng.randrange(1000)}"
        hist = latest.setdefault(key, [])
        out = _outcome(rng)
        if rng.random() < 0.5:
            if out != "fail":
                hist.append(i)
            rec.pair(procs[w], "write", key, i, t0, t1, out, siblings=1, session=w)
        else:
            back = 2 if rng.random() < 0.05 else 1
            val = hist[-back] if len(hist) >= back else None
            rec.pair(procs[w], "read", key, None, t0, t1, "ok", result=val, siblings=1, session=w)
        if out == "info":
            procs[w] += WORKERS
    _nemesis(rec, n_pairs * STEP_NS)
    return rec.history()


def gen_session(n_ops: int, seed: int = 3, sessions: int = 10) -> History:
    rng = random.Random(seed)
    rec = Recorder()
    written: dict[str, int] = {}
    procs = list(range(sessions))
    n_pairs = n_ops // 2 - 8
    step = STEP_NS * WORKERS // sessions
    for i in range(n_pairs):
        s = i % sessions
        t0 = i * step
        t1 = t0 + rng.randrange(50_000, step * sessions - 100_000)
        out = _outcome(rng)
        if rng.random() < 0.4:
            key = f"s{s}-k{rng.randrange(10)}"
            v = written.get(key, 0) + 1
            written[key] = v
            rec.pair(procs[s], "write", key, v, t0, t1, out, siblings=1, session=s)
        else:
            owner = s if rng.random() < 0.7 else rng.randrange(sessions)
            key = f"s{owner}-k{rng.randrange(10)}"
            top = written.get(key, 0)
            got = [max(0, top - (rng.random() < 0.02))] if top else []
            rec.pair(procs[s], "read", key, None, t0, t1, "ok", result=[g for g in got if g], siblings=len(got),
                     session=s)
        if out == "info":
            procs[s] += sessions
    _nemesis(rec, n_pairs * step)
    return rec.history()


PLAN: list[tuple[str, Callable[[int], History], tuple[str, ...]]] = [
    ("cart", gen_cart, ("lost-writes", "resurrections", "siblings", "perf")),
    ("register", gen_register, ("staleness", "siblings", "perf")),
    ("session", gen_session, ("session", "staleness")),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--only", default="", help="comma-separated checker names")
    args = ap.parse_args()
    only = {x for x in args.only.split(",") if x}
    ctx = CheckContext(settings={"n": 3, "r": 2, "w": 2, "mode": "vclock"})
    print(f"{'history':<9} {'checker':<14} {'ops':>9} {'seconds':>8} {'cpu s':>7} {'ops/s':>10} {'verdict':<8} headline")
    for hname, gen, names in PLAN:
        names = tuple(n for n in names if not only or n in only)
        if not names:
            continue
        t = time.perf_counter()
        gc.disable()
        h = gen(args.ops)
        gc.enable()
        print(f"# generated {hname}: {len(h)} ops in {time.perf_counter() - t:.1f} s", flush=True)
        for c in build(names):
            quantiles._last_pairs = None  # each checker pays for pairing the history itself
            t, cpu = time.perf_counter(), time.process_time()
            r = c.check(h, ctx)
            dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
            head = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in list(r.counts.items())[:3]}
            print(f"{hname:<9} {c.name:<14} {len(h):>9} {dt:>8.2f} {dcpu:>7.2f} {len(h) / dt:>10.0f} {r.verdict.value:<8} {head}",
                  flush=True)
        del h
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# peak RSS {rss_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
