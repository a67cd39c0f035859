"""A lazy disk on a node the harness reaches through a shell: the node's data dir inside a container.

The same daemon as on the local backend (:mod:`harness.backends.lazyfs_daemon`, in the node
image with fuse3 and mfusepy), run on the node's machine: mounted over the node's data dir
(``<data_dir>`` the mount, ``<data_dir>.disk`` what is really on the disk, ``.disk.stash``
beside it), started detached with its pid in ``<data_dir>.lazyfs.pid`` and its output in
``<data_dir>.lazyfs.log``, commanded through :mod:`harness.backends.lazyfs_control` run there
(its socket is in the abstract namespace of the node's network namespace: unreachable, and
unclashing, from anywhere else).

Every step is one command on the node, so the same code serves any :class:`remote.NodeShell`.
In a container the mount lives in the container's mount namespace: it cannot outlive the
container, which the Docker backend removes on every exit path; :meth:`ShellLazyDisk.unmount`
is for a container that stays (a kept cluster).
"""
from __future__ import annotations

import json
import shlex
from typing import Any

from harness.backends import remote
from harness.backends.lazy_disks import MOUNT_TIMEOUT, SYNCED_MARKER

CONTROL = "@dynharness-lazyfs"


class ShellLazyDisk:
    """The lazy disk under one node's data dir, on the machine behind ``shell``."""

    def __init__(self, shell: remote.NodeShell, layout: remote.NodeLayout) -> None:
        self.shell, self.layout = shell, layout
        self.mount = layout.data_dir
        self.backing = f"{layout.data_dir}.disk"
        self.pid_file = f"{layout.data_dir}.lazyfs.pid"
        self.log_file = f"{layout.data_dir}.lazyfs.log"

    def _python(self, module: str, *args: str) -> str:
        """Shell words running ``python -m module args`` with the node's code (from its app dir)."""
        return " ".join(shlex.quote(a) for a in ("env", f"PYTHONPATH={self.layout.pythonpath}",
                                                 "PYTHONDONTWRITEBYTECODE=1", self.layout.python, "-m", module, *args))

    def command(self, line: str, wait: float = 0.0, timeout: float = 30.0, pid: int = 0) -> dict[str, Any]:
        """One control command on the node; its JSON answer (RuntimeError when none came). ``wait``:
        retry that long while the daemon process ``pid`` lives (it answers once mounted)."""
        client = self._python("harness.backends.lazyfs_control", CONTROL, *line.split(), "--wait", f"{wait:g}",
                              *(("--pid", str(pid)) if pid else ()))
        res = self.shell.exec(["sh", "-c", f"cd {shlex.quote(self.layout.app_dir)} && {client}"],
                              timeout=timeout + wait, privileged=True)
        if res.returncode != 0:
            raise RuntimeError(f"lazy disk at {self.mount}: {(res.stderr.strip() or res.stdout.strip())[-300:]}")
        return json.loads(res.stdout.strip().splitlines()[-1])

    def start(self) -> None:
        """Mount the disk over the data dir (data already on the disk is kept) and wait until it
        serves; on the first mount write the synced marker (fsynced, file and directory)."""
        q = shlex.quote
        daemon = self._python("harness.backends.lazyfs_daemon", "--backing", self.backing, "--mount", self.mount,
                              "--control", CONTROL)
        script = (f"first=; [ -d {q(self.backing)} ] || first=1; mkdir -p {q(self.backing)} {q(self.mount)} && "
                  f"cd {q(self.layout.app_dir)} && {{ setsid {daemon} >> {q(self.log_file)} 2>&1 < /dev/null & "
                  f"echo $! > {q(self.pid_file)}; }} && echo \"$! $first\"")
        pid, _, first = self.shell.exec(["sh", "-c", script], timeout=15, privileged=True).check().stdout.partition(" ")
        try:
            self.command("status", wait=MOUNT_TIMEOUT, pid=int(pid))
        except RuntimeError:
            log = self.shell.get_file(self.log_file).decode(errors="replace").strip().splitlines()[-1:] or ["empty log"]
            self.unmount()
            raise RuntimeError(f"lazy disk at {self.mount} did not mount (waited up to {MOUNT_TIMEOUT:g}s): "
                               f"{log[0][:200]}")
        if first.strip():
            marker = f"{self.mount}/{SYNCED_MARKER}"
            self.shell.exec(remote.sh('echo synced > "$1" && sync -- "$1" "$2"', marker, self.mount),
                            privileged=True).check()

    def serving(self) -> bool:
        try:
            return not self.command("status", timeout=5).get("dead")
        except (RuntimeError, ValueError):
            return False

    def power_loss(self, torn: bool = False) -> dict[str, Any]:
        """Drop what was never fsynced, unmount, mount what is left (the node must be down)."""
        report = self.command("power-loss torn" if torn else "power-loss")
        self.unmount()
        self.start()
        return {**report, "remounted": True}

    def unmount(self) -> None:
        """Unmount (lazily), end the daemon (TERM, then KILL), wait until it is gone. Idempotent."""
        script = ('grep -qs " $1 fuse" /proc/self/mounts && fusermount3 -u -z "$1"; '
                  'pid=$(cat "$2" 2>/dev/null) || exit 0; [ -n "$pid" ] || exit 0; '
                  'alive() { tr "\\000" " " < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--mount $1"; }; '
                  'for sig in TERM TERM TERM KILL KILL; do alive || break; kill -$sig "$pid" 2>/dev/null; '
                  'sleep 0.2; done; rm -f "$2"; ! alive')
        self.shell.exec(remote.sh(script, self.mount, self.pid_file), timeout=15, privileged=True).check()

    def mounted(self) -> bool:
        res = self.shell.exec(remote.sh('grep -qs " $1 fuse" /proc/self/mounts', self.mount), privileged=True)
        return res.returncode == 0
