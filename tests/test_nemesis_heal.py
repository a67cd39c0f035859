"""Always healed: ``dynharness heal`` on a cluster left faulted, and a run interrupted mid-fault
(SIGINT / SIGTERM) that leaves no rule, no stopped process and no skewed clock behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends import attach
from harness.backends.base import ClusterConfig
from harness.backends.local import LIBFAKETIME, LocalBackend, iptables_usable
from harness.spec import target_defaults
from nemeses import firewall, registry
from nemeses.base import NemesisContext, NemesisOp
from tests.conftest import require
from targets.dynamo.target import DynamoTarget

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[1]
RIAK = {"n1": ["n3", "n4", "n5"], "n2": ["n3", "n4", "n5"], "n3": ["n1", "n2"], "n4": ["n1", "n2"], "n5": ["n1", "n2"]}


def needs_root_and_faketime() -> None:
    require(os.geteuid() == 0 and iptables_usable(), "iptables faults need root and a working iptables")
    require(os.path.exists(LIBFAKETIME), "clock faults need libfaketime")


def process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def admin_get(node, path: str) -> dict:
    """An admin endpoint's answer, through the admin client (it presents the cluster's secret)."""
    from targets.dynamo.admin import call
    return call(node, "GET", path, timeout=3)


def chain_rules(chain: str) -> list[str]:
    out = subprocess.run(["iptables", "-w", "5", "-S", chain], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.startswith("-A")]


def assert_nothing_left(run_dir: Path) -> None:
    """No nemesis rule, no stopped node, no skewed clock file, no in-process fault, every node up."""
    backend = attach(run_dir)
    nodes = backend.nodes()
    if backend.firewall_chain:
        assert not [r for r in chain_rules(backend.firewall_chain) if firewall.TAG in r]
    for n in nodes:
        pid = backend._pids.get(n.name)
        assert pid and process_state(pid) not in ("T", "t", "gone", "Z"), f"{n.name}: {process_state(pid or 0)}"
        assert Path(n.clock_file).read_text().strip() == "+0", n.name
        assert abs(admin_get(n, "/admin/clock")["time"] - time.time()) < 1, n.name
        faults = admin_get(n, "/admin/faults")
        assert not (faults["drop"] or faults["delay_ms"] or faults["loss"]), (n.name, faults)


def test_heal_command_undoes_faults_left_on_a_running_cluster(tmp_path: Path) -> None:
    needs_root_and_faketime()
    backend = LocalBackend()
    try:
        nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1", "n2", "n3", "n4", "n5"), settings=target_defaults(),
                                            run_dir=tmp_path, extra={"leave_running": True}))
        nem = registry.build_for(("partition", "pause", "clock", "crash", "latency"))
        nem.setup(NemesisContext(backend, nodes, 0, DynamoTarget()))
        for op in (NemesisOp("start-partition", {"topology": "riak", "grudge": RIAK}),
                   NemesisOp("start-link", {"kind": "latency", "nodes": ["n5"], "delay_ms": 40, "jitter_ms": 0}),
                   NemesisOp("start-clock", {"mode": "bump", "nodes": ["n3"], "offset_ms": 45000}),
                   NemesisOp("pause", {"nodes": ["n2"]}),
                   NemesisOp("kill", {"nodes": ["n4"]})):
            assert nem.invoke(op).probe.ok, op.f
        # the harness that did this is gone; only the state file is left
        assert len(chain_rules(backend.firewall_chain)) == 12
        p = subprocess.run([sys.executable, "-m", "harness", "heal", str(tmp_path)], capture_output=True, text=True,
                           timeout=120, cwd=ROOT)
        assert p.returncode == 0, p.stdout + p.stderr
        for line in ("SIGCONT sent to every running node (n1, n2, n3, n5)", "n4: was down, started", "12 rule(s) flushed", "n3: clock file reset",
                     "n5: in-process faults cleared (had", "healed: 5 node(s) running"):
            assert line in p.stdout, p.stdout
        assert_nothing_left(tmp_path)
        p = subprocess.run([sys.executable, "-m", "harness", "heal", "--cluster", str(tmp_path / "cluster.json")],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert p.returncode == 0 and "0 rule(s) flushed" in p.stdout, p.stdout + p.stderr
    finally:
        attach(tmp_path).teardown()


def test_heal_command_bad_input_is_one_line(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "harness", "heal", str(tmp_path)], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 3 and "no cluster state here" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "cluster.json").write_text("{nope")
    p = subprocess.run([sys.executable, "-m", "harness", "heal", str(tmp_path)], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 3 and len(p.stderr.strip().splitlines()) == 1, p.stderr


SPEC = """
name = "interrupt"
nodes = 5
duration = 120
rate = 20
concurrency = 2
seed = 4

[nemesis]
faults = ["partition", "pause", "clock"]
interval = 100
start_at = 1
overlap = true
targets = "one"
partition = "riak"

[nemesis.clock]
modes = ["strobe"]
offsets_ms = [-30000]
strobe_period = 0.2
"""


def nemesis_ops(history: Path) -> list[dict]:
    if not history.exists():
        return []
    ops = []
    for line in history.read_text().splitlines():
        try:
            op = json.loads(line)
        except ValueError:
            continue
        if op.get("process") == "nemesis":
            ops.append(op)
    return ops


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_no_fault_behind(tmp_path: Path, sig: int) -> None:
    needs_root_and_faketime()
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    hist = tmp_path / "histories"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--spec", str(spec), "--histories", str(hist),
                             "--no-display", "--leave-running"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    run_dir = None
    try:
        deadline = time.monotonic() + 90
        done: set[str] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            latest = hist / "latest"
            if latest.exists():
                run_dir = latest.resolve()
                done = {o["f"] for o in nemesis_ops(run_dir / "history.jsonl") if o["type"] == "info"}
                if {"start-partition", "start-clock", "pause"} <= done:
                    break
            time.sleep(0.2)
        assert {"start-partition", "start-clock", "pause"} <= done, f"faults not all active: {done}"
        backend = attach(run_dir)
        paused = [n.name for n in backend.nodes() if process_state(backend._pids[n.name]) == "T"]
        assert len(paused) == 1, "one node is paused mid-fault"
        assert [r for r in chain_rules(backend.firewall_chain) if firewall.TAG in r], "partition rules are in place"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, out[-2000:]
        assert_nothing_left(run_dir)
        heal_ops = [o for o in nemesis_ops(run_dir / "history.jsonl") if o["f"] == "heal"]
        assert heal_ops and heal_ops[-1]["type"] == "info", heal_ops
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if run_dir is not None:
            attach(run_dir).teardown()
