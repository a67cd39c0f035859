"""Optional extras (harness/optional.py): a plain install runs the local default, and a command
that needs a missing extra says which one in one line, exit 3, no traceback.

"Missing" is simulated in a subprocess: every finder on ``sys.meta_path`` is wrapped so the
blocked packages are not found (``import`` raises ModuleNotFoundError, ``find_spec`` gives None),
as on a machine where they were never installed. The subprocess proves the block took effect
before it runs the CLI.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness import optional
from harness.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
ALL_OPTIONAL = tuple(m for extra in optional.EXTRAS for m in extra.modules)

WITHOUT = """
import sys
blocked = set(sys.argv[1].split(","))

class Hidden:
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            return None
        find = getattr(self.inner, "find_spec", None)
        return find(name, path, target) if find else None
    def __getattr__(self, attr):
        return getattr(self.inner, attr)

sys.meta_path[:] = [Hidden(f) for f in sys.meta_path]
for name in [m for m in sys.modules if m.partition(".")[0] in blocked]:
    del sys.modules[name]
for name in blocked:
    try:
        __import__(name)
    except ModuleNotFoundError:
        pass
    else:
        sys.exit(f"the block of {name} did not take")
del sys.argv[1]
from harness.cli import main
sys.exit(main())
"""


def cli_without(blocked: tuple[str, ...], *args: str, cwd: Path, timeout: float = 120,
                **env: str) -> subprocess.CompletedProcess[str]:
    """``dynharness ARGS`` in a subprocess where the ``blocked`` packages cannot be imported."""
    return subprocess.run([sys.executable, "-c", WITHOUT, ",".join(blocked), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=_env(**env))


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def assert_hint(p: subprocess.CompletedProcess[str], extra: str) -> None:
    assert p.returncode == 3, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("dynharness: error:")]
    assert len(errors) == 1, p.stderr
    assert f"pip install 'dynharness[{extra}]'" in errors[0], p.stderr


# -- the helper ---------------------------------------------------------------------------------
def test_require_gives_the_module_when_it_is_there() -> None:
    assert optional.require("docker", "x").__name__ == "docker"


def test_require_names_what_needs_it_and_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paramiko", None)
    with pytest.raises(UserError) as e:
        optional.require("paramiko", "the ssh backend")
    assert str(e.value) == "the ssh backend needs paramiko: pip install 'dynharness[ssh]'"
    assert optional.missing("paramiko", "the ssh backend") == str(e.value)


def test_a_broken_install_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mfusepy.py").write_text("import a_library_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mfusepy", raising=False)
    with pytest.raises(UserError) as e:
        optional.require("mfusepy", "the power-loss nemesis")
    assert "pip install 'dynharness[power-loss]'" in str(e.value)
    assert "a_library_that_is_not_there" in str(e.value) and "\n" not in str(e.value)


def test_a_module_of_no_extra_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        optional.require("json", "x")


# -- pyproject agrees with the helper ---------------------------------------------------------
def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    """Distribution names (with their own extras as names too: dask[distributed] -> dask, distributed)."""
    out = set()
    for req in requirements:
        head = req.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip()
        name, _, extras = head.partition("[")
        out.add(name.strip().lower())
        out |= {x.strip().lower() for x in extras.rstrip("]").split(",") if x.strip()}
    return out


def test_pyproject_has_every_extra_the_hints_name_and_no_optional_package_in_core() -> None:
    project = _pyproject()
    extras = project["optional-dependencies"]
    assert {e.name for e in optional.EXTRAS} == set(extras) - {"all", "test"}
    for extra in optional.EXTRAS:
        assert set(extra.modules) <= _names(extras[extra.name]), extra
    assert not _names(project["dependencies"]) & set(ALL_OPTIONAL)
    assert extras["all"] == [f"dynharness[{','.join(e.name for e in optional.EXTRAS)}]"]
    assert "dynharness[all]" in extras["test"]
    assert {"pytest", "playwright", "edn-format", "xmlschema"} <= _names(extras["test"])


def test_the_readme_and_ci_install_the_test_extra() -> None:
    assert "pip install -e '.[test]'" in (ROOT / "README.md").read_text()
    assert "pip install -q -e '.[test]'" in (ROOT / ".ci" / "run").read_text()


# -- no module-level import of an optional package, but in modules loaded only after require ----
#: modules that run only where their package was required first: the Dask worker side, the
#: lazy file system daemon (started only when lazy_disks.unavailable() said mfusepy is there)
AFTER_REQUIRE = {"harness/campaign/dask_worker.py", "harness/backends/lazyfs.py", "harness/backends/lazyfs_daemon.py"}


def _top_level_imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_optional_packages_are_imported_only_where_needed() -> None:
    after = {p.removesuffix(".py").replace("/", ".") for p in AFTER_REQUIRE}
    bad = []
    for package in ("harness", "nemeses", "checkers", "targets"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel in AFTER_REQUIRE:
                continue
            tops = _top_level_imports(path)
            bad += [f"{rel}: {m}" for m in tops if m.partition(".")[0] in ALL_OPTIONAL or m in after]
    assert bad == []


# -- the commands that need an extra, without it --------------------------------------------------
@pytest.mark.parametrize("blocked, extra, args", [
    (("docker",), "docker", ["run", "--backend", "docker", "--nodes", "3", "--duration", "3", "--nemesis", "none"]),
    (("docker",), "docker", ["image", "build"]),
    (("paramiko",), "ssh", ["run", "--backend", "ssh", "--nodes", "3", "--duration", "3", "--nemesis", "none"]),
    (("dask", "distributed"), "dask", ["campaign", "--builtin", "ci-smoke", "--jobs", "2", "--no-display"]),
    (("distributed",), "dask", ["campaign", "--builtin", "ci-smoke", "--scheduler", "tcp://127.0.0.1:1", "--no-display"]),
], ids=["run-docker", "image-build", "run-ssh", "campaign-jobs", "campaign-scheduler"])
def test_a_command_without_its_extra_says_which_to_install(blocked: tuple[str, ...], extra: str, args: list[str],
                                                           tmp_path: Path) -> None:
    p = cli_without(blocked, *args, "--histories", str(tmp_path), cwd=tmp_path) if args[0] in ("run", "campaign") \
        else cli_without(blocked, *args, cwd=tmp_path)
    assert_hint(p, extra)
    assert not list(tmp_path.rglob("cluster.json")), "no cluster was started"


def test_a_docker_engine_over_ssh_without_paramiko_says_which_extra(tmp_path: Path) -> None:
    p = cli_without(("paramiko",), "image", "build", cwd=tmp_path, DOCKER_HOST="ssh://nobody@127.0.0.1")
    assert_hint(p, "ssh")
    assert "a Docker engine over SSH" in p.stderr


def test_cleanup_without_the_docker_sdk_says_why_it_skipped_docker(tmp_path: Path) -> None:
    p = cli_without(("docker",), "cleanup", "--dry-run", "--histories", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Docker clusters not looked for: finding them needs the Docker SDK: pip install 'dynharness[docker]'" \
        in p.stdout


@pytest.mark.cluster
def test_power_loss_without_mfusepy_says_which_extra(tmp_path: Path) -> None:
    p = cli_without(("mfusepy",), "run", "--nemesis", "power-loss", "--fsync", "never", "--nodes", "3",
                    "--duration", "3", "--nemesis-interval", "1", "--no-display", "--histories", str(tmp_path),
                    cwd=tmp_path)
    assert_hint(p, "power-loss")
    assert "power-loss nemesis needs mfusepy" in p.stderr


@pytest.mark.cluster
def test_the_local_default_runs_without_any_extra(tmp_path: Path) -> None:
    p = cli_without(ALL_OPTIONAL, "run", "--nemesis", "none", "--duration", "3", "--nodes", "3", "--no-display",
                    "--histories", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
    assert "verdict: valid" in p.stdout
    assert "Traceback" not in p.stderr
