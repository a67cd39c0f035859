"""``.ci/docker-setup.sh``, the README's Docker step: it waits (bounded) for another apt or dpkg
to let go of its locks, and needs nothing from dynharness's Python packages.

The lock files are temporary ones held with the same POSIX lock apt takes (never the machine's
real apt locks, which other work may be using); the script is sourced to call its functions.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "docker-setup.sh"
HOLD = ("import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n")          # holds the lock until the test closes its stdin


@pytest.fixture
def held_lock(tmp_path: Path):
    """A lock file another process holds as apt would, until the test lets it go."""
    lock = tmp_path / "lock-frontend"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield lock, holder
    finally:
        if holder.poll() is None:
            holder.stdin.close()
            holder.wait(timeout=10)


def script(function: str, env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", f'source "{SCRIPT}"; {function}'], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_a_lock_held_past_the_wait_is_one_line_and_a_failure(held_lock, tmp_path: Path) -> None:
    lock, _ = held_lock
    free = tmp_path / "free-lock"
    free.touch()
    proc = script("wait_for_apt", {"APT_LOCKS": f"{free} {lock}", "APT_LOCK_WAIT": "2"})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert f"waiting for another apt or dpkg to finish (it holds {lock}" in out
    assert err.strip().splitlines() == [f"docker-setup: error: another apt or dpkg still holds {lock} after 2s; "
                                        "run this again once it is done (APT_LOCK_WAIT=SECONDS waits longer)"]


def test_the_wait_ends_when_the_other_apt_lets_go(held_lock) -> None:
    lock, holder = held_lock
    proc = script("wait_for_apt && echo free", {"APT_LOCKS": str(lock), "APT_LOCK_WAIT": "600"})
    assert "waiting for another apt or dpkg" in proc.stdout.readline()     # it is waiting: let go
    holder.stdin.close()
    holder.wait(timeout=10)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == "free", err


def test_free_or_missing_lock_files_do_not_wait(tmp_path: Path) -> None:
    (tmp_path / "lock").touch()
    proc = script("wait_for_apt && echo free", {"APT_LOCKS": f"{tmp_path / 'lock'} {tmp_path / 'absent'}",
                                                "APT_LOCK_WAIT": "0"})
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.strip() == "free"


def test_without_dynharness_packages_the_image_is_left_to_the_first_run(tmp_path: Path) -> None:
    """The failure this replaced: ``No module named 'rich'`` when run without the venv."""
    bare = tmp_path / "python-without-packages"
    bare.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'rich'\" >&2\nexit 1\n")
    bare.chmod(0o755)
    proc = script("build_image", {"DYNHARNESS_PYTHON": str(bare)})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "the node image is not built now" in out and "the first --backend docker run builds it" in out
    assert "rich" not in err
