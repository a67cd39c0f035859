"""Reference store throughput and latency: the figures recorded in benchmarks/RESULTS.md ("## Store").

Run: ``python benchmarks/store_bench.py [--seconds 10] [--concurrency 32] [--fsync always,never]``.
For each fsync setting it starts a local 3-node cluster (N=3, R=2, W=2, vclock),
preloads the keys, then runs ``--concurrency`` workers for ``--seconds``, each
doing 50% reads / 50% read-modify-write-free writes (a write chains the context
of that worker's last write to the key, so siblings stay bounded), spread over
the three nodes as coordinators. Prints ops/s and p50/p99/p99.9 per op type.
The client runs in this process on the same 2 cores as the nodes; CPU per op is
printed for the nodes and for the client separately (load-independent figures).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from targets.dynamo.client import DynamoClient
from targets.dynamo.launcher import local_cluster


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU seconds used so far by these processes (all their threads)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def workload(urls: dict[str, str], node_pids: list[int], seconds: float, concurrency: int, keys: int,
                   seed: int) -> dict:
    rng = random.Random(seed)
    clients = [DynamoClient(name, url, 10) for name, url in urls.items()]
    lat: dict[str, list[float]] = {"read": [], "write": []}
    errors = {"read": 0, "write": 0}
    samples: list[str] = []           # the first error messages, printed with the figures
    try:
        async def preload(i: int) -> None:        # so reads find something (retried: load spikes)
            for _ in range(5):
                try:
                    await clients[i % len(clients)].put(f"b{i}", i)
                    return
                except Exception:  # noqa: BLE001
                    await asyncio.sleep(0.1)
        for start in range(0, keys, 50):
            await asyncio.gather(*(preload(i) for i in range(start, min(keys, start + 50))))

        async def worker(w: int) -> None:
            client = clients[w % len(clients)]
            contexts: dict[str, str | None] = {}
            local = random.Random(rng.random())
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                key = f"b{local.randrange(keys)}"
                kind = "read" if local.random() < 0.5 else "write"
                t0 = time.perf_counter()
                try:
                    if kind == "read":
                        await client.get(key)
                    else:
                        contexts[key] = (await client.put(key, w, contexts.get(key))).context
                except Exception as exc:  # noqa: BLE001 - counted, the benchmark goes on
                    errors[kind] += 1
                    samples.append(f"{kind}: {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                lat[kind].append(time.perf_counter() - t0)

        cpu0, client0, started = cpu_seconds(node_pids), cpu_seconds([os.getpid()]), time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(node_pids) - cpu0
        client_cpu = cpu_seconds([os.getpid()]) - client0
    finally:
        for c in clients:
            await c.close()
    return {"elapsed": elapsed, "lat": lat, "errors": errors, "cpu": cpu, "client_cpu": client_cpu,
            "error_samples": samples[:3]}


def report(label: str, result: dict) -> None:
    total = sum(len(v) for v in result["lat"].values())
    cpu_ms = 1000 * result["cpu"] / max(1, total)
    client_ms = 1000 * result["client_cpu"] / max(1, total)
    print(f"{label}: {total / result['elapsed']:.0f} ops/s ({total} ok ops in {result['elapsed']:.1f}s, "
          f"errors {result['errors']}); machine load average {result['load']:.1f}")
    print(f"  CPU per op: 3 nodes {cpu_ms:.2f} ms, bench client {client_ms:.2f} ms "
          f"({(result['cpu'] + result['client_cpu']) / result['elapsed']:.2f} cores busy); "
          f"2 idle cores would bound it at ~{2000 / (cpu_ms + client_ms):.0f} ops/s "
          f"(~{2000 / cpu_ms:.0f} with the client elsewhere)")
    for sample in result["error_samples"]:
        print(f"  error: {sample}")
    for kind, values in result["lat"].items():
        values.sort()
        ms = [1000 * percentile(values, q) for q in (0.5, 0.99, 0.999)]
        print(f"  {kind:5s} n={len(values):6d}  p50 {ms[0]:6.2f} ms  p99 {ms[1]:6.2f} ms  p99.9 {ms[2]:6.2f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--fsync", default="always,never")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--uvloop", action="store_true",
                   help="run the bench client on uvloop (pip install 'dynharness[bench]'); nodes are unaffected")
    args = p.parse_args()
    for fsync in args.fsync.split(","):
        with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp, \
                local_cluster(3, tmp, n=3, r=2, w=2, fsync=fsync, mode="vclock", request_timeout=2.0) as c:
            urls = {name: node.url for name, node in c.nodes.items()}
            pids = [proc.pid for proc in c.procs.values()]
            load = os.getloadavg()[0]
            coro = workload(urls, pids, args.seconds, args.concurrency, args.keys, args.seed)
            if args.uvloop:   # the bench client only: nodes never use uvloop (libfaketime would fake its timers)
                import uvloop
                result = uvloop.run(coro)
            else:
                result = asyncio.run(coro)
            result["load"] = max(load, os.getloadavg()[0])
        report(f"fsync={fsync} N=3 R=2 W=2 concurrency={args.concurrency}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
