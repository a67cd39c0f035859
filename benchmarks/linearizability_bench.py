"""Linearizability checker speed: the figures recorded in benchmarks/RESULTS.md ("## Linearizability").

Run: ``python benchmarks/linearizability_bench.py [--quick]``. Histories are
simulated register runs: each client invokes an op, the op takes effect at a
random moment while it is in flight (so the history is linearizable by
construction), then completes; some writes time out (``info``, and take
effect or not at random) and the client continues under a new process.
Prints wall time, per-key worst case, cache peak and traced memory.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkers.base import CheckContext  # noqa: E402
from checkers.linearizability import LinearizabilityChecker  # noqa: E402
from harness.history import History  # noqa: E402
from harness.ops import Op  # noqa: E402


def simulate(n_ops: int, clients: int, keys: list[str], *, seed: int, info_rate: float = 0.0,
             key_weights: list[float] | None = None, read_share: float = 0.5,
             info_rate_by_key: dict[str, float] | None = None) -> list[Op]:
    """A linearizable register history: invoke, take effect at a random moment, complete."""
    rng = random.Random(seed)
    ops: list[Op] = []
    value = {k: None for k in keys}
    next_value = iter(range(1, 10 ** 9))
    proc = list(range(clients))
    next_proc = clients
    inflight: dict[int, list] = {}   # client -> [f, key, arg, applied, result, crash]
    invoked = 0

    def emit(p: int, type_: str, f: str, key: str, v: object) -> None:
        ops.append(Op(index=len(ops), time=len(ops) * 1000, process=p, type=type_, f=f, key=key, value=v))

    while invoked < n_ops or inflight:
        c = rng.randrange(clients)
        st = inflight.get(c)
        if st is None:
            if invoked >= n_ops:
                continue
            key = rng.choices(keys, key_weights)[0] if key_weights else rng.choice(keys)
            if rng.random() < read_share:
                st = ["read", key, None, False, None, False]
            else:
                st = ["write", key, next(next_value), False, None, False]
            rate = (info_rate_by_key or {}).get(key, info_rate)
            st[5] = st[0] == "write" and rng.random() < rate
            emit(proc[c], "invoke", st[0], key, st[2])
            inflight[c] = st
            invoked += 1
        elif not st[3]:
            st[3] = True
            if st[5] and rng.random() < 0.5:
                continue           # a timed-out write that never took effect
            if st[0] == "read":
                st[4] = value[st[1]]
            else:
                value[st[1]] = st[2]
        else:
            f, key, arg, _, result, crash = st
            if crash:
                emit(proc[c], "info", f, key, arg)
                proc[c] = next_proc
                next_proc += 1
            else:
                emit(proc[c], "ok", f, key, result if f == "read" else arg)
            del inflight[c]
    return ops


def corrupt_one_read(ops: list[Op], key: str, seed: int) -> list[Op]:
    """Make one ok read of ``key`` return a value that was overwritten long before (a stale read)."""
    rng = random.Random(seed)
    writes = [o for o in ops if o.key == key and o.f == "write" and o.type == "ok"]
    reads = [i for i, o in enumerate(ops) if o.key == key and o.f == "read" and o.type == "ok"
             and i > len(ops) // 3]
    i = rng.choice(reads)
    stale = next(w.value for w in writes if w.index < i // 4)
    o = ops[i]
    ops = list(ops)
    ops[i] = Op(index=o.index, time=o.time, process=o.process, type=o.type, f=o.f, key=o.key, value=stale)
    return ops


def measure(name: str, ops: list[Op], time_limit: float = 60.0, repeat: int = 3, **options: object) -> dict:
    """Check ``repeat`` times (best wall and CPU time kept: the machine is shared), once more traced for memory."""
    history = History.of(ops)
    ctx = CheckContext(options=dict(options), time_limit=time_limit)
    checker = LinearizabilityChecker()
    wall = cpu = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = checker.check(history, ctx)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    tracemalloc.start()
    checker.check(history, ctx)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    d = result.details
    w = d["worst_key"] or {}
    row = {"case": name, "ops": sum(1 for o in ops if o.type == "invoke"), "verdict": result.verdict.value,
           "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "keys": result.counts["keys"],
           "invalid": result.counts["keys_invalid"], "unknown": result.counts["keys_unknown"],
           "worst_key_s": w.get("seconds"), "worst_key_steps": w.get("steps"), "cache_peak": d["cache_peak_pairs"],
           "traced_peak_MB": round(peak / 2 ** 20, 1)}
    print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def append_burst(ops: list[Op], key: str, k: int, seed: int, first_value: int) -> list[Op]:
    """Append a burst on ``key``: k concurrent writes, each read by a concurrent read, then a read of the first.

    Linearizable (any order of the writes that ends with the first-invoked
    one), but a depth-first search tries that write first and must refute
    every set of writes containing it, about 2**k (set, value) pairs: WGL's
    (and Porcupine's) worst case, as when many clients write and read one hot
    key at once.
    """
    rng = random.Random(seed)
    out = list(ops)
    base = max((o.process for o in ops if isinstance(o.process, int)), default=0) + 1

    def emit(p: int, type_: str, f: str, v: object) -> None:
        out.append(Op(index=len(out), time=len(out) * 1000, process=p, type=type_, f=f, key=key, value=v))

    pairs = [(base + 2 * i, base + 2 * i + 1, first_value + i) for i in range(k)]
    for w, r, v in pairs:
        emit(w, "invoke", "write", v)
        emit(r, "invoke", "read", None)
    done = [("write", w, v) for w, _, v in pairs] + [("read", r, v) for _, r, v in pairs]
    rng.shuffle(done)
    for f, p, v in done:
        emit(p, "ok", f, v)
    emit(base + 2 * k, "invoke", "read", None)
    emit(base + 2 * k, "ok", "read", first_value)
    return out


def hard_key_ops(seed: int, burst: int = 16) -> list[Op]:
    """2,000 ops, 50 clients, 10 keys; 9 keys end in a hard burst (WGL worst case), 1 has a stale read."""
    keys = [f"k{i}" for i in range(10)]
    ops = simulate(2000 - 9 * (2 * burst + 1), 50, keys, seed=seed, info_rate=0.05)
    ops = corrupt_one_read(ops, "k0", seed)
    for j, key in enumerate(keys[1:]):
        ops = append_burst(ops, key, burst, seed + j, first_value=10 ** 6 * (j + 1))
    return ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller histories")
    args = ap.parse_args()
    n = 2000 if args.quick else 10_000
    print(f"python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    measure("10k ops, 100 keys, concurrency 10", simulate(n, 10, [f"k{i}" for i in range(100)], seed=1))
    measure("10k ops, 100 keys, concurrency 10, 10% info writes",
            simulate(n, 10, [f"k{i}" for i in range(100)], seed=2, info_rate=0.1))
    measure(f"{n // 1000}k ops, ONE key, concurrency 10, 5% info writes", simulate(n, 10, ["k"], seed=4, info_rate=0.05))
    measure("2k ops, 50 clients, 10 keys, one stale read, 9 hard keys", hard_key_ops(3))
    measure("same, no stop on invalid: all keys to the end or the 20 s limit", hard_key_ops(3),
            linearizable_stop_on_invalid=False, time_limit=20.0, repeat=1)
    burst_only = append_burst([], "hot", 16, seed=1, first_value=1)
    measure("one hard key alone: 16 concurrent writes and reads, then a read of the first write",
            burst_only, repeat=1)


if __name__ == "__main__":
    main()
