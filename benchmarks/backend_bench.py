"""Backend benchmark: image build (cold and cached), cluster up/down, per-fault latency.

Per-fault latency is the time from asking the nemesis for a fault to its
*probed* effect: ``nemesis.invoke`` returns only after its probe confirmed
the fault took effect (partition: every cut link drops and every kept link
carries traffic; clock: the node reports the skewed wall clock; kill: the
process is gone and the node does not answer; ...). Measured on the Docker
backend and on the SSH backend (against sshd containers, as a sudo user).

    python benchmarks/backend_bench.py               # cached image, 5 nodes, 3 rounds
    python benchmarks/backend_bench.py --cold        # also a cold image build (empty caches, --force)

Prints a table per section; paste the figures into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import secrets
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.backends.base import ClusterConfig  # noqa: E402
from harness.backends.docker import DockerBackend  # noqa: E402
from harness.backends.docker_cluster import connect_engine, create_cluster, remove_clusters, sshd_hosts  # noqa: E402
from harness.backends.image import ensure_image  # noqa: E402
from harness.backends.ssh import SshBackend  # noqa: E402
from nemeses.base import NemesisContext, NemesisOp  # noqa: E402
from nemeses.registry import build_for  # noqa: E402
from targets.dynamo.target import DynamoTarget

HALVES = {"n1": ["n3", "n4", "n5"], "n2": ["n3", "n4", "n5"], "n3": ["n1", "n2"], "n4": ["n1", "n2"],
          "n5": ["n1", "n2"]}
FAULTS = [  # (label, start op, stop op)
    ("partition {n1,n2}|{n3,n4,n5}", NemesisOp("start-partition", {"topology": "halves", "grudge": HALVES}),
     NemesisOp("stop-partition", None)),
    ("clock bump +90 s on n2", NemesisOp("start-clock", {"mode": "bump", "nodes": ["n2"], "offset_ms": 90000}),
     NemesisOp("stop-clock", {"nodes": ["n2"]})),
    ("kill n4 / start n4", NemesisOp("kill", {"nodes": ["n4"]}), NemesisOp("start", {"nodes": ["n4"]})),
    ("pause n3 / resume n3", NemesisOp("pause", {"nodes": ["n3"]}), NemesisOp("resume", {"nodes": ["n3"]})),
]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


def show(title: str, rows: list[tuple[str, ...]]) -> None:
    print(f"\n## {title}")
    width = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"  {r[0]:<{width}}  " + "  ".join(r[1:]))


def bench_image(client, cold: bool) -> None:
    rows = []
    if cold:
        # A cold build without disturbing anyone: an empty cache dir (no debs, no wheels) and --force,
        # so debootstrap downloads everything again; running containers keep their image by ID.
        with tempfile.TemporaryDirectory(prefix="dynharness-cold-") as cache:
            env = {**os.environ, "DYNHARNESS_CACHE": cache, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            secs, proc = timed(lambda: subprocess.run([sys.executable, "-m", "harness", "image", "build", "--force"],
                                                      env=env, capture_output=True, text=True, timeout=1800))
        steps = [ln.strip("│ ").replace("│", "|") for ln in proc.stdout.splitlines() if "│" in ln]
        rows.append(("cold build (empty caches, --force)", f"{secs:6.1f} s",
                     "; ".join(" ".join(x.split()) for x in steps) if proc.returncode == 0 else f"FAILED: {proc.stderr[-200:]}"))
    secs, build = timed(lambda: ensure_image(client))
    rows.append(("cached build (hash hit)", f"{secs:6.1f} s", "all steps cached" if build.cached else "REBUILT"))
    show("image", rows)


def bench_cluster(client, tag: str, rounds: int) -> None:
    ups, downs, setups, teardowns = [], [], [], []
    nodes = [f"n{i}" for i in range(1, 6)]
    for _ in range(rounds):
        name = f"bench-{secrets.token_hex(3)}"
        ups.append(timed(lambda: create_cluster(client, name, nodes, tag, run_id=name, kept=True))[0])
        downs.append(timed(lambda: remove_clusters(client, name))[0])
        backend = DockerBackend({"image": tag, "reuse": False})
        with tempfile.TemporaryDirectory() as tmp:
            cfg = ClusterConfig(target=DynamoTarget(), nodes=tuple(nodes), settings={"n": 3, "r": 2, "w": 2}, run_dir=Path(tmp))
            setups.append(timed(lambda: backend.setup(cfg))[0])
            teardowns.append(timed(backend.teardown)[0])
    med = lambda xs: f"{statistics.median(xs):6.2f} s (min {min(xs):.2f}, max {max(xs):.2f})"  # noqa: E731
    show(f"Docker cluster, 5 nodes, median of {rounds}", [
        ("cluster up (network + 5 idle containers)", med(ups)),
        ("cluster down", med(downs)),
        ("backend setup (up + 5 nodes started and healthy)", med(setups)),
        ("backend teardown (all removed)", med(teardowns)),
    ])


def bench_faults(label: str, backend, run_dir: Path, rounds: int) -> None:
    nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=tuple(f"n{i}" for i in range(1, 6)), settings={"n": 3, "r": 2, "w": 2},
                                        run_dir=run_dir))
    prim = {  # pairs run alternately, so every kill kills a running node and every start starts a dead one
        ("run `iptables -S` in a node", "write the clock file"): (
            lambda: backend.run("n1", ["iptables", "-S"]).check(),
            lambda: backend.write_file("n2", nodes[1].clock_file, b"+0\n")),
        ("pause (SIGSTOP)", "resume (SIGCONT)"): (lambda: backend.pause("n3"), lambda: backend.resume("n3")),
        ("kill (SIGKILL, until gone)", "start (until healthy)"): (lambda: backend.kill("n4"), lambda: backend.start("n4")),
    }
    prows = []
    for (first, second), (f1, f2) in prim.items():
        t1, t2 = [], []
        for _ in range(rounds):
            t1.append(timed(f1)[0])
            t2.append(timed(f2)[0])
        prows += [(first, f"{statistics.median(t1) * 1000:7.0f} ms"), (second, f"{statistics.median(t2) * 1000:7.0f} ms")]
    if hasattr(backend, "_shells") and label.startswith("Docker"):
        from harness.backends.docker_cluster import DockerShell
        slow = DockerShell(backend._shells["n1"].container, fast=False)
        times = [timed(lambda: slow.exec(["iptables", "-S"]).check())[0] for _ in range(rounds)]
        prows.append(("  same `iptables -S` through docker exec", f"{statistics.median(times) * 1000:7.0f} ms"))
    show(f"{label}: backend primitives, median of {rounds}", prows)
    nemesis = build_for(["partition", "clock", "crash", "pause"])
    nemesis.setup(NemesisContext(backend, nodes, seed=1, target=DynamoTarget()))
    rows = []
    try:
        for name, start, stop in FAULTS:
            starts, stops, probes_ok = [], [], True
            for _ in range(rounds):
                secs, outcome = timed(lambda: nemesis.invoke(start))
                starts.append(secs)
                probes_ok &= outcome.probe.ok
                secs, outcome = timed(lambda: nemesis.invoke(stop))
                stops.append(secs)
                probes_ok &= outcome.probe.ok
            rows.append((name, f"start {statistics.median(starts):5.2f} s", f"stop {statistics.median(stops):5.2f} s",
                         f"mechanism {outcome.mechanism}", "probes ok" if probes_ok else "PROBE FAILED"))
    finally:
        nemesis.heal()
        backend.teardown()
    show(f"{label}: request -> probed effect, median of {rounds}", rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", action="store_true", help="also time a cold image build (empty caches, --force)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-ssh", action="store_true")
    args = ap.parse_args()
    client = connect_engine(timeout=120)
    bench_image(client, args.cold)
    tag = ensure_image(client).tag
    bench_cluster(client, tag, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        bench_faults("Docker backend", DockerBackend({"image": tag, "reuse": False}), Path(tmp) / "docker", args.rounds)
        if not args.skip_ssh:
            import paramiko
            key = paramiko.RSAKey.generate(2048)
            key.write_private_key_file(f"{tmp}/id_rsa")
            name = f"bench-ssh-{secrets.token_hex(3)}"
            try:
                ips, known = sshd_hosts(client, name, 5, tag, f"{key.get_name()} {key.get_base64()}")
                Path(f"{tmp}/known_hosts").write_text("\n".join(known) + "\n")
                ssh = SshBackend({"hosts": list(ips.values()), "user": "dyn", "key": f"{tmp}/id_rsa",
                                  "known_hosts": f"{tmp}/known_hosts"})
                bench_faults("SSH backend (sudo user, sshd containers)", ssh, Path(tmp) / "ssh", args.rounds)
            finally:
                remove_clusters(client, name)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
