"""Power loss on the Docker backend: lazy disks inside the node containers, for real.

Only a cluster made for lazy disks may mount FUSE (``/dev/fuse`` and ``SYS_ADMIN``; checked
through ``docker exec``, i.e. with the container's own privileges, not the host's): there a
power loss drops what was never fsynced and keeps what was. End to end, every replica loses
power at once (N=3 on 3 nodes): ``--fsync never`` loses acknowledged adds, ``always`` none, and
no container, network or lazy disk daemon is left behind. Without FUSE the run is refused in
one line before any container exists.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.backends import docker as docker_backend
from harness.backends import remote
from harness.backends.docker import LAYOUT
from harness.backends.docker_cluster import (L_CLUSTER, LABEL, DockerShell, cluster_containers, connect_engine,
                                             create_cluster, engine_available, remove_clusters)
from harness.backends.image import ImageRecipe, ensure_image
from harness.backends.lazy_disks import SYNCED_MARKER
from harness.backends.shell_lazy_disk import ShellLazyDisk
from harness.runner import run_test
from harness.spec import load_spec
from targets.dynamo.target import DynamoTarget
from tests.conftest import require
from tests.test_power_loss import ALL_REPLICAS_LOSE_POWER, probed_power_offs

pytestmark = [pytest.mark.docker, pytest.mark.cluster]


def _engine():
    require(engine_available(), "no Docker engine: install docker.io and start dockerd (.ci/docker-setup.sh)")
    require(docker_backend.fuse_unavailable() is None, f"no FUSE here: {docker_backend.fuse_unavailable()}")
    return connect_engine()


def test_only_a_fuse_cluster_mounts_a_lazy_disk_and_its_power_loss_drops_what_was_never_fsynced() -> None:
    client = _engine()
    tag = ensure_image(client, ImageRecipe.for_target(DynamoTarget())).tag
    name = "pytest-docker-power"
    try:
        create_cluster(client, name, ["n1"], tag, run_id=name, kept=False, subnet=None)
        create_cluster(client, f"{name}-fuse", ["n1"], tag, run_id=name, kept=False, fuse=True)
        plain, fused = (DockerShell(cluster_containers(client, n)[0], fast=False) for n in (name, f"{name}-fuse"))
        with pytest.raises(RuntimeError, match="did not mount"):
            ShellLazyDisk(plain, LAYOUT).start()               # the minimal privileges cannot mount FUSE
        disk = ShellLazyDisk(fused, LAYOUT)
        disk.start()
        assert disk.mounted()
        data = LAYOUT.data_dir
        script = ('echo kept > "$1/synced" && sync -- "$1/synced" && echo lost > "$1/unsynced" '
                  '&& echo more >> "$1/synced"')
        fused.exec(["sh", "-c", script, "sh", data]).check()
        dropped = disk.power_loss()
        assert dropped["remounted"] and dropped["names"] == 1 and dropped["bytes"] == len("lost\nmore\n")
        ls = fused.exec(["sh", "-c", 'cat "$1/synced"; ls -A "$1"', "sh", data]).check().stdout.split()
        assert ls == ["kept", SYNCED_MARKER, "synced"], ls
        disk.unmount()
        assert not disk.mounted() and not disk.serving()
        disk.unmount()                                         # idempotent
    finally:
        remove_clusters(client, name)
        remove_clusters(client, f"{name}-fuse")
        client.close()


def test_a_wipe_empties_a_lazy_disk_without_removing_its_mount_point() -> None:
    """A run with wipe and power-loss wipes a data dir that is a mount point: ``rm -rf`` of the
    dir itself fails there ("Device or resource busy"), so the wipe must empty it instead."""
    client = _engine()
    tag = ensure_image(client, ImageRecipe.for_target(DynamoTarget())).tag
    name = "pytest-docker-wipe-lazy"
    try:
        create_cluster(client, name, ["n1"], tag, run_id=name, kept=False, fuse=True)
        shell = DockerShell(cluster_containers(client, name)[0], fast=False)
        disk = ShellLazyDisk(shell, LAYOUT)
        disk.start()
        data = LAYOUT.data_dir
        shell.exec(["sh", "-c", 'mkdir -p "$1/ring" && echo x > "$1/ring/a" && echo y > "$1/.hidden"', "sh",
                    data]).check()
        remote.wipe(shell, LAYOUT)
        assert shell.exec(["ls", "-A", data]).check().stdout == ""
        assert disk.mounted()                                  # the same lazy disk, emptied
        disk.unmount()
    finally:
        remove_clusters(client, name)
        client.close()


def _power_loss_run(tmp_path: Path, fsync: str):
    spec = load_spec(None, {"histories": str(tmp_path), "name": f"docker-power-{fsync}", "backend": "docker",
                            "docker.reuse": False, **ALL_REPLICAS_LOSE_POWER, "target.fsync": fsync})
    out = run_test(spec)
    offs = probed_power_offs(out)
    cluster = json.loads((out.run_dir / "cluster.json").read_text())["cluster"]
    client = connect_engine()
    try:      # the lazy disks lived in the containers' mount and pid namespaces: gone with them
        assert client.containers.list(all=True, filters={"label": [f"{L_CLUSTER}={cluster}"]}) == []
        assert client.networks.list(filters={"label": [f"{LABEL}=1", f"{L_CLUSTER}={cluster}"]}) == []
    finally:
        client.close()
    daemons = subprocess.run(["pgrep", "-f", f"lazyfs_daemon --backing {LAYOUT.data_dir}.disk"], capture_output=True)
    assert daemons.stdout == b""
    return out, offs


@pytest.mark.parametrize("fsync", ["never", "always"])
def test_power_loss_of_every_replica_on_docker_loses_acked_writes_only_without_fsync(tmp_path: Path,
                                                                                     fsync: str) -> None:
    _engine().close()
    out, offs = _power_loss_run(tmp_path, fsync)
    lost = out.results["checkers"]["lost-writes"]
    if fsync == "never":
        assert all(v["dropped"]["bytes"] > 0 and v["dropped"]["names"] > 0 for v in offs[0]["value"].values())
        assert out.verdict == "invalid" and lost["verdict"] == "invalid" and lost["counts"]["lost_writes"] > 0, lost
    else:
        assert lost["verdict"] == "valid" and lost["counts"]["lost_writes"] == 0, lost
        assert lost["counts"]["acked_writes"] > 50, lost


def test_power_loss_on_docker_without_fuse_is_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(docker_backend, "fuse_unavailable",
                        lambda: "/dev/fuse is missing on the Docker host (no FUSE in this kernel)")
    spec = load_spec(None, {"histories": str(tmp_path), "backend": "docker", "nodes": 3, "duration": 2,
                            "nemesis.faults": ["power-loss"], "nemesis.allow_unscheduled": True})
    out = run_test(spec)
    assert out.exit_code == 3 and out.error == ("cannot put the nodes' data dirs on lazy disks (for power loss): "
                                                "/dev/fuse is missing on the Docker host (no FUSE in this kernel)")
