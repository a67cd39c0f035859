"""How fast the harness drives a store, and what it costs per op.

Three measurements, each for ``--seconds`` with ``--concurrency`` workers:

1. **raw**: bare ``DynamoClient`` calls (register-style read then write)
   against a real 3-node local cluster: what the store gives without the
   harness.
2. **harness**: the harness's own client workers (generator, stagger with an
   unreachable rate, journal, op records) running the register workload
   against the same cluster: the op rate the harness sustains, and per op the
   time spent inside the request (the workload's ``execute``) vs. the rest
   (generator, journaling, scheduling) = the harness overhead.
3. **null**: the same workers against an in-process store that answers at
   once: the harness's ceiling, where all time is harness time.

    python benchmarks/harness_bench.py [--seconds 10] [--concurrency 10] [--fsync one|always|never]

Prints one figure per line; figures for this machine are in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.backends.base import ClusterConfig  # noqa: E402
from harness.backends.local import LocalBackend  # noqa: E402
from harness.history import HistoryJournal  # noqa: E402
from harness.plugins import node_client  # noqa: E402
from harness.spec import load_spec  # noqa: E402
from harness.workers import ClientPhase, run_clients  # noqa: E402
from harness.workloads import build  # noqa: E402
from targets.adapter import OpFailed, OpIndeterminate, ReadResult, WriteResult  # noqa: E402


@dataclass
class Timed:
    """Wraps a workload: accumulates the time spent inside ``execute`` (the request itself)."""

    inner: Any
    seconds: float = 0.0
    ops: int = 0

    def generator(self) -> Any:
        return self.inner.generator()

    async def execute(self, client: Any, req: Any, session: dict) -> Any:
        t = time.perf_counter()
        try:
            return await self.inner.execute(client, req, session)
        finally:
            self.seconds += time.perf_counter() - t
            self.ops += 1


@dataclass
class NullClient:
    node: str
    data: dict = field(default_factory=dict)

    async def get(self, key: str, **_: Any) -> ReadResult:
        v = self.data.get(key)
        return ReadResult(() if v is None else (v,), "c", v is not None)

    async def put(self, key: str, value: Any, context: Any = None, **_: Any) -> WriteResult:
        self.data[key] = value
        return WriteResult("c")


async def raw(clients: dict[str, Any], seconds: float, concurrency: int) -> tuple[int, float]:
    """Read-then-write pairs straight through the client; returns (ops, summed request seconds)."""
    names = list(clients)
    end = time.perf_counter() + seconds
    done, busy = 0, 0.0

    async def one(i: int) -> None:
        nonlocal done, busy
        c, n = clients[names[i % len(names)]], 0
        while time.perf_counter() < end:
            t = time.perf_counter()
            key = f"r-{(i + n) % 10}"
            try:
                rr = await c.get(key)
                await c.put(key, i * 1_000_000 + n, rr.context)
            except (OpFailed, OpIndeterminate):
                pass  # counted like the harness counts fail/info: an op that took its time
            busy += time.perf_counter() - t
            done += 1
            n += 1

    await asyncio.gather(*(one(i) for i in range(concurrency)))
    return done, busy


async def through_harness(clients: dict[str, Any], seconds: float, concurrency: int, journal_dir: Path,
                          label: str) -> None:
    spec = load_spec(None, {"workload.name": "register", "workload.mix": {"write": 1, "read": 0.0001},
                            "concurrency": concurrency, "nodes": 3, "seed": 1})
    timed = Timed(build(spec.workload, concurrency, list(clients)))
    phase = ClientPhase(seed=1, concurrency=concurrency, rate=1e9, duration=seconds, client_timeout=5.0)
    with HistoryJournal(journal_dir / f"{label}.jsonl") as journal:
        t, cpu = time.perf_counter(), time.process_time()
        await run_clients(journal, timed, clients, list(clients), phase)  # type: ignore[arg-type]
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    total = wall * concurrency  # every worker is busy all the time: no rate limit bites
    inside = timed.seconds / timed.ops * 1e3
    overhead = (total - timed.seconds) / timed.ops * 1e3
    print(f"{label}: {timed.ops / wall:.0f} ops/s sustained ({timed.ops} ops in {wall:.1f}s, "
          f"concurrency {concurrency})")
    print(f"{label}: per op {inside:.2f} ms in the request, {overhead:.3f} ms in the harness "
          f"({100 * overhead / (inside + overhead):.1f}% of worker time, incl. waiting for the shared event loop)")
    print(f"{label}: harness process CPU {cpu / timed.ops * 1e3:.3f} ms per op (client HTTP included)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--fsync", default="one", choices=("one", "always", "never"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    from targets.dynamo.target import DynamoTarget

    backend = LocalBackend()
    settings = {**load_spec(None, {"target.fsync": args.fsync}).target}
    try:
        nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1", "n2", "n3"), settings=settings, run_dir=tmp,
                                            faketime=False))

        async def cluster_phases() -> None:
            target = DynamoTarget()
            clients = {n.name: node_client(target, n, timeout=5.0, settings=settings) for n in nodes}
            try:
                ops, busy = await raw(clients, args.seconds, args.concurrency)
                print(f"raw client: {ops / args.seconds:.0f} ops/s (read+write pairs), "
                      f"{busy / max(ops, 1) * 1e3:.2f} ms per op, fsync={args.fsync}")
                await through_harness(clients, args.seconds, args.concurrency, tmp, "harness vs 3-node cluster")
            finally:
                await asyncio.gather(*(c.close() for c in clients.values()))

        asyncio.run(cluster_phases())
    finally:
        backend.teardown()
    null = {n: NullClient(n) for n in ("n1", "n2", "n3")}
    asyncio.run(through_harness(null, min(args.seconds, 5.0), args.concurrency, tmp, "harness vs null store"))


if __name__ == "__main__":
    main()
