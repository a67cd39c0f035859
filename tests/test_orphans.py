"""A harness killed with ``kill -9`` leaves an orphan: it is reported, and cleaned up to zero.

Each test kills a real harness process mid-run (a partition in place), then checks that ``ls``,
``cluster status``, ``heal`` and ``cleanup`` name the orphan, that ``heal`` tears it down rather
than resurrecting it, and that nothing of *that run* is left: chain and hooks, cgroups, node
processes, containers, network. Only what the test made is touched (run folders and ``cleanup
--dry-run`` elsewhere), since other runs may be live on this machine.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends import cluster_state as cs
from harness.backends import node_cgroups
from harness.backends.local import iptables_usable
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "250"}


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=ENV)


def start_and_kill(histories: Path, *extra: str, timeout: float = 240) -> Path:
    """Start a partitioned run, wait until a partition is in place, kill -9 the harness: its run dir."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--histories", str(histories), "--nodes", "3",
                             "--duration", "300", "--nemesis", "partition", "--nemesis-interval", "3",
                             "--no-display", "--rate", "20", "--concurrency", "2", *extra],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            for history in histories.glob("*/*/history.jsonl"):
                ops = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
                if any(o.get("f") == "start-partition" and o.get("type") != "invoke" for o in ops):
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(10)
                    return history.parent
            time.sleep(0.3)
        pytest.fail("no partition in place in time")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    raise AssertionError("unreachable")


def test_owner_status_tells_a_dead_owner_and_a_reused_pid_from_a_live_one() -> None:
    me = cs.current_owner()
    assert cs.owner_status(me) == cs.ALIVE
    assert cs.owner_status({**me, "start": me["start"] - 1}) == cs.DEAD          # the pid was reused
    assert "another process" in cs.describe_owner({**me, "start": me["start"] - 1})
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert cs.owner_status({**me, "pid": dead.pid}) == cs.DEAD
    assert cs.owner_status({**me, "kept": "leave_running"}) == cs.KEPT
    assert cs.owner_status({**me, "host": "elsewhere.invalid"}) == cs.ELSEWHERE
    assert cs.owner_status(None) == cs.UNKNOWN


def test_state_file_is_private(tmp_path: Path) -> None:
    cs.save(tmp_path, {"backend": "local", "secret": "s"})
    assert (tmp_path / cs.STATE_FILE).stat().st_mode & 0o777 == 0o600


def _node_processes(run_dir: Path) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(run_dir).encode() in (proc / "cmdline").read_bytes():
                    out.append(int(proc.name))
            except OSError:
                pass
    return out


@pytest.mark.cluster
def test_kill_9_on_local_is_reported_and_healed_into_a_teardown(tmp_path: Path) -> None:
    require(os.geteuid() == 0 and iptables_usable(), "needs root and a working iptables")
    histories = tmp_path / "h"
    run_dir = start_and_kill(histories)
    state = json.loads((run_dir / "cluster.json").read_text())
    chain, cgroups = state["firewall_chain"], state["cgroups"]
    # the nodes' secret is in the (0600) state file only: not in the spec, history, logs or results
    assert state["secret"] and (run_dir / "cluster.json").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in run_dir.rglob("*") if p.is_file() and p.name != "cluster.json"
            and state["secret"].encode() in p.read_bytes()] == []
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    assert f"-N {chain}" in rules and f"-A INPUT -j {chain}" in rules        # left behind, as measured

    ls = cli("ls", "--histories", str(histories))
    assert "ORPHAN" in ls.stdout and "is gone" in ls.stdout, ls.stdout
    dry = cli("cleanup", "--histories", str(histories), "--dry-run")
    assert f"would remove local cluster of {run_dir}" in dry.stdout, dry.stdout
    from harness.cli.run import note_orphans
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        note_orphans(histories)
    assert str(run_dir) in err.getvalue() and err.getvalue().count("\n") == 1

    healed = cli("heal", str(run_dir))
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert "is an orphan" in healed.stdout and "torn down" in healed.stdout
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    assert chain not in rules
    assert chain not in node_cgroups.run_cgroups()
    assert all(not (node_cgroups.cgroup2_root() / p).exists() for p in cgroups.values())
    assert chain not in cs.registered_chains()
    assert _node_processes(run_dir) == []
    assert "ORPHAN" not in cli("ls", "--histories", str(histories)).stdout


@pytest.mark.cluster
def test_heal_resurrect_keeps_an_orphan_running_until_torn_down(tmp_path: Path) -> None:
    require(os.geteuid() == 0 and iptables_usable(), "needs root and a working iptables")
    run_dir = start_and_kill(tmp_path / "h")
    p = cli("heal", "--resurrect", str(run_dir))
    try:
        assert p.returncode == 0 and "kept running on purpose" in p.stdout, p.stdout + p.stderr
        assert _node_processes(run_dir)
        assert cs.owner_status(json.loads((run_dir / "cluster.json").read_text())["owner"]) == cs.KEPT
        assert "kept running" in cli("ls", "--histories", str(tmp_path / "h")).stdout
    finally:
        done = cli("cleanup", str(run_dir))
    assert done.returncode == 0 and "removed" in done.stdout, done.stdout + done.stderr
    assert _node_processes(run_dir) == []


