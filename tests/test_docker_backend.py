"""The Docker backend's primitives on a real 3-node cluster: faults reach the node for real.

One cluster for the module (image cached by recipe hash; built on first use).
Every fault is checked by its effect seen from outside: a peer's request
failing, the node's reported wall clock, the process gone, a request hanging.
"""
from __future__ import annotations

import json
import time

import pytest

from harness.backends.base import ClusterConfig
from harness.backends.docker import DockerBackend
from harness.backends.docker_cluster import (L_CLUSTER, LABEL, DockerShell, cluster_containers, connect_engine,
                                             engine_available)
from harness.errors import UserError
from tests.conftest import require
from targets.dynamo.target import DynamoTarget
from targets.dynamo.admin import DynamoAdmin

pytestmark = [pytest.mark.docker, pytest.mark.cluster]

#: Prints "reached" when the URL gives any HTTP answer (a 401 from an endpoint behind the cluster's
#: secret too: the request got through), "cut <error>" when none comes.
PROBE = ("import sys, urllib.error, urllib.request\n"
         "try:\n"
         "    urllib.request.urlopen(sys.argv[1], timeout=1.5).read(); print('reached')\n"
         "except urllib.error.HTTPError:\n"
         "    print('reached')\n"
         "except Exception as e:\n"
         "    print('cut', type(e).__name__)\n")


