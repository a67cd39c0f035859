"""Lazy disks: a node's data dir seen through :mod:`harness.backends.lazyfs`, and its power loss.

Why apart from the local backend: mounting, commanding and unmounting one lazy file system per
node is its own small life cycle (a daemon process, a FUSE mount, a control socket), and every
exit path must undo it: :meth:`LazyDisk.unmount` is idempotent and safe on a disk half set up,
and :func:`stale_mounts` lets teardown prove no mount was left behind.

Layout per node, under the run's ``nodes/`` folder: ``<name>/`` (the node's data dir, the
mount point), ``<name>.disk/`` (what is really on the disk), ``<name>.disk.stash/`` (unlinked
files until a sync makes that durable), ``<name>.lazyfs.log``. The control socket is in the
abstract namespace and named after the run's iptables-free token, so two runs never meet.

A power loss (:meth:`LazyDisk.power_loss`) is: the daemon undoes what was never fsynced, the
mount is dropped with the kernel's caches of it, and a fresh daemon mounts what is left, which
is what the node sees when it starts again. The node must be down first (the caller kills it).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from harness import optional
from harness.backends import lazyfs_control

#: A file written and fsynced (file and directory) when a disk is first mounted: a power loss
#: must leave it there; a probe checks it with one written without fsync, which must be gone.
SYNCED_MARKER = ".lazyfs-synced"
UNSYNCED_MARKER = ".lazyfs-unsynced"
MOUNT_TIMEOUT = 15.0
#: The file system name a lazy disk's mount shows in the mount table (the daemon's ``fsname``)
FSNAME = "lazyfs"
#: How a backend's setup says it cannot mount lazy disks (followed by ": " and why)
CANNOT_MOUNT = "cannot put the nodes' data dirs on lazy disks (for power loss)"

#: (argv, log path) -> the started process (the backend's: it decides what outlives the harness)
Launch = Callable[[list[str], Path], subprocess.Popen]


def unavailable() -> str | None:
    """Why lazy disks cannot be mounted on this machine (one line), or None when they can."""
    no_module = optional.missing("mfusepy", "the power-loss nemesis")
    if no_module:
        return no_module
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this kernel or container)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user"
    if not shutil.which("fusermount3"):
        return "fusermount3 is missing (Debian: apt-get install fuse3)"
    return None


def _mount_table() -> list[tuple[str, str, str]]:
    """(mount point, file system type, source) of every mount, from /proc/self/mountinfo."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    table = []
    for line in lines:
        mine, sep, fs = line.partition(" - ")
        fields, fs_fields = mine.split(), fs.split()
        if sep and len(fields) > 4 and len(fs_fields) > 1:
            table.append((fields[4].replace("\\040", " "), fs_fields[0], fs_fields[1]))
    return table


def stale_mounts(paths: list[str]) -> list[str]:
    """Those of ``paths`` that are still mount points."""
    mounted = {point for point, _, _ in _mount_table()}
    return [p for p in paths if os.path.realpath(p) in mounted]


def lazy_mounts() -> list[str]:
    """Mount points of lazy disks on this host (FUSE mounts whose source is :data:`FSNAME`)."""
    return [point for point, fstype, source in _mount_table() if fstype.startswith("fuse") and source == FSNAME]


