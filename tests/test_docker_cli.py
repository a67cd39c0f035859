"""``dynharness image build`` and ``cluster up|status|down`` through the real CLI, and reuse of a kept
cluster by the Docker backend."""
from __future__ import annotations

import secrets

import pytest

from harness.backends import remote
from harness.backends.base import ClusterConfig
from harness.backends.docker import DockerBackend
from harness.backends.docker_cluster import cluster_containers, connect_engine, engine_available
from harness.backends.image import ImageRecipe, ensure_image
from harness.cli import main
from tests.conftest import require
from targets.dynamo.target import DynamoTarget
from targets.dynamo.admin import DynamoAdmin

pytestmark = [pytest.mark.docker]


@pytest.fixture
def engine():
    require(engine_available(), "no Docker engine: install docker.io and start dockerd (.ci/docker-setup.sh)")
    client = connect_engine()
    yield client
    client.close()


def test_image_build_twice_reports_every_step_cached(engine, capsys):
    assert main(["image", "build"]) == 0
    capsys.readouterr()
    assert main(["image", "build"]) == 0
    tag = capsys.readouterr().out.strip().splitlines()[-1]
    build = ensure_image(engine)
    assert build.cached and build.tag == tag and [s.cached for s in build.steps] == [True, True, True]


def test_image_build_from_a_base_image_gives_nodes_that_serve(engine, capsys, tmp_path):
    """``--base-image``: FROM that image + apt instead of debootstrap. No registry here, so the
    base is a local image (the debootstrap base); apt reaches the Debian mirror as debootstrap
    does. The node image it makes must run a healthy node."""
    base = ImageRecipe().base_tag()
    ensure_image(engine)                                   # the debootstrap base exists
    try:
        assert main(["image", "build", "--base-image", base]) == 0
        tag = capsys.readouterr().out.strip().splitlines()[-1]
        assert tag == ImageRecipe(base_image=base).node_tag() != ImageRecipe().node_tag()
        backend = DockerBackend({"base_image": base, "reuse": False})
        nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1",), settings={"n": 1, "r": 1, "w": 1}, run_dir=tmp_path))
        try:
            assert all(DynamoAdmin().health(n)[0] for n in nodes)
            c = cluster_containers(engine, backend._name)[0]
            assert c.image.id == engine.images.get(tag).id
        finally:
            backend.teardown()
    finally:
        ensure_image(engine)                               # the default node image again, for the other tests


def test_cluster_up_is_reused_by_runs_and_down_removes_it(engine, capsys, tmp_path):
    name = f"t{secrets.token_hex(3)}"
    assert main(["cluster", "up", "--nodes", "3", "--name", name]) == 0
    try:
        before = {c.id for c in cluster_containers(engine, name)}
        assert len(before) == 3
        assert main(["cluster", "status"]) == 0
        assert name in capsys.readouterr().out
        for run in range(2):                 # two runs in a row on the same containers
            backend = DockerBackend({"cluster": name})
            nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1", "n2", "n3"), settings={"n": 3, "r": 2, "w": 2},
                                                run_dir=tmp_path / f"run{run}"))
            assert backend._name == name and all(DynamoAdmin().health(n)[0] for n in nodes)
            backend.write_file("n1", nodes[0].clock_file, b"+600s\n")     # a fault left behind ...
            backend.teardown()
            assert {c.id for c in cluster_containers(engine, name)} == before
            assert not DynamoAdmin().health(nodes[0])[0]                           # nodes stopped
        shell = DockerBackend.from_state({"cluster": name, "owned": False, "nodes": [], "run_dir": None}, DynamoTarget())
        assert shell._name == name
        shell.teardown()
        # ... was undone by the teardown of the run
        c = [c for c in cluster_containers(engine, name) if c.labels["dynharness.node"] == "n1"][0]
        assert c.exec_run(["cat", "/var/lib/dynharness/clock"]).output.strip() == b"+0"
    finally:
        assert main(["cluster", "down", "--name", name]) == 0
    assert cluster_containers(engine, name) == []
    assert "removed cluster" in capsys.readouterr().out


def test_cluster_up_with_a_bad_node_count_is_a_user_error(capsys):
    assert main(["cluster", "up", "--nodes", "0"]) == 3
    assert "--nodes must be between" in capsys.readouterr().err


def test_a_failed_image_build_is_one_line_with_the_builders_reason(engine, capsys):
    # an invalid reference fails inside the builder before any pull: no network is touched
    assert main(["image", "build", "--base-image", "UPPER/case:x"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("dynharness: error: image build failed:") and "lowercase" in err[-1]
