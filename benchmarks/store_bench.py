"""Reference store throughput and latency: the figures recorded in benchmarks/RESULTS.md ("## Store").

Run: ``python benchmarks/store_bench.py [--seconds 10] [--concurrency 16] [--fsync always,one,never]``.
The store's target is judged at the default setting (``one``); the others are printed beside it.
For each fsync setting (and each concurrency, when given a list such as ``8,16,32``) it
starts a local 3-node cluster (N=3, R=2, W=2, vclock),
preloads the keys, then runs ``--concurrency`` workers for ``--seconds``, spread
over the three nodes as coordinators, each looping over read-modify-write cycles
as Dynamo's clients update a key: GET a random key, then PUT it with the context
that GET returned (so 50% reads, 50% writes, and siblings only from truly
concurrent writes; the mean sibling count of 200 keys read after the run is
printed). Prints ops/s and p50/p99/p99.9 per op type. The load comes from wrk
(``store_load.lua``; C, so the load generator costs ~0.1 ms of CPU per op) when
it is installed, else from ``DynamoClient`` in this process (``--client python``);
both share the 2 cores with the nodes. CPU per op is printed for the nodes and for
the client separately (load-independent figures), and so is the disk under the data
dirs, sampled during the load (:class:`DiskProbe`): with fsync on, no write beats it.

``--lazyfs`` puts each node's data dir on the power-loss nemesis's lazy file system (a FUSE
passthrough that keeps the old content of every page written since its file's last fsync,
``harness/backends/lazyfs.py``): run with and without it to see what the layer costs.

The default concurrency, 16, is the knee on this 2-core machine (benchmarks/RESULTS.md has
the sweep): 32 clients change throughput by -3% to +28% while write latency grows 1.6-2x,
and at 8 each op costs more CPU (fewer requests share a batch), so throughput falls.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.backends.lazy_disks import LazyDisk, unavailable  # noqa: E402
from harness.backends.local_procs import Spawner  # noqa: E402
from targets.dynamo.client import DynamoClient
from targets.dynamo.config import DEFAULTS
from targets.dynamo.launcher import local_cluster


#: The store issue's benchmark target (issue 2): both at once, on a 2-core machine.
TARGET_OPS = 2000
TARGET_P999_MS = 50.0


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


class DiskProbe:
    """Samples the disk under the nodes' data while the load runs: a 4 KB write and an
    ``fdatasync`` every ``interval`` seconds, timed, in a file of the same directory.

    Why: with fsync on, a write is acknowledged only after its commit reached the disk, so
    no write can be faster than the disk's own ``fdatasync`` at that moment. A virtual disk
    can stall every fsync on the machine for tens or hundreds of ms at once (seen here:
    30-320 ms every few seconds with no other load, in every process together); the
    figures say how much of a write tail is the store and how much the disk under it."""

    def __init__(self, directory: str, interval: float = 0.05, stall_ms: float = TARGET_P999_MS) -> None:
        self.path = Path(directory) / "disk-probe"
        self.interval = interval
        self.stall_ms = stall_ms
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-probe", daemon=True)

    def __enter__(self) -> "DiskProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            block, i = b"p" * 4096, 0
            while not self._stop.wait(self.interval):
                os.pwrite(fd, block, (i % 256) * 4096)   # overwrite a small ring: no file growth
                i += 1
                t0 = time.perf_counter()
                os.fdatasync(fd)
                self.samples.append(1000 * (time.perf_counter() - t0))
        finally:
            os.close(fd)
            self.path.unlink(missing_ok=True)

    def figures(self) -> dict:
        """p50/p99/max of the fdatasync times in ms, and how many took ``stall_ms`` or more."""
        values = sorted(self.samples)
        return {"n": len(values), "p50": percentile(values, 0.5), "p99": percentile(values, 0.99),
                "max": values[-1] if values else float("nan"),
                "stalls": sum(v >= self.stall_ms for v in values)}


async def preload(urls: dict[str, str], keys: int) -> None:
    """Write every key once (retried: load spikes) so reads find something."""
    clients = [DynamoClient(name, url, 10) for name, url in urls.items()]
    try:
        async def one(i: int) -> None:
            for _ in range(5):
                try:
                    await clients[i % len(clients)].put(f"b{i}", i)
                    return
                except Exception:  # noqa: BLE001
                    await asyncio.sleep(0.1)
        for start in range(0, keys, 50):
            await asyncio.gather(*(one(i) for i in range(start, min(keys, start + 50))))
    finally:
        for c in clients:
            await c.close()


async def python_load(urls: dict[str, str], node_pids: list[int], seconds: float, concurrency: int, keys: int,
                      seed: int) -> dict:
    """The load from ``DynamoClient`` workers in this process (what the harness's clients cost)."""
    rng = random.Random(seed)
    clients = [DynamoClient(name, url, 10) for name, url in urls.items()]
    lat: dict[str, list[float]] = {"read": [], "write": []}
    errors = {"read": 0, "write": 0}
    samples: list[str] = []           # the first error messages, printed with the figures
    try:
        async def worker(w: int) -> None:
            client = clients[w % len(clients)]
            local = random.Random(rng.random())
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:       # read-modify-write cycles: a GET, then a PUT with its context
                key = f"b{local.randrange(keys)}"
                t0 = time.perf_counter()
                try:
                    context = (await client.get(key)).context
                except Exception as exc:  # noqa: BLE001 - counted, the benchmark goes on
                    errors["read"] += 1
                    samples.append(f"read: {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                t1 = time.perf_counter()
                lat["read"].append(t1 - t0)
                try:
                    await client.put(key, w, context)
                except Exception as exc:  # noqa: BLE001
                    errors["write"] += 1
                    samples.append(f"write: {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                lat["write"].append(time.perf_counter() - t1)

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


def wrk_load(urls: dict[str, str], node_pids: list[int], seconds: float, concurrency: int, keys: int,
             seed: int, out_dir: str) -> dict:
    """The same workload from wrk (C, one connection per wrk thread, ``store_load.lua``), one wrk
    process per coordinator node sharing ``concurrency`` connections between them."""
    env = {**os.environ, "STORE_LOAD_KEYS": str(keys), "STORE_LOAD_SEED": str(seed)}
    names = sorted(urls)
    shares = [concurrency // len(names) + (1 if i < concurrency % len(names) else 0) for i in range(len(names))]
    script = str(Path(__file__).with_name("store_load.lua"))
    cpu0, started = cpu_seconds(node_pids), time.perf_counter()
    outs = [Path(out_dir) / f"wrk-{name}.jsonl" for name in names]   # one per wrk: no interleaved lines
    procs = [subprocess.Popen(["wrk", "-t", str(n), "-c", str(n), "-d", f"{seconds:g}s", "--timeout", "10s",
                               "-s", script, urls[name]], env={**env, "STORE_LOAD_OUT": str(out)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for name, n, out in zip(names, shares, outs) if n]
    client0 = cpu_seconds([p.pid for p in procs])
    # wrk's own CPU, read just before it exits (a reaped process has no /proc entry)
    client_cpu = 0.0
    while any(p.poll() is None for p in procs):
        client_cpu = max(client_cpu, cpu_seconds([p.pid for p in procs]) - client0)
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(node_pids) - cpu0
    for p in procs:
        if p.returncode:
            raise SystemExit(f"store_bench: wrk failed: {p.stderr.read().decode()[-300:]}")
    lat: dict[str, list[float]] = {"read": [], "write": []}
    errors = {"read": 0, "write": 0, "socket": 0}
    samples: list[str] = []
    for line in (line for out in outs if out.exists() for line in out.read_text().splitlines()):
        row = json.loads(line)
        if "socket_errors" in row:
            errors["socket"] += row["socket_errors"]
            continue
        for kind in ("read", "write"):
            lat[kind].extend(us / 1e6 for us in row[kind])
            errors[kind] += row["errors"][kind]
        samples.extend(row["samples"])
    return {"elapsed": elapsed, "lat": lat, "errors": errors, "cpu": cpu, "client_cpu": client_cpu,
            "error_samples": samples[:3]}


async def mean_siblings(urls: dict[str, str], keys: int, sample: int = 200) -> float:
    """Mean sibling count of ``sample`` keys read (r=3) after the run: how concurrent the writes were."""
    client = DynamoClient(*next(iter(urls.items())), 10)
    try:
        counts = [len((await client.get(f"b{i}", r=3)).values) for i in range(0, keys, max(1, keys // sample))]
    finally:
        await client.close()
    return sum(counts) / max(1, len(counts))


def report(label: str, result: dict) -> None:
    total = sum(len(v) for v in result["lat"].values())
    cpu_ms = 1000 * result["cpu"] / max(1, total)
    client_ms = 1000 * result["client_cpu"] / max(1, total)
    print(f"{label}: {total / result['elapsed']:.0f} ops/s ({total} ok ops in {result['elapsed']:.1f}s, "
          f"errors {result['errors']}); machine load average {result['load']:.1f}; "
          f"mean siblings per key after the run {result['siblings']:.2f}")
    print(f"  CPU per op: 3 nodes {cpu_ms:.2f} ms, bench client {client_ms:.2f} ms "
          f"({(result['cpu'] + result['client_cpu']) / result['elapsed']:.2f} cores busy); "
          f"2 idle cores would bound it at ~{2000 / (cpu_ms + client_ms):.0f} ops/s "
          f"(~{2000 / cpu_ms:.0f} with the client elsewhere)")
    for sample in result["error_samples"]:
        print(f"  error: {sample}")
    worst_tail = 0.0
    for kind, values in result["lat"].items():
        values.sort()
        ms = [1000 * percentile(values, q) for q in (0.5, 0.99, 0.999)]
        worst_tail = max(worst_tail, ms[2])
        print(f"  {kind:5s} n={len(values):6d}  p50 {ms[0]:6.2f} ms  p99 {ms[1]:6.2f} ms  p99.9 {ms[2]:6.2f} ms")
    disk = result["disk"]
    print(f"  disk under the data dirs (4 KB write + fdatasync every 50 ms during the load, n={disk['n']}): "
          f"p50 {disk['p50']:.2f} ms  p99 {disk['p99']:.2f} ms  max {disk['max']:.2f} ms; "
          f"{disk['stalls']} took {TARGET_P999_MS:.0f} ms or more")
    ops = total / result["elapsed"]
    met = ops >= TARGET_OPS and worst_tail < TARGET_P999_MS
    why = ""
    if not met and worst_tail >= TARGET_P999_MS and result["fsync"] == "always":
        why = (f"; under always a write waits for two fsyncs in a row, the coordinator's and then a "
               f"replica's, and this disk's own took up to {disk['max']:.0f} ms in this run")
    judged = result["fsync"] == DEFAULTS["fsync"] and not result.get("lazyfs")
    print(f"  target (>= {TARGET_OPS:,} ops/s with p99.9 < {TARGET_P999_MS:.0f} ms for reads and writes): "
          f"{'met' if met else 'not met'} ({ops:,.0f} ops/s, worst p99.9 {worst_tail:.0f} ms{why})"
          + ("" if judged else f"; for comparison: the target is judged at the default, --fsync "
                               f"{DEFAULTS['fsync']}, without --lazyfs"))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def lazy_disks(tmp: str, on: bool) -> Iterator[None]:
    """With ``on``: the three nodes' data dirs (``tmp/n1`` ..) mounted as lazy disks meanwhile."""
    disks = [LazyDisk(Path(tmp), f"n{i}", f"bench{os.getpid()}") for i in (1, 2, 3)] if on else []
    spawner = Spawner()     # the daemons get SIGTERM (and unmount) if this process dies
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    try:
        for disk in disks:
            disk.start(lambda argv, log: spawner.launch(argv, log, env, death_signal=signal.SIGTERM))
        yield
    finally:
        for disk in disks:
            disk.unmount()
        spawner.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", default="16", help="clients; a comma-separated list runs each")
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--fsync", default="always,one,never")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--client", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python",
                   help="load generator: wrk (apt install wrk; default when found) or DynamoClient in this process")
    p.add_argument("--event-loop", default="auto", choices=("auto", "asyncio", "uvloop"),
                   help="the nodes' --event-loop (auto = uvloop, as nodes run without libfaketime)")
    p.add_argument("--uvloop", action="store_true", help="run the python client on uvloop")
    p.add_argument("--lazyfs", action="store_true", help="the data dirs on lazy disks (the power-loss nemesis's)")
    args = p.parse_args()
    try:
        levels = [int(c) for c in args.concurrency.split(",")]
        if min(levels) < 1:
            raise ValueError
    except ValueError:
        p.error(f"--concurrency must be positive integers separated by commas, got {args.concurrency!r}")
    if args.lazyfs and unavailable():
        p.error(f"--lazyfs: {unavailable()}")
    signal.signal(signal.SIGTERM, _interrupt)   # so the clusters' and disks' cleanup runs on SIGTERM too
    for fsync, concurrency in ((f, c) for f in args.fsync.split(",") for c in levels):
        with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp, lazy_disks(tmp, args.lazyfs), \
                local_cluster(3, tmp, n=3, r=2, w=2, fsync=fsync, mode="vclock", request_timeout=2.0,
                              event_loop=args.event_loop) as c:
            urls = {name: node.url for name, node in c.nodes.items()}
            pids = [proc.pid for proc in c.procs.values()]
            load = os.getloadavg()[0]
            asyncio.run(preload(urls, args.keys))
            with DiskProbe(tmp) as disk:
                if args.client == "wrk":
                    result = wrk_load(urls, pids, args.seconds, concurrency, args.keys, args.seed, tmp)
                else:
                    coro = python_load(urls, pids, args.seconds, concurrency, args.keys, args.seed)
                    if args.uvloop:
                        import uvloop
                        result = uvloop.run(coro)
                    else:
                        result = asyncio.run(coro)
            result["disk"] = disk.figures()
            result["fsync"] = fsync
            result["lazyfs"] = args.lazyfs
            result["load"] = max(load, os.getloadavg()[0])
            result["siblings"] = asyncio.run(mean_siblings(urls, args.keys))
        report(f"fsync={fsync} N=3 R=2 W=2 concurrency={concurrency} client={args.client}"
               + (" lazyfs" if args.lazyfs else ""), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