class LazyDisk:
    """One node's lazy disk (see the module docstring)."""

    def __init__(self, nodes_dir: Path, name: str, token: str, pid: int | None = None) -> None:
        self.name = name
        self.mount = str(nodes_dir / name)
        self.backing = str(nodes_dir / f"{name}.disk")
        self.control = f"@dynharness-lazyfs-{token}-{name}"
        self.log = nodes_dir / f"{name}.lazyfs.log"
        self.pid = pid
        self._proc: subprocess.Popen | None = None

    def state(self) -> dict[str, Any]:
        return {"mount": self.mount, "backing": self.backing, "control": self.control, "pid": self.pid}

    def start(self, launch: Launch) -> None:
        """Mount the disk (data already in ``backing`` is kept) and wait until it serves; on the
        first mount, write the synced marker. RuntimeError (mount undone) when it does not come up."""
        first = not os.path.isdir(self.backing)
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.mount, exist_ok=True)
        argv = [sys.executable, "-m", "harness.backends.lazyfs_daemon", "--backing", self.backing,
                "--mount", self.mount, "--control", self.control]
        self._proc = launch(argv, self.log)
        self.pid = self._proc.pid
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while True:
            try:
                if os.path.ismount(self.mount) and not self.command("status").get("dead"):
                    break
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.unmount()
                raise RuntimeError(f"lazy disk of {self.name} did not mount within {MOUNT_TIMEOUT:g}s "
                                   f"(see {self.log})")
            time.sleep(0.05)
        if first:
            _write_synced(os.path.join(self.mount, SYNCED_MARKER), b"synced\n")

    def command(self, line: str, timeout: float = 30.0) -> dict[str, Any]:
        """Send one control command, return its JSON answer (OSError when the daemon is gone)."""
        return lazyfs_control.send(self.control, line, timeout)

    def serving(self) -> bool:
        """Whether the daemon answers and has not lost power (then the mount is usable)."""
        try:
            return not self.command("status", timeout=5).get("dead")
        except (OSError, ValueError):
            return False

    def power_loss(self, launch: Launch, torn: bool = False) -> dict[str, Any]:
        """Drop what was never fsynced, unmount, mount what is left; the daemon's report, plus
        ``remounted``. The node must be down."""
        report = self.command("power-loss torn" if torn else "power-loss")
        self.unmount()
        self.start(launch)
        return {**report, "remounted": True}

    def unmount(self) -> None:
        """Unmount (lazily: nothing may hold it open), end the daemon, reap it. Idempotent."""
        if stale_mounts([self.mount]):
            subprocess.run(["fusermount3", "-u", "-z", self.mount], capture_output=True, timeout=30)
        proc, pid = self._proc, self.pid
        if proc is not None:        # a file still open on the detached mount keeps the daemon serving it
            for stop in (None, proc.terminate, proc.kill):
                if stop is not None:
                    stop()
                try:
                    proc.wait(3)
                    break
                except subprocess.TimeoutExpired:
                    continue
        elif pid is not None and _is_our_daemon(pid, self.mount):   # re-attached: not our child
            os.kill(pid, 9)
        self._proc, self.pid = None, None


class DiskSet:
    """The lazy disks of one cluster, by node: what a backend keeps, saves and tears down."""

    def __init__(self, disks: dict[str, LazyDisk] | None = None) -> None:
        self.disks = dict(disks or {})

    @classmethod
    def mount_all(cls, nodes_dir: Path, names: list[str], token: str, launch: Launch) -> "DiskSet":
        """Mount every node's lazy disk; on a failure unmount those already up and raise."""
        out = cls()
        try:
            for name in names:
                disk = out.disks[name] = LazyDisk(nodes_dir, name, token)
                disk.start(launch)
        except BaseException:
            out.unmount_all()
            raise
        return out

    def ensure(self, node: str, launch: Launch) -> None:
        """Mount ``node``'s disk again if its daemon is gone (a stale mount is cleared first)."""
        disk = self.disks.get(node)
        if disk is not None and not disk.serving():
            disk.unmount()
            disk.start(launch)

    def power_loss(self, node: str, launch: Launch, torn: bool = False) -> dict[str, Any]:
        if node not in self.disks:
            raise RuntimeError(f"{node} has no lazy disk")
        return self.disks[node].power_loss(launch, torn)

    def unmount_all(self) -> list[str]:
        """Unmount every disk (each tried, whatever the others do); the mount points still mounted."""
        for disk in self.disks.values():
            try:
                disk.unmount()
            except (OSError, subprocess.SubprocessError):
                pass
        return stale_mounts([d.mount for d in self.disks.values()])

    def state(self) -> dict[str, Any]:
        return {name: d.state() for name, d in self.disks.items()}

    @classmethod
    def from_state(cls, nodes_dir: Path, state: dict[str, Any]) -> "DiskSet":
        """The disks a ``cluster.json`` describes (their daemons are not this process's children)."""
        out = cls()
        for name, s in (state or {}).items():
            token = s["control"].removeprefix("@dynharness-lazyfs-").removesuffix(f"-{name}")
            out.disks[name] = LazyDisk(nodes_dir, name, token, pid=s.get("pid"))
        return out


def _write_synced(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _is_our_daemon(pid: int, mount: str) -> bool:
    """Whether ``pid`` still runs the lazyfs daemon of ``mount`` (not a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"harness.backends.lazyfs_daemon" in argv and mount.encode() in argv