def reach(backend, src: str, dst_url: str) -> str:
    """From inside node ``src`` (its container or host), whether ``dst_url`` answers: a real TCP request."""
    res = backend.run(src, ["python3", "-c", PROBE, dst_url], timeout=10).check()
    return res.stdout.split()[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require(engine_available(), "no Docker engine: install docker.io and start dockerd (.ci/docker-setup.sh)")
    backend = DockerBackend({"reuse": False})
    run_dir = tmp_path_factory.mktemp("docker-run")
    nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1", "n2", "n3"), settings={"n": 3, "r": 2, "w": 2}, run_dir=run_dir))
    yield backend, {n.name: n for n in nodes}, run_dir
    backend.teardown()


def test_setup_gives_healthy_nodes_on_a_private_network(cluster):
    backend, nodes, run_dir = cluster
    assert [n.host.rsplit(".", 1)[1] for n in nodes.values()] == ["11", "12", "13"]     # fixed IPs
    assert all(DynamoAdmin().health(n)[0] for n in nodes.values())
    # each container is its own host: iptables can partition any store here, not only one that
    # binds its peer connections (no "shared-host")
    assert backend.capabilities == {"signals", "iptables", "faketime", "wipe"}
    client = connect_engine()
    containers = cluster_containers(client, backend._name)
    assert len(containers) == 3
    c = containers[0]
    assert c.attrs["HostConfig"]["CapAdd"] == ["NET_ADMIN"] and c.attrs["HostConfig"]["Init"] is True
    assert c.attrs["HostConfig"]["Dns"] == ["127.0.0.1"]
    network = client.networks.list(filters={"label": [f"{L_CLUSTER}={backend._name}"]})[0]
    assert network.attrs["Internal"] is True
    client.close()
    # every node knows the others by name without DNS
    assert reach(backend, "n1", f"http://n2:{nodes['n2'].port}/admin/health") == "reached"
    doc = json.loads((run_dir / "cluster.json").read_text())
    assert doc["backend"] == "docker" and [n["name"] for n in doc["nodes"]] == ["n1", "n2", "n3"]


def test_partition_rule_in_the_chain_cuts_exactly_that_peer(cluster):
    backend, nodes, _ = cluster
    n1, n2, n3 = nodes["n1"], nodes["n2"], nodes["n3"]
    backend.run("n1", ["iptables", "-w", "5", "-A", backend.firewall_chain, "-s", n2.host, "-d", n1.host,
                       "-j", "DROP"]).check()
    try:
        assert reach(backend, "n2", f"{n1.url}/admin/health") == "cut"
        assert reach(backend, "n3", f"{n1.url}/admin/health") == "reached"
    finally:
        backend.run("n1", ["iptables", "-w", "5", "-F", backend.firewall_chain]).check()
    assert reach(backend, "n2", f"{n1.url}/admin/health") == "reached"


def test_clock_file_skews_the_running_node(cluster):
    backend, nodes, _ = cluster
    n2 = nodes["n2"]
    backend.write_file("n2", n2.clock_file, b"+3600s\n")
    try:
        skew = backend.target.admin.clock(n2) - time.time()
        assert 3500 < skew < 3700
        assert DynamoAdmin().health(n2)[0]              # its timers keep running
    finally:
        backend.write_file("n2", n2.clock_file, b"+0\n")
    assert abs(backend.target.admin.clock(n2) - time.time()) < 60


def test_kill_then_start_keeps_the_data_and_the_container(cluster):
    backend, nodes, _ = cluster
    before = backend.run("n3", ["ls", nodes["n3"].data_dir]).check().stdout
    backend.kill("n3")
    assert not backend.is_running("n3")
    assert not DynamoAdmin().health(nodes["n3"])[0]
    backend.start("n3")
    assert backend.is_running("n3") and DynamoAdmin().health(nodes["n3"])[0]
    assert backend.run("n3", ["ls", nodes["n3"].data_dir]).check().stdout == before


def test_pause_stops_answering_and_resume_brings_it_back(cluster):
    backend, nodes, _ = cluster
    backend.pause("n2")
    try:
        assert backend.is_running("n2")                 # stopped, not gone
        assert not DynamoAdmin().health(nodes["n2"], timeout=1.0)[0]
    finally:
        backend.resume("n2")
    assert DynamoAdmin().health(nodes["n2"], timeout=3.0)[0]


def test_wipe_is_refused_while_running_and_empties_the_data_when_down(cluster):
    backend, nodes, _ = cluster
    n3 = nodes["n3"]
    with pytest.raises(RuntimeError, match="running"):
        backend.wipe("n3")
    backend.kill("n3")
    backend.write_file("n3", f"{n3.data_dir}/marker", b"x")
    backend.wipe("n3")
    assert backend.run("n3", ["ls", "-A", n3.data_dir]).check().stdout == ""
    backend.start("n3")
    assert DynamoAdmin().health(n3)[0]


def test_values_never_reach_a_shell(cluster):
    backend, _, _ = cluster
    evil = "/tmp/x'; touch ${HOME}pwned; echo '$(touch ${HOME}pwned2)`touch ${HOME}pwned3`"
    backend.write_file("n1", evil, b"data")
    assert backend.run("n1", ["cat", evil]).check().stdout == "data"
    assert backend.run("n1", ["ls", "/rootpwned", "/rootpwned2", "/rootpwned3"]).stderr.count("No such file") == 3


def test_docker_exec_path_runs_in_the_same_container_as_nsenter(cluster):
    backend, _, _ = cluster
    shell = backend._shells["n1"]
    slow = DockerShell(shell.container, fast=False)
    assert slow.exec(["hostname"]).check().stdout == shell.exec(["hostname"]).check().stdout == "n1\n"
    assert backend.firewall_chain in slow.exec(["iptables", "-S"]).check().stdout


def test_a_crashed_harness_can_reattach_from_cluster_json_and_heal(cluster):
    from harness.backends import attach
    from nemeses.compose import heal_cluster

    backend, nodes, run_dir = cluster
    n1, n2 = nodes["n1"], nodes["n2"]
    backend.run("n1", ["iptables", "-w", "5", "-A", backend.firewall_chain, "-s", n2.host, "-j", "DROP"]).check()
    backend.write_file("n2", n2.clock_file, b"+120s\n")
    backend.pause("n2")
    backend.kill("n3")
    other = attach(run_dir)                        # as `dynharness heal` does, in a fresh process
    assert type(other) is DockerBackend and [n.name for n in other.nodes()] == ["n1", "n2", "n3"]
    probe = heal_cluster(other, other.target, say=lambda line: None)
    assert probe.ok, probe.detail
    assert all(DynamoAdmin().health(n)[0] for n in nodes.values())
    assert backend.run("n1", ["iptables", "-S", backend.firewall_chain]).check().stdout.strip().splitlines() == \
        [f"-N {backend.firewall_chain}"]
    assert abs(backend.target.admin.clock(n2) - time.time()) < 60
    other._client.close()


def test_logs_are_fetched_and_unknown_nodes_are_user_errors(cluster, tmp_path):
    backend, _, _ = cluster
    backend.fetch_logs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n1.log", "n2.log", "n3.log"]
    with pytest.raises(UserError, match="no node 'n9'"):
        backend.kill("n9")


def test_teardown_leaves_nothing_behind(tmp_path):
    require(engine_available(), "no Docker engine: install docker.io and start dockerd (.ci/docker-setup.sh)")
    backend = DockerBackend({"reuse": False})
    backend.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1",), settings={"n": 1, "r": 1, "w": 1}, run_dir=tmp_path))
    name = backend._name
    backend.teardown()
    backend.teardown()                                  # idempotent
    client = connect_engine()
    assert cluster_containers(client, name) == []
    assert client.networks.list(filters={"label": [f"{LABEL}=1", f"{L_CLUSTER}={name}"]}) == []
    client.close()


def test_a_missing_engine_is_one_line_saying_what_to_do(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(UserError) as err:
        connect_engine(timeout=2)
    assert "\n" not in str(err.value) and "start it" in str(err.value)


@pytest.mark.parametrize("options, message", [
    ({"imag": "x"}, "unknown option"),
    ({"port": "seven"}, "port: expected int"),
    ({"reuse": "yes"}, "reuse: expected bool"),
])
def test_bad_docker_options_are_one_line_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        DockerBackend(options)


class _BrokenTarget(DynamoTarget):
    """A target whose node prints one line and exits: setup must fail in one line and clean up."""

    name = "broken"

    def node_command(self, node, host, port, data_dir, peers, settings, python="python3"):
        return [python, "-c", "print('boom: this node cannot start'); raise SystemExit(2)"]


def test_a_node_that_cannot_start_fails_setup_with_its_log_and_leaves_nothing(tmp_path):
    require(engine_available(), "no Docker engine: install docker.io and start dockerd (.ci/docker-setup.sh)")
    backend = DockerBackend({"reuse": False, "health_timeout": 3})
    with pytest.raises(UserError, match="boom: this node cannot start"):
        backend.setup(ClusterConfig(target=_BrokenTarget(), nodes=("n1",), settings={}, run_dir=tmp_path))
    client = connect_engine()
    try:
        assert cluster_containers(client, backend._name) == []
    finally:
        client.close()


def test_pruning_keeps_node_images_of_another_base() -> None:
    """Building one target's image (etcd's packages) must not delete another's (the reference
    store's), while older images of the same base go; unlabelled old images count as this base."""
    from harness.backends.image import BASE_LABEL, prune_node_images

    class Img:
        def __init__(self, tag, base):
            self.tags, self.labels = [tag], ({BASE_LABEL: base} if base else {})

    class Images:
        def __init__(self):
            self.all = [Img("n:new", "A"), Img("n:old", "A"), Img("n:other", "B"), Img("n:ancient", None)]
            self.removed = []

        def list(self, name):
            return self.all

        def remove(self, tag, noprune=False):
            self.removed.append(tag)

    client = type("Client", (), {"images": Images()})()
    assert prune_node_images(client, keep="n:new", base="A") == 2
    assert client.images.removed == ["n:old", "n:ancient"]


def test_base_images_no_node_image_uses_are_pruned_but_another_targets_stays() -> None:
    """A changed base recipe leaves its old ~200 MB base behind; after a build, bases no node image
    is built on go, the one just used and another target's (its node image names it) stay, and
    one a container uses survives its failed removal."""
    from harness.backends.image import BASE_LABEL, BASE_REPO, NODE_REPO, prune_unused_bases

    class Img:
        def __init__(self, tag, labels=None):
            self.tags, self.labels = [tag], labels or {}

    class Images:
        def __init__(self):
            self.nodes = [Img(f"{NODE_REPO}:new", {BASE_LABEL: "a" * 16 + "rest"}),
                          Img(f"{NODE_REPO}:etcd", {BASE_LABEL: "e" * 16 + "rest"})]
            self.bases = [Img(f"{BASE_REPO}:{'a' * 16}"), Img(f"{BASE_REPO}:{'e' * 16}"),
                          Img(f"{BASE_REPO}:{'o' * 16}"), Img(f"{BASE_REPO}:{'u' * 16}")]
            self.removed = []

        def list(self, name):
            return self.nodes if name == NODE_REPO else self.bases

        def remove(self, tag, noprune=False):
            if "u" * 16 in tag:
                raise RuntimeError("image is being used by a container")
            self.removed.append(tag)

    client = type("Client", (), {"images": Images()})()
    assert prune_unused_bases(client, keep=f"{BASE_REPO}:{'a' * 16}") == 1
    assert client.images.removed == [f"{BASE_REPO}:{'o' * 16}"]


def test_a_forced_rebuild_removes_the_images_it_replaced() -> None:
    """``image build --force`` moves the node and base tags to new images; the old ones, untagged,
    are removed (node first: it is built on the base), except one the rebuild reproduced (same id
    under the tag) and one a container still uses."""
    import docker.errors

    from harness.backends.image import remove_replaced

    class Images:
        def __init__(self):
            self.tags = {"node:h": "sha-new-node", "base:h": "sha-base"}   # the base came out the same
            self.in_use, self.removed = {"sha-kept-by-container"}, []

        def get(self, tag):
            if tag not in self.tags:
                raise docker.errors.ImageNotFound(tag)
            return type("Image", (), {"id": self.tags[tag]})()

        def remove(self, image_id, noprune=False):
            if image_id in self.in_use:
                raise docker.errors.APIError("conflict: image is being used by a running container")
            self.removed.append(image_id)

    client = type("Client", (), {"images": Images()})()
    got = remove_replaced(client, ["sha-old-node", "sha-base", "sha-kept-by-container"], keep=("node:h", "base:h"))
    assert got == ("sha-old-node",) and client.images.removed == ["sha-old-node"]
    assert remove_replaced(client, [], keep=("node:h", "gone:h")) == ()


def test_nodes_on_docker_need_the_cluster_secret(cluster):
    """On Docker a node listens on a network address: its admin endpoints refuse callers without
    the secret, which reaches the node through its environment, never a command line."""
    from targets.dynamo.admin import request

    backend, nodes, run_dir = cluster
    n1 = nodes["n1"]
    assert n1.secret and json.loads((run_dir / "cluster.json").read_text())["secret"] == n1.secret
    assert (run_dir / "cluster.json").stat().st_mode & 0o777 == 0o600
    anonymous = type(n1)(n1.name, n1.host, n1.port, n1.data_dir, n1.clock_file)
    assert request(anonymous, "POST", "/admin/faults", {"drop": []})[0] == 401
    assert request(n1, "GET", "/admin/faults")[0] == 200
    cmdlines = backend.run("n1", ["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]).stdout
    assert "python" in cmdlines and n1.secret not in cmdlines
    mode = backend.run("n1", ["stat", "-c", "%a", "/var/lib/dynharness/secret"]).check().stdout.strip()
    assert mode == "600"


def test_an_image_build_says_what_it_does_while_a_cached_one_stays_quiet(monkeypatch) -> None:
    """The first ``--backend docker`` run builds the image for about a minute: the run's progress
    says which step builds, its status now and then, and when each is done; cached steps say nothing."""
    from harness.backends import image

    clock = iter([0.0, 1.0, 2.0, 7.0])
    monkeypatch.setattr(image.time, "monotonic", lambda: next(clock))
    lines: list[str] = []
    on_step = image.progress_lines(lines.append, every=5.0)
    on_step("base image (debootstrap + import)", "done (cached)")
    on_step("node layer (code + deps)", "Step 1/6 : FROM base")    # 0.0: starts
    on_step("node layer (code + deps)", "Step 2/6 : COPY site")    # 1.0: too soon
    on_step("node layer (code + deps)", "Step 3/6 : COPY app")     # 2.0: too soon
    on_step("node layer (code + deps)", "Step 5/6 : ENV")          # 7.0: shown
    on_step("node layer (code + deps)", "done in 9.0s")
    assert lines == ["node image: building node layer (code + deps) (not cached for this recipe yet)",
                     "node image: node layer (code + deps): Step 5/6 : ENV",
                     "node image: node layer (code + deps): done in 9.0s"]

