"""The SSH backend against real sshd: containers of the node image, each with its own host key.

The harness logs in as a non-root user, so every fault goes through
``sudo -n``; host keys are verified against a known_hosts file read out of
band (from inside each container), as an operator would.
"""
from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from harness.backends.base import ClusterConfig
from harness.backends.docker_cluster import connect_engine, engine_available, remove_clusters, sshd_hosts
from harness.backends.image import ensure_image
from harness.backends.ssh import SshBackend, connect
from harness.errors import UserError
from tests.conftest import require
from tests.test_docker_backend import reach as _reach
from targets.dynamo.target import DynamoTarget
from targets.dynamo.admin import DynamoAdmin

pytestmark = [pytest.mark.docker, pytest.mark.cluster]



@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """Three sshd containers, a key authorized for root and the sudo user ``dyn``, a known_hosts."""
    import paramiko

    require(engine_available(), "no Docker engine: install docker.io and start dockerd (.ci/docker-setup.sh)")
    tmp = tmp_path_factory.mktemp("ssh")
    rsa = paramiko.RSAKey.generate(2048)
    rsa.write_private_key_file(str(tmp / "id_rsa"))
    client = connect_engine()
    name = f"sshtest-{secrets.token_hex(3)}"
    try:
        ips, known = sshd_hosts(client, name, 3, ensure_image(client).tag, f"{rsa.get_name()} {rsa.get_base64()}")
        (tmp / "known_hosts").write_text("\n".join(known) + "\n")
        yield {"ips": list(ips.values()), "key": str(tmp / "id_rsa"), "known_hosts": str(tmp / "known_hosts"),
               "tmp": tmp, "client": client, "name": name}
    finally:
        remove_clusters(client, name)
        client.close()


@pytest.fixture(scope="module")
def cluster(hosts):
    backend = SshBackend({"hosts": hosts["ips"], "user": "dyn", "key": hosts["key"],
                          "known_hosts": hosts["known_hosts"]})
    run_dir = hosts["tmp"] / "run"
    nodes = backend.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1", "n2", "n3"), settings={"n": 3, "r": 2, "w": 2}, run_dir=run_dir))
    yield backend, {n.name: n for n in nodes}
    backend.teardown()


def test_setup_as_a_sudo_user_gives_every_capability(cluster):
    backend, nodes = cluster
    assert backend.capabilities == {"signals", "iptables", "faketime", "wipe"}
    assert all(DynamoAdmin().health(n)[0] for n in nodes.values())
    # the node runs as the login user, faults run as root through sudo
    pid = backend._shells["n1"].exec(["cat", backend._layouts["n1"].pid_file]).check().stdout.strip()
    assert backend._shells["n1"].exec(["ps", "-o", "user=", "-p", pid]).check().stdout.strip() == "dyn"
    assert backend.run("n1", ["id", "-u"]).check().stdout.strip() == "0"


def test_partition_over_ssh_cuts_exactly_that_peer(cluster):
    backend, nodes = cluster
    n1, n2 = nodes["n1"], nodes["n2"]
    backend.run("n1", ["iptables", "-w", "5", "-A", backend.firewall_chain, "-s", n2.host, "-d", n1.host,
                       "-j", "DROP"]).check()
    try:
        assert _reach(backend, "n2", f"{n1.url}/admin/health") == "cut"
        assert _reach(backend, "n3", f"{n1.url}/admin/health") == "reached"
    finally:
        backend.run("n1", ["iptables", "-w", "5", "-F", backend.firewall_chain]).check()
    assert _reach(backend, "n2", f"{n1.url}/admin/health") == "reached"


def test_clock_kill_start_pause_over_ssh(cluster):
    backend, nodes = cluster
    n3 = nodes["n3"]
    backend.write_file("n3", n3.clock_file, b"-7200s\n")
    try:
        assert -7300 < backend.target.admin.clock(n3) - time.time() < -7100
    finally:
        backend.write_file("n3", n3.clock_file, b"+0\n")
    backend.kill("n3")
    assert not backend.is_running("n3") and not DynamoAdmin().health(n3)[0]
    backend.start("n3")
    assert DynamoAdmin().health(n3)[0]
    backend.pause("n3")
    try:
        assert backend.is_running("n3") and not DynamoAdmin().health(n3, timeout=1.0)[0]
    finally:
        backend.resume("n3")
    assert DynamoAdmin().health(n3, timeout=3.0)[0]


def test_reattach_over_ssh_from_cluster_json_and_heal(cluster):
    from harness.backends import attach
    from nemeses.compose import heal_cluster

    backend, nodes = cluster
    n1, n2 = nodes["n1"], nodes["n2"]
    backend.run("n1", ["iptables", "-w", "5", "-A", backend.firewall_chain, "-s", n2.host, "-j", "DROP"]).check()
    backend.pause("n2")
    backend.kill("n3")
    other = attach(backend._run_dir)               # reconnects, verifying host keys again
    try:
        probe = heal_cluster(other, other.target, say=lambda line: None)
        assert probe.ok, probe.detail
        assert all(DynamoAdmin().health(n)[0] for n in nodes.values())
        assert backend.run("n1", ["iptables", "-S", backend.firewall_chain]).check().stdout.count("-A") == 0
    finally:
        for shell in other._shells.values():
            shell.close()


