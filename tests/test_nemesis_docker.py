"""The same nemeses on the Docker and SSH backends: rules, signals and clock files on the nodes
(inside each container; over SSH as a sudo user on each host)."""
from __future__ import annotations

import time

import pytest

from harness.backends.base import ClusterConfig
from nemeses import registry
from nemeses.base import NemesisContext, NemesisOp
from tests.conftest import require
from tests.test_docker_backend import PROBE
from tests.test_ssh_backend import hosts  # noqa: F401 - fixture: sshd containers of the node image
from targets.dynamo.target import DynamoTarget

pytestmark = [pytest.mark.docker, pytest.mark.cluster]
ISOLATE_N3 = {"n1": ["n3"], "n2": ["n3"], "n3": ["n1", "n2"]}


@pytest.fixture(scope="module", params=["docker", "ssh"])
def cluster(request, tmp_path_factory):
    from harness.backends.docker import DockerBackend
    from harness.backends.docker_cluster import engine_available
    from harness.backends.ssh import SshBackend
    require(engine_available(), "no Docker engine: install docker.io and start dockerd (.ci/docker-setup.sh)")
    if request.param == "docker":
        backend = DockerBackend({"reuse": False})
    else:
        h = request.getfixturevalue("hosts")
        backend = SshBackend({"hosts": h["ips"], "user": "dyn", "key": h["key"], "known_hosts": h["known_hosts"]})
    try:
        nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1", "n2", "n3"), settings={"n": 3, "r": 2, "w": 2},
                                            run_dir=tmp_path_factory.mktemp("docker-nemesis")))
        yield backend, {n.name: n for n in nodes}
    finally:
        backend.teardown()


def reach(backend, src: str, dst) -> str:
    """From inside container ``src``, whether ``dst`` answers a real HTTP request."""
    return backend.run(src, ["python3", "-c", PROBE, dst.url + "/admin/health"], timeout=15).check().stdout.split()[0]


def test_every_fault_runs_inside_the_containers_and_heals(cluster) -> None:
    backend, nodes = cluster
    nem = registry.build_for(["partition", "clock", "crash", "pause", "loss", "latency"])
    nem.setup(NemesisContext(backend, list(nodes.values()), 0, DynamoTarget()))
    try:
        out = nem.invoke(NemesisOp("start-partition", {"topology": "isolate-one", "grudge": ISOLATE_N3}))
        assert out.probe.ok and out.mechanism == "iptables", out.probe.detail
        assert reach(backend, "n1", nodes["n3"]) == "cut" and reach(backend, "n3", nodes["n2"]) == "cut"
        assert reach(backend, "n1", nodes["n2"]) == "reached"
        assert backend.target.admin.health(nodes["n3"], timeout=3)[0]  # the host (client) still can
        assert nem.invoke(NemesisOp("stop-partition")).probe.ok
        assert reach(backend, "n1", nodes["n3"]) == "reached"

        out = nem.invoke(NemesisOp("start-clock", {"mode": "bump", "nodes": ["n2"], "offset_ms": -45000}))
        assert out.probe.ok and out.mechanism == "libfaketime", out.probe.detail
        assert -46 < backend.target.admin.clock(nodes["n2"]) - time.time() < -44

        for start, stop in ((NemesisOp("pause", {"nodes": ["n1"]}), NemesisOp("resume", {"nodes": ["n1"]})),
                            (NemesisOp("kill", {"nodes": ["n1"]}), NemesisOp("start", {"nodes": ["n1"]}))):
            out = nem.invoke(start)
            assert out.probe.ok, f"{start.f}: {out.probe.detail}"
            assert nem.invoke(stop).probe.ok, stop.f

        out = nem.invoke(NemesisOp("start-link", {"kind": "loss", "nodes": ["n1"], "probability": 0.5}))
        assert out.probe.ok and out.mechanism == "iptables", out.probe.detail
        assert 0 < out.probe.measurements["lost"] < out.probe.measurements["attempts"]
        out = nem.invoke(NemesisOp("start-link", {"kind": "latency", "nodes": ["n2"], "delay_ms": 120,
                                                  "jitter_ms": 0}))
        assert out.probe.ok, out.probe.detail
        nem.invoke(NemesisOp("pause", {"nodes": ["n3"]}))   # left in effect: the heal op must undo it all
        out = nem.invoke(NemesisOp("heal"))
        assert out.probe.ok, out.probe.detail
        assert out.probe.measurements["iptables_rules_left"] == 0
        assert backend.run("n2", ["cat", nodes["n2"].clock_file]).check().stdout.strip() == "+0"
    finally:
        nem.heal()
