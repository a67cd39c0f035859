"""The lazy file system under the power-loss nemesis, through a real FUSE mount: what a power loss
drops (every write and name change since the last fsync) and what it keeps (what was fsynced),
and that no mount outlives its disk."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from harness.backends import lazy_disks
from harness.backends.lazy_disks import SYNCED_MARKER, LazyDisk
from tests.conftest import require


def launch(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def disk(tmp_path: Path):
    require(lazy_disks.unavailable() is None, f"no lazy disks here: {lazy_disks.unavailable()}")
    d = LazyDisk(tmp_path, "n1", f"t{os.getpid()}")
    d.start(launch)
    try:
        yield d
    finally:
        d.unmount()
        assert lazy_disks.stale_mounts([d.mount]) == []


def write(path: str, data: bytes, *, sync: bool, mode: str = "wb") -> None:
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def test_a_power_loss_drops_unsynced_writes_and_keeps_synced_ones(disk: LazyDisk) -> None:
    m = disk.mount
    write(f"{m}/kept", b"synced", sync=True)
    write(f"{m}/kept", b" + appended, never synced", sync=False, mode="ab")
    write(f"{m}/big", b"a" * 10_000, sync=True)
    with open(f"{m}/big", "r+b") as f:                 # overwrite inside the synced size, then cut
        f.seek(5000)
        f.write(b"b" * 100)
        f.truncate(7000)
    write(f"{m}/new", b"never synced", sync=False)      # its data and its name both go
    assert read(f"{m}/kept") == b"synced + appended, never synced"
    report = disk.power_loss(launch)
    assert report["remounted"] and report["errors"] == []
    assert report["bytes"] >= len(b" + appended, never synced") + 100 + 3000 + len(b"never synced")
    assert read(f"{m}/kept") == b"synced"
    assert read(f"{m}/big") == b"a" * 10_000
    assert read(f"{m}/new") is None
    assert read(f"{m}/{SYNCED_MARKER}") == b"synced\n"
    assert disk.command("status")["files"] == 0        # the new mount starts with nothing pending


def test_name_changes_are_durable_only_after_a_sync(disk: LazyDisk) -> None:
    m = disk.mount
    for name in ("a", "b", "c"):
        write(f"{m}/{name}", name.encode(), sync=True)
    os.mkdir(f"{m}/synced-dir")
    fsync_dir(m)                                        # names so far: durable
    os.rename(f"{m}/a", f"{m}/b")                       # replaces b
    os.unlink(f"{m}/c")
    os.mkdir(f"{m}/d")
    write(f"{m}/d/x", b"x", sync=False)
    os.rmdir(f"{m}/synced-dir")
    assert sorted(os.listdir(m)) == sorted([SYNCED_MARKER, "b", "d"])
    disk.power_loss(launch)
    assert sorted(os.listdir(m)) == sorted([SYNCED_MARKER, "a", "b", "c", "synced-dir"])
    assert (read(f"{m}/a"), read(f"{m}/b"), read(f"{m}/c")) == (b"a", b"b", b"c")

    os.rename(f"{m}/a", f"{m}/renamed")
    write(f"{m}/b", b"b2", sync=True)                   # any fsync commits the journal: the rename too
    disk.power_loss(launch)
    assert sorted(os.listdir(m)) == sorted([SYNCED_MARKER, "b", "c", "renamed", "synced-dir"])
    assert read(f"{m}/b") == b"b2"


def test_a_file_unlinked_while_open_stays_usable_and_leaves_no_orphan(disk: LazyDisk) -> None:
    m = disk.mount
    write(f"{m}/kept", b"k", sync=True)
    fd = os.open(f"{m}/open", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"before")
        os.unlink(f"{m}/open")
        os.write(fd, b"after")
        os.fsync(fd)                        # commits the unlink too
        assert os.fstat(fd).st_size == 11 and os.pread(fd, 20, 0) == b"beforeafter"
        os.ftruncate(fd, 3)
        os.fchmod(fd, 0o600)
        assert os.fstat(fd).st_size == 3
        disk.power_loss(launch)             # while still open: libfuse's .fuse_hidden* name is an orphan
    finally:
        with contextlib.suppress(OSError):  # its mount is gone: the close cannot reach a daemon
            os.close(fd)
    assert sorted(os.listdir(m)) == sorted([SYNCED_MARKER, "kept"])


def test_torn_keeps_the_first_half_of_the_last_unsynced_write(disk: LazyDisk) -> None:
    write(f"{disk.mount}/log", b"head|", sync=True)
    write(f"{disk.mount}/log", b"0123456789", sync=False, mode="ab")
    report = disk.power_loss(launch, torn=True)
    assert report["torn_bytes"] == 5
    assert read(f"{disk.mount}/log") == b"head|01234"


def test_sqlite_keeps_exactly_its_synced_commits(disk: LazyDisk) -> None:
    db = sqlite3.connect(f"{disk.mount}/s.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (k INTEGER)")
    db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])   # one synced commit
    db.execute("PRAGMA synchronous=OFF")
    for i in range(50, 80):                                                  # 30 unsynced commits
        db.execute("INSERT INTO t VALUES (?)", (i,))
    assert db.execute("SELECT count(*) FROM t").fetchone() == (80,)
    db.close()           # the closing checkpoint syncs nothing at OFF: still unsynced
    disk.power_loss(launch)
    db = sqlite3.connect(f"{disk.mount}/s.db")
    assert db.execute("SELECT count(*), max(k) FROM t").fetchone() == (50, 49)
    db.close()


def test_a_daemon_killed_by_sigkill_takes_its_mount_along(disk: LazyDisk) -> None:
    pid = disk.pid
    assert pid is not None and lazy_disks.stale_mounts([disk.mount]) == [disk.mount]
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while lazy_disks.stale_mounts([disk.mount]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lazy_disks.stale_mounts([disk.mount]) == []    # auto_unmount: fusermount3 saw it die
    disk.unmount()
    disk.unmount()                                         # idempotent


def test_unavailable_says_why_in_one_line(monkeypatch) -> None:
    monkeypatch.setattr(lazy_disks.os.path, "exists", lambda p: p != "/dev/fuse")
    assert lazy_disks.unavailable() == "/dev/fuse is missing (no FUSE in this kernel or container)"
    monkeypatch.undo()
    monkeypatch.setattr(lazy_disks.shutil, "which", lambda name: None)
    if os.path.exists("/dev/fuse") and os.access("/dev/fuse", os.R_OK | os.W_OK):
        assert lazy_disks.unavailable() == "fusermount3 is missing (Debian: apt-get install fuse3)"


def test_the_daemon_refuses_a_bad_command(disk: LazyDisk) -> None:
    assert disk.command("reboot")["error"] == "unknown command 'reboot'"
    assert disk.command("status")["dead"] is False
