"""Per-fault latency on the local backend: from the nemesis request to the probed effect.

Starts a 5-node local cluster, then for each fault runs start + stop (or the
fault + its undo) ``--rounds`` times through the real nemeses, and prints the
wall time of each ``invoke`` (the request, the mechanism, and the probe that
confirms the effect), the part of it the probe took when the nemesis reports
it, and whether every probe passed.

    python benchmarks/nemesis_bench.py [--rounds 5] [--nodes 5]

Needs root (iptables) and libfaketime for the full table; rows that cannot
run here say why.
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

from harness.backends.base import ClusterConfig  # noqa: E402
from harness.backends.local import LocalBackend  # noqa: E402
from harness.errors import CapabilityError  # noqa: E402
from harness.spec import target_defaults  # noqa: E402
from nemeses import registry  # noqa: E402
from nemeses.base import NemesisContext, NemesisOp  # noqa: E402
from targets.dynamo.target import DynamoTarget

RIAK = {"n1": ["n3", "n4", "n5"], "n2": ["n3", "n4", "n5"], "n3": ["n1", "n2"], "n4": ["n1", "n2"], "n5": ["n1", "n2"]}

#: (row label, fault kinds to build, start op, stop op)
CASES = [
    ("partition riak (iptables)", ["partition"], NemesisOp("start-partition", {"topology": "riak", "grudge": RIAK}),
     NemesisOp("stop-partition")),
    ("clock bump -60 s (libfaketime)", ["clock"], NemesisOp("start-clock", {"mode": "bump", "nodes": ["n2"],
                                                                            "offset_ms": -60000}),
     NemesisOp("stop-clock", {"nodes": ["n2"]})),
    ("clock strobe 5 s / 0.5 s", ["clock"], NemesisOp("start-clock", {"mode": "strobe", "nodes": ["n2"],
                                                                      "offset_ms": 5000, "period": 0.5}),
     NemesisOp("stop-clock", {"nodes": ["n2"]})),
    ("clock drift 0.1 s/s", ["clock"], NemesisOp("start-clock", {"mode": "drift", "nodes": ["n2"], "rate": 0.1}),
     NemesisOp("stop-clock", {"nodes": ["n2"]})),
    ("pause / resume (SIGSTOP/SIGCONT)", ["pause"], NemesisOp("pause", {"nodes": ["n3"]}),
     NemesisOp("resume", {"nodes": ["n3"]})),
    ("kill -9 / start", ["crash"], NemesisOp("kill", {"nodes": ["n4"]}), NemesisOp("start", {"nodes": ["n4"]})),
    ("wipe / start", ["wipe"], NemesisOp("wipe", {"nodes": ["n4"]}), NemesisOp("start", {"nodes": ["n4"]})),
    ("loss 0.3 one node (iptables statistic)", ["loss"],
     NemesisOp("start-link", {"kind": "loss", "nodes": ["n1"], "probability": 0.3}),
     NemesisOp("stop-link", {"kind": "loss"})),
    ("latency 100 ms +/- 20 (in-process)", ["latency"],
     NemesisOp("start-link", {"kind": "latency", "nodes": ["n1"], "delay_ms": 100, "jitter_ms": 20}),
     NemesisOp("stop-link", {"kind": "latency"})),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=5)
    args = ap.parse_args()
    backend = LocalBackend()
    run_dir = Path(tempfile.mkdtemp(prefix="nemesis-bench-"))
    names = tuple(f"n{i}" for i in range(1, args.nodes + 1))
    try:
        nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=names, settings=target_defaults(), run_dir=run_dir))
        print(f"{args.nodes} local nodes, capabilities: {', '.join(sorted(backend.capabilities))}; "
              f"{args.rounds} rounds; load average {os.getloadavg()[0]:.1f}")
        print(f"| fault | start: request -> probed effect (median, max) | stop/undo -> probed (median, max) | probes ok |")
        print("|---|---|---|---|")
        for label, faults, start, stop in CASES:
            nem = registry.build_for(faults)
            try:
                nem.setup(NemesisContext(backend, nodes, 0, DynamoTarget()))
            except CapabilityError as e:
                print(f"| {label} | not run here: {e} | | |")
                continue
            starts, stops, ok = [], [], 0
            try:
                for _ in range(args.rounds):
                    for op, times in ((start, starts), (stop, stops)):
                        t0 = time.monotonic()
                        out = nem.invoke(op)
                        times.append(time.monotonic() - t0)
                        ok += out.probe.ok
            finally:
                nem.heal()
            fmt = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms, {max(xs) * 1000:.0f} ms"  # noqa: E731
            print(f"| {label} | {fmt(starts)} | {fmt(stops)} | {ok}/{2 * args.rounds} |")
    finally:
        backend.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
