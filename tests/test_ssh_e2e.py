"""End to end over SSH: the same faulted cart run as on Docker, against 5 sshd containers.

The harness logs in as a non-root user with sudo and verifies host keys
against a known_hosts file read out of band; afterwards no node process,
firewall chain or run directory is left on the hosts.
"""
from __future__ import annotations

import secrets

import pytest

from harness.backends.docker_cluster import connect_engine, engine_available, remove_clusters, sshd_hosts
from harness.backends.image import ensure_image
from harness.backends.ssh import connect
from tests.conftest import require
from tests.test_docker_e2e import assert_complete_and_probed, run_with_faults

pytestmark = [pytest.mark.docker, pytest.mark.cluster, pytest.mark.slow]


def test_ssh_run_with_partition_clock_and_crash_leaves_nothing(tmp_path):
    import paramiko

    require(engine_available(), "no Docker engine: install docker.io and start dockerd (.ci/docker-setup.sh)")
    key = paramiko.RSAKey.generate(2048)
    key.write_private_key_file(str(tmp_path / "id_rsa"))
    client = connect_engine()
    name = f"sshe2e-{secrets.token_hex(3)}"
    try:
        ips, known = sshd_hosts(client, name, 5, ensure_image(client).tag, f"{key.get_name()} {key.get_base64()}")
        (tmp_path / "known_hosts").write_text("\n".join(known) + "\n")
        options = {"hosts": list(ips.values()), "user": "dyn", "key": str(tmp_path / "id_rsa"),
                   "known_hosts": str(tmp_path / "known_hosts")}
        outcome, history = run_with_faults(tmp_path, "ssh", options)
        assert_complete_and_probed(outcome, history)
        for ip in ips.values():
            shell = connect(ip, user="root", key=str(tmp_path / "id_rsa"), known_hosts=str(tmp_path / "known_hosts"))
            try:
                assert "DYNH-" not in shell.exec(["iptables", "-S"]).check().stdout
                assert shell.exec(["pgrep", "-f", "[t]argets.dynamo"]).returncode != 0
                assert shell.exec(["ls", "-A", "/home/dyn/.dynharness/runs"]).stdout.strip() == ""
            finally:
                shell.close()
    finally:
        remove_clusters(client, name)
        client.close()
