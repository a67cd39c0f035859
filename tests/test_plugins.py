"""Plug points open to other packages: an out-of-tree target installed with pip, run with no edit.

``tests/data/plugin_pkg`` is a package as a user would write one: a key-value store with no
replication (``dynharness.targets``), a workload writing each key once (``dynharness.workloads``), a
checker that wants every acknowledged write in the final reads (``dynharness.checkers``), a
crash-restart fault (``dynharness.nemeses``) and a register model (``dynharness.models``). The test installs it
with pip into a folder of its own and runs ``dynharness`` with that folder on the path, exactly as
after ``pip install`` of a user's package. One node is linearizable; three independent nodes are
not (a read on one node misses a write acknowledged by another), and the checker must say so.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import plugins
from harness.errors import UserError

PLUGIN = Path(__file__).parent / "data" / "plugin_pkg"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("build") / "plugin_pkg"   # setuptools builds in the source tree
    shutil.copytree(PLUGIN, source)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                           str(source)], capture_output=True, text=True, timeout=300, cwd=source)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(site.glob("tinykv-*.dist-info")), "pip installed no distribution metadata"
    return site


def dynharness(site: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "harness", "run", "--no-display", "--histories", str(tmp / "h"),
                           *args], capture_output=True, text=True, timeout=240, env=env, cwd=tmp)


def verdict_of(tmp: Path, name: str) -> dict:
    return json.loads(next((tmp / "h" / name).glob("*/results.json")).read_text())


@pytest.mark.cluster
def test_an_installed_target_plugin_runs_with_no_edit_to_the_project(installed: Path, tmp_path: Path) -> None:
    common = ("--target", "tinykv", "--workload", "register", "--keys", "2", "--nemesis", "none",
              "--duration", "4", "--rate", "100", "--recovery", "0", "--seed", "3")
    one = dynharness(installed, tmp_path, *common, "--nodes", "1", "--name", "one")
    assert one.returncode == 0, one.stderr[-1500:]
    assert "tinykv (no replication)" in one.stderr
    assert verdict_of(tmp_path, "one")["checkers"]["linearizable"]["verdict"] == "valid"
    three = dynharness(installed, tmp_path, *common, "--nodes", "3", "--name", "three")
    assert three.returncode == 1, three.stderr[-1500:]
    assert verdict_of(tmp_path, "three")["checkers"]["linearizable"]["verdict"] == "invalid"


@pytest.mark.cluster
def test_an_installed_workload_checker_fault_and_model_run_with_no_edit(installed: Path, tmp_path: Path) -> None:
    common = ("--target", "tinykv", "--nodes", "1", "--duration", "4", "--rate", "100", "--recovery", "0",
              "--seed", "5")
    calm = dynharness(installed, tmp_path, *common, "--workload", "durable", "--nemesis", "none", "--name", "calm")
    assert calm.returncode == 0, calm.stderr[-1500:]
    durable = verdict_of(tmp_path, "calm")["checkers"]["durable"]
    assert durable["verdict"] == "valid" and durable["counts"]["acked_writes"] > 50

    # tinykv keeps keys in memory: a crash-restart loses every write acknowledged before it
    crash = dynharness(installed, tmp_path, *common, "--workload", "durable", "--nemesis", "restart",
                       "--nemesis-interval", "1", "--set", "nemesis.restart.down_s=0.2", "--name", "crash")
    assert crash.returncode == 1, crash.stderr[-1500:]
    durable = verdict_of(tmp_path, "crash")["checkers"]["durable"]
    assert durable["verdict"] == "invalid" and durable["counts"]["lost_writes"] > 10
    run_dir = next((tmp_path / "h" / "crash").glob("*/"))
    restarts = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()
                if '"start-restart"' in line]
    assert [r["type"] for r in restarts] == ["invoke", "info"] and restarts[0]["value"]["down_s"] == 0.2

    model = dynharness(installed, tmp_path, *common, "--workload", "register", "--keys", "2", "--nemesis", "none",
                       "--set", "checkers.linearizable_model='tinykv-register'", "--name", "model")
    assert model.returncode == 0, model.stderr[-1500:]
    lin = verdict_of(tmp_path, "model")["checkers"]["linearizable"]
    assert lin["verdict"] == "valid" and lin["details"]["model"] == "tinykv-register"

    bad = dynharness(installed, tmp_path, *common, "--workload", "durable", "--nemesis", "restart",
                     "--set", "nemesis.restart.nope=1")
    assert bad.returncode == 3
    assert bad.stderr.strip().splitlines() == [
        "dynharness: error: nemesis.restart: unknown setting 'nope' (known: down_s)"]


@pytest.mark.cluster
def test_a_plugin_targets_bad_setting_is_one_line(installed: Path, tmp_path: Path) -> None:
    bad = dynharness(installed, tmp_path, "--target", "tinykv", "--set", "target.n=3")
    assert bad.returncode == 3
    assert bad.stderr.strip().splitlines() == ["dynharness: error: tinykv has no settings, got n"]


def test_unknown_and_broken_plugins_are_one_line_errors(monkeypatch) -> None:
    with pytest.raises(UserError, match=r"unknown target 'nosuch' \(known: .*dynamo.*etcd"):
        plugins.target("nosuch")
    monkeypatch.setitem(plugins._entry_points("targets"), "broken", "no_such_module:Target")
    with pytest.raises(UserError, match="target 'broken' .* cannot be loaded: ModuleNotFoundError"):
        plugins.target("broken")


def test_the_built_in_plug_ins_are_registered_as_a_users_would_be() -> None:
    """pyproject's entry points and the checkout fallback (plugins.BUILTIN) name the same objects."""
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    declared = {group.removeprefix("dynharness."): dict(table)
                for group, table in project["entry-points"].items() if group.startswith("dynharness.")}
    assert declared == {group: dict(table) for group, table in plugins.BUILTIN.items()}
    for group, table in declared.items():
        for name in table:
            assert plugins.load(group, name) is not None