@pytest.mark.docker
@pytest.mark.cluster
@pytest.mark.slow
def test_kill_9_on_docker_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    from harness.backends.docker_cluster import L_CLUSTER, LABEL, connect_engine, engine_available

    require(engine_available(), "needs a Docker engine")
    histories = tmp_path / "h"
    run_dir = start_and_kill(histories, "--backend", "docker", "--set", "docker.reuse=false")
    name = json.loads((run_dir / "cluster.json").read_text())["cluster"]
    client = connect_engine()
    flt = {"label": [f"{LABEL}=1", f"{L_CLUSTER}={name}"]}
    try:
        assert client.containers.list(all=True, filters=flt) and client.networks.list(filters=flt)
        status = cli("cluster", "status", "--histories", str(histories))
        assert status.returncode == 0, status.stderr
        assert name in status.stdout and "ORPHAN" in status.stdout, status.stdout
        assert "ORPHAN" in cli("ls", "--histories", str(histories)).stdout
        done = cli("cleanup", str(run_dir))
        assert done.returncode == 0 and "removed docker cluster" in done.stdout, done.stdout + done.stderr
        assert client.containers.list(all=True, filters=flt) == []
        assert client.networks.list(filters=flt) == []
        again = cli("cleanup", str(run_dir))
        assert "already torn down" in again.stdout
    finally:
        from harness.backends.docker_cluster import remove_clusters
        remove_clusters(client, name)
        client.close()


def test_chains_no_record_names_are_listed_only_when_asked_and_live_ones_never(tmp_path: Path) -> None:
    require(os.geteuid() == 0 and iptables_usable(), "needs root and a working iptables")
    from harness.backends import local_chain, orphans

    stray, live = local_chain.create(), local_chain.create()      # this test's own chains only
    cs.register_chain(live, {"state": str(tmp_path / "gone" / "cluster.json"), "owner": cs.current_owner(),
                             "cgroups": {}})
    try:
        assert stray not in {o.chain for o in orphans.find(tmp_path)}                  # not attributed
        found = {o.chain: o for o in orphans.find(tmp_path, unattributed=True)}
        assert stray in found and not found[stray].attributed and "no record" in found[stray].why
        assert live not in found                                                       # a live owner's
        orphans.remove(found[stray])
        assert f"-N {stray}" not in subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
        # the same chain indexed with a dead owner is attributed, and cleaned without --all-orphans
        cs.register_chain(live, {"state": str(tmp_path / "gone" / "cluster.json"),
                                 "owner": {**cs.current_owner(), "start": -1}, "cgroups": {}})
        dead = [o for o in orphans.find(tmp_path) if o.chain == live]
        assert dead and dead[0].attributed and "is gone" in dead[0].why
        orphans.remove(dead[0])
        assert live not in cs.registered_chains()
        assert f"-N {live}" not in subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    finally:
        for chain in (stray, live):
            local_chain.remove(chain)
            cs.unregister_chain(chain)


def test_a_lazy_disk_mount_is_named_by_its_cluster_or_listed_as_a_leftover_and_unmounted(tmp_path: Path) -> None:
    """A power-loss run's mounts are in the orphan report: with the cluster whose state names
    them (a dead owner: attributed, its teardown unmounts), never when the owner lives, and one no
    record names is listed when asked for leftovers and unmounted by its removal."""
    from harness.backends import lazy_disks, orphans
    from tests.test_lazyfs import launch

    require(lazy_disks.unavailable() is None, f"no lazy disks here: {lazy_disks.unavailable()}")
    disk = lazy_disks.LazyDisk(tmp_path / "nodes", "n1", f"o{os.getpid()}")
    (tmp_path / "nodes").mkdir()
    disk.start(launch)
    try:
        mount = os.path.realpath(disk.mount)
        assert mount in lazy_disks.lazy_mounts()
        mine = lambda found: [o for o in found if mount in o.extra.get("mounts", ())]   # noqa: E731
        assert not mine(orphans.find(tmp_path / "h"))                       # no record: not attributed
        stray = mine(orphans.find(tmp_path / "h", unattributed=True))
        assert len(stray) == 1 and not stray[0].attributed and stray[0].what == f"lazy-disk mount {mount}"
        state = {"backend": "local", "disks": {"n1": disk.state()}}
        cs.save(tmp_path / "h" / "run" / "t1", {**state, "owner": cs.current_owner()})
        assert not mine(orphans.find(tmp_path / "h", unattributed=True))    # a live owner's: never
        cs.save(tmp_path / "h" / "run" / "t1", {**state, "owner": {**cs.current_owner(), "start": -1}})
        dead = mine(orphans.find(tmp_path / "h"))
        assert len(dead) == 1 and dead[0].attributed and dead[0].what.endswith("with 1 lazy-disk mount(s)")
        (tmp_path / "h" / "run" / "t1" / cs.STATE_FILE).unlink()
        orphans.remove(mine(orphans.find(tmp_path / "h", unattributed=True))[0])
        assert lazy_disks.stale_mounts([mount]) == [] and mount not in lazy_disks.lazy_mounts()
    finally:
        disk.unmount()