def test_unknown_host_key_is_refused_unless_trust_on_first_use(hosts):
    empty = hosts["tmp"] / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(UserError, match="not in .*trust_on_first_use"):
        connect(hosts["ips"][0], user="dyn", key=hosts["key"], known_hosts=str(empty))
    learned = hosts["tmp"] / "tofu_known_hosts"
    connect(hosts["ips"][0], user="dyn", key=hosts["key"], known_hosts=str(learned), trust_on_first_use=True).close()
    assert learned.read_text().split()[1:] == Path(hosts["known_hosts"]).read_text().splitlines()[0].split()[1:]


def test_a_different_host_key_is_refused_even_with_trust_on_first_use(hosts):
    # n2's real key recorded under n1's address: n1 presents another key, as an impostor would
    lines = Path(hosts["known_hosts"]).read_text().splitlines()
    wrong = hosts["tmp"] / "wrong_known_hosts"
    wrong.write_text(f"{hosts['ips'][0]} {' '.join(lines[1].split()[1:])}\n")
    for tofu in (False, True):
        with pytest.raises(UserError, match="HOST KEY MISMATCH"):
            connect(hosts["ips"][0], user="dyn", key=hosts["key"], known_hosts=str(wrong), trust_on_first_use=tofu)


def test_teardown_stops_everything_and_removes_chain_and_files(hosts):
    # a port of its own: the module's cluster still listens on 7000 on this host (with /admin/health
    # open, its node once answered this backend's health check in place of a node that never bound)
    backend = SshBackend({"hosts": hosts["ips"][:1], "user": "dyn", "key": hosts["key"],
                          "known_hosts": hosts["known_hosts"], "node_port": 7200})
    backend.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1",), settings={"n": 1, "r": 1, "w": 1}, run_dir=hosts["tmp"] / "run1"))
    chain, root = backend.firewall_chain, backend._run_root["n1"]
    backend.teardown()
    backend.teardown()                              # idempotent
    shell = connect(hosts["ips"][0], user="root", key=hosts["key"], known_hosts=hosts["known_hosts"])
    try:
        assert chain not in shell.exec(["iptables", "-S"]).check().stdout
        assert shell.exec(["test", "-e", root]).returncode != 0
        # "[/]home/...": a pattern that does not match the pgrep command line itself
        assert shell.exec(["pgrep", "-f", f"[{root[0]}]{root[1:]}"]).returncode != 0
    finally:
        shell.close()


def test_too_few_hosts_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="one host per node"):
        SshBackend({"hosts": ["10.0.0.1"]}).setup(ClusterConfig(target=DynamoTarget(), nodes=("n1", "n2"), settings={}, run_dir=tmp_path))


@pytest.mark.parametrize("options, message", [
    ({"hosts": ["h1"], "usr": "x"}, "unknown option"),
    ({"hosts": 5}, "hosts: expected a list"),
    ({"hosts": ["h1"], "trust_on_first_use": "true"}, "trust_on_first_use: expected bool"),
])
def test_bad_ssh_options_are_one_line_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        SshBackend(options)


def test_hosts_may_be_a_comma_separated_string():
    assert SshBackend({"hosts": "a, b,c"}).hosts == ["a", "b", "c"]


def test_cleanup_of_an_orphan_removes_node_chain_and_run_folder_on_every_host(hosts):
    """A cluster whose harness is gone (its recorded owner dead): ``cleanup`` reaches every host
    and leaves no node process, chain or run folder of that run there."""
    from harness.backends import cluster_state as cs
    from harness.backends.orphans import find, remove

    backend = SshBackend({"hosts": hosts["ips"][:2], "user": "dyn", "key": hosts["key"],
                          "known_hosts": hosts["known_hosts"], "node_port": 7100})
    run_dir = hosts["tmp"] / "orphan-run" / "t" / "run"
    backend.setup(ClusterConfig(target=DynamoTarget(), nodes=("n1", "n2"), settings={"n": 2, "r": 1, "w": 1},
                                run_dir=run_dir))
    chain, roots = backend.firewall_chain, dict(backend._run_root)
    pids = {n: backend._shells[n].exec(["cat", backend._layouts[n].pid_file]).check().stdout.strip() for n in roots}
    for shell in backend._shells.values():      # the harness "dies": nothing is torn down
        shell.close()
    cs.set_owner(run_dir / "cluster.json", {**cs.current_owner(), "start": -1})
    found = [o for o in find(hosts["tmp"] / "orphan-run") if o.state == (run_dir / "cluster.json").resolve()]
    assert found and found[0].backend == "ssh" and "is gone" in found[0].why
    remove(found[0])
    for name, ip in zip(("n1", "n2"), hosts["ips"]):
        shell = connect(ip, user="dyn", key=hosts["key"], known_hosts=hosts["known_hosts"])
        try:
            assert shell.exec(["test", "-e", roots[name]]).returncode != 0
            assert shell.exec(["kill", "-0", pids[name]]).returncode != 0
            assert chain not in shell.exec(["iptables", "-w", "5", "-S"], privileged=True).check().stdout
        finally:
            shell.close()
