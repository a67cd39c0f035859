"""The lazy file system as a process: one per node, mounted over its data dir, commanded by socket.

``python -m harness.backends.lazyfs_daemon --backing B --mount M --control SOCK`` mounts
:class:`~harness.backends.lazyfs.LazyFS` over ``B`` at ``M`` (libfuse 3 through mfusepy, in the
foreground, multithreaded) and answers one command per connection on the unix socket ``SOCK``
(``@name``: Linux's abstract namespace, :mod:`~harness.backends.lazyfs_control`): ``status``
answers what a power loss would drop (JSON); ``power-loss [torn]`` drops it and answers what
was dropped.
Why a process of its own: the FUSE loop and every file operation of the node run here, off the
harness's interpreter, and the process's death unmounts (``auto_unmount``; the local backend
also gives it SIGTERM when the harness dies, on which libfuse unmounts before exiting).
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import threading
from typing import Any

import mfusepy

from harness.backends import lazyfs_control
from harness.backends.lazy_disks import FSNAME
from harness.backends.lazyfs import LazyFS


class _Fuse(mfusepy.FUSE):
    """Where mfusepy's libfuse 3 wrappers drop an argument: renameat2's flags (refused rather than
    a RENAME_NOREPLACE target clobbered; ``mv`` then falls back to a plain rename), and the open
    file of ``ftruncate``/``fchmod``/``fchown``/``futimens`` (with ``nopath`` the path is then None:
    the descriptor is all there is)."""

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        return -errno.EINVAL if flags else self.rename_fuse_2(old, new)

    def _path(self, path: bytes | None) -> str | None:
        return None if path is None else path.decode(self.encoding, self.errors)

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        return self.operations.truncate(self._path(path), length, _fh(fip))

    def chmod_fuse_3(self, path: bytes | None, mode: int, fip: Any) -> int:
        return self.operations.chmod(self._path(path), mode, _fh(fip))

    def chown_fuse_3(self, path: bytes | None, uid: int, gid: int, fip: Any) -> int:
        uid = -1 if uid == 2**32 - 1 else uid        # (uid_t)-1: leave as it is
        gid = -1 if gid == 2**32 - 1 else gid
        return self.operations.chown(self._path(path), uid, gid, _fh(fip))

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        stamps = (buf.contents.actime, buf.contents.modtime) if buf else ()
        times = tuple(mfusepy.time_of_timespec(ts, use_ns=True) for ts in stamps) or None
        return self.operations.utimens(self._path(path), times, _fh(fip))


def _fh(fip: Any) -> int | None:
    return fip.contents.fh if fip else None


def serve_control(fs: LazyFS, path: str) -> None:
    """Answer one command per connection on the unix socket ``path`` (see the module docstring)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if not path.startswith("@") and os.path.exists(path):     # "@": abstract, no file to leave behind
        os.unlink(path)
    srv.bind(lazyfs_control.address(path))
    srv.listen(4)
    while True:
        conn, _ = srv.accept()
        with conn:
            words = conn.makefile("r").readline().split()
            if words[:1] == ["power-loss"]:
                answer = fs.power_loss(torn="torn" in words[1:])
            elif words[:1] == ["status"]:
                answer = {**fs.pending(), "dead": fs.dead}
            else:
                answer = {"error": f"unknown command {' '.join(words)!r}"}
            conn.sendall((json.dumps(answer) + "\n").encode())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m harness.backends.lazyfs_daemon",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--backing", required=True, help="the directory that holds the data")
    ap.add_argument("--mount", required=True, help="where its lazy view appears")
    ap.add_argument("--control", required=True, help="unix socket for status and power-loss")
    ap.add_argument("--stash", help="where unlinked files wait for a sync (default: BACKING.stash)")
    args = ap.parse_args(argv)

    def on_mount(fs: LazyFS) -> None:       # its socket appearing tells the client the mount is up
        threading.Thread(target=serve_control, args=(fs, args.control), daemon=True).start()

    fs = LazyFS(args.backing, args.stash or args.backing.rstrip("/") + ".stash", on_mount)
    # no hard_remove: libfuse renames an unlinked open file to .fuse_hidden* and unlinks that at its
    # release (both name changes, undone as any), so fstat of an unlinked open file still works;
    # auto_unmount: the mount goes with this process, however it dies
    _Fuse(fs, args.mount, foreground=True, fsname=FSNAME, auto_unmount=True)


if __name__ == "__main__":
    main()