def test_remote_backends_refuse_a_target_their_node_image_lacks() -> None:
    from harness.backends.remote import check_target
    from targets.dynamo.target import DynamoTarget
    from targets.etcd import EtcdTarget

    check_target("ssh", DynamoTarget())
    with pytest.raises(UserError, match=r"ssh backend cannot run the etcd target yet: .* etcd-server on the hosts"):
        check_target("ssh", EtcdTarget())


def test_an_editable_install_of_another_checkout_falls_back_to_the_builtin_table() -> None:
    """A git worktree run with PYTHONPATH while the editable install points at another checkout: the
    installed entry points describe that other code, so this checkout's built-ins must still resolve."""
    class Dist:
        def __init__(self, direct_url: str | None) -> None:
            self.direct_url = direct_url

        def read_text(self, name: str) -> str | None:
            return self.direct_url if name == "direct_url.json" else None

    here = Path(plugins.__file__).resolve().parents[1]
    editable = lambda url: Dist(json.dumps({"url": url, "dir_info": {"editable": True}}))  # noqa: E731
    assert plugins._describes_this_checkout(editable(f"file://{here}"))
    assert not plugins._describes_this_checkout(editable("file:///somewhere/else"))
    assert plugins._describes_this_checkout(Dist(None))                       # a plain install
    assert plugins._describes_this_checkout(Dist(json.dumps({"url": "file:///x", "dir_info": {}})))
    assert "convergence" in plugins.names("checkers")



def test_a_targets_client_gets_the_cluster_secret_only_when_it_takes_one() -> None:
    """``client(..., secret=)`` is the contract's optional parameter: the harness hands a target's
    client the cluster's secret when its signature names it (or takes ``**kwargs``), and leaves a
    client written before it as it was."""
    from targets.adapter import Node

    class Older:
        def client(self, node, url, *, timeout, settings):
            return {"node": node, "url": url}

    class Newer:
        def client(self, node, url, *, timeout, settings, secret=None):
            return {"node": node, "secret": secret}

    class Open:
        def client(self, node, url, **kwargs):
            return kwargs

    n1 = Node("n1", "127.0.0.11", 7000, "/tmp/n1", secret="s3cret")
    assert plugins.node_client(Older(), n1, timeout=1.0, settings={}) == {"node": "n1", "url": "http://127.0.0.11:7000"}
    assert plugins.node_client(Newer(), n1, timeout=1.0, settings={}) == {"node": "n1", "secret": "s3cret"}
    assert plugins.node_client(Open(), n1, timeout=1.0, settings={})["secret"] == "s3cret"
    no_secret = Node("n1", "127.0.0.11", 7000, "/tmp/n1")
    assert plugins.node_client(Newer(), no_secret, timeout=1.0, settings={}) == {"node": "n1", "secret": None}
