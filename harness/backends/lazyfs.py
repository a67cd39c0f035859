"""A lazy file system: a FUSE passthrough that loses, on command, whatever was never fsynced.

Why: ``kill -9`` of a node loses nothing that reached the page cache, so a store that never
fsyncs passes every crash test; only a power loss tells ``fsync`` settings apart. Jepsen tests
this with LazyFS (a FUSE layer that keeps unsynced writes in memory and drops them on a
simulated power loss); this is the same idea, small enough to read, run as one process per
node (:mod:`harness.backends.lazyfs_daemon`): the node's data dir is a view of a backing
directory ``B`` through it.

What it keeps, per the model it simulates (a journaled Linux file system such as ext4):

* **data**, per file: every page a write or truncate changes after the file's last
  ``fsync``/``fdatasync`` has its old content kept here (the first time only), with the
  file's size at that sync. Writes go through to ``B`` at once, so reads need no overlay;
  a power loss writes the kept pages back and truncates the file to its synced size. The
  result is what a disk would hold had none of those writes reached it.
* **names**: creates, unlinks, renames, ``mkdir``/``rmdir`` since the last ``fsync`` of
  *any* file or directory on the mount are undone, newest first (ext4 journals names, and
  any fsync commits the journal, with every name change before it). Unlinked and
  overwritten files are moved to a stash beside ``B`` until then, so they can come back. A
  file unlinked while open is renamed by libfuse to ``.fuse_hidden*`` until its release; what
  is left of those after a power loss is an orphan (no file is open any more) and is removed.

Nothing is written back in the background, as LazyFS: a power loss loses everything unsynced
however old (a real kernel writes dirty pages back within about 30 s). With ``torn``, the
last unsynced write is then half-applied again (its first half reached the disk).

:meth:`LazyFS.power_loss` drops it all, reports what was dropped, and from then on every file
operation fails with EIO until the mount is gone (the daemon's client unmounts and mounts anew,
so the kernel's caches of the old view go too). Writes made through the mount are seen here
synchronously (no ``writeback_cache``), so an acknowledged ``write()`` is in the books.
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
from typing import Any, Callable

import mfusepy

PAGE = 4096
#: libfuse renames a file unlinked while open to this (and unlinks that at its release): after a
#: power loss no file is open, so what is left of them is an orphan, which a real disk frees
HIDDEN = ".fuse_hidden"
_STAT = ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks")


class _File:
    """One file (backing inode) with unsynced changes: its size and old pages at the last sync."""

    __slots__ = ("fd", "size0", "pages", "written")

    def __init__(self, fd: int, size0: int) -> None:
        self.fd = fd                          # our own descriptor: undo reaches it even unlinked
        self.size0 = size0
        self.pages: dict[int, bytes] = {}     # page index -> content at the last sync
        self.written = 0                      # bytes written or cut since the last sync


class LazyFS(mfusepy.Operations):
    """Passthrough to ``backing`` that remembers what fsync has not made durable."""

    use_ns = True
    # operations on an open file get its descriptor and no path (an unlinked open file has none):
    # everything such an operation does goes through the descriptor
    flag_nopath = True
    flag_nullpath_ok = True

    def __init__(self, backing: str, stash: str, on_mount: Callable[["LazyFS"], None] | None = None) -> None:
        self.root = os.path.realpath(backing)
        self.stash = stash
        self.on_mount = on_mount
        os.makedirs(stash, exist_ok=True)
        self._mutex = threading.RLock()
        self.files: dict[tuple[int, int], _File] = {}
        self.names: list[tuple[Any, ...]] = []      # name changes since the last sync, oldest first
        self._stashed = 0
        self.dead = False
        self.last_write: tuple[tuple[int, int], int, bytes] | None = None   # (file, offset, data): torn
        self.syncs = 0

    # -- bookkeeping ------------------------------------------------------------------------
    def _p(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def _alive(self) -> None:
        if self.dead:
            raise mfusepy.FuseOSError(errno.EIO)

    def _file(self, fd: int) -> tuple[tuple[int, int], _File]:
        """The file open as ``fd`` (its key, its state; a new state holds its size now as synced)."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        f = self.files.get(key)
        if f is None:
            f = self.files[key] = _File(os.dup(fd), st.st_size)
        return key, f

    def _keep_pages(self, f: _File, start: int, end: int) -> None:
        """Keep the synced content of the pages in [start, end) (only those below the synced size)."""
        end = min(end, f.size0)
        for page in range(start // PAGE, (end + PAGE - 1) // PAGE if end > start else 0):
            if page not in f.pages:
                f.pages[page] = os.pread(f.fd, PAGE, page * PAGE)

    def _commit_names(self) -> None:
        """Any fsync commits the journal: every name change so far is durable; stashes go."""
        for entry in self.names:
            stash = entry[-1] if entry[0] in ("unlink", "rename") else None
            if stash:
                shutil.rmtree(stash, ignore_errors=True) if os.path.isdir(stash) else _unlink(stash)
        self.names.clear()

    def _to_stash(self, path: str) -> str:
        self._stashed += 1
        dest = os.path.join(self.stash, str(self._stashed))
        os.rename(path, dest)
        return dest

    def pending(self) -> dict[str, Any]:
        """What a power loss would drop now."""
        with self._mutex:
            return {"files": len(self.files), "bytes": sum(f.written for f in self.files.values()),
                    "pages": sum(len(f.pages) for f in self.files.values()), "names": len(self.names),
                    "syncs": self.syncs}

    def power_loss(self, torn: bool = False) -> dict[str, Any]:
        """Undo every unsynced change (data, then names, newest first); fail every later operation."""
        with self._mutex:
            report = {**self.pending(), "torn_bytes": 0, "errors": []}
            self.dead = True
            for f in self.files.values():
                try:
                    for page, old in f.pages.items():
                        os.pwrite(f.fd, old, page * PAGE)
                    os.ftruncate(f.fd, f.size0)
                except OSError as e:
                    report["errors"].append(f"data: {e}")
            for entry in reversed(self.names):
                try:
                    _undo_name(self._p, entry)
                except OSError as e:
                    report["errors"].append(f"{entry[0]} {entry[1]}: {e}")
            for parent, _, names in os.walk(self.root):   # orphans: open files whose unlink was durable
                for name in names:
                    if name.startswith(HIDDEN):
                        _unlink(os.path.join(parent, name))
            torn_file = self.files.get(self.last_write[0]) if torn and self.last_write else None
            if torn_file is not None:                  # still unsynced: its first half reached the disk
                _, offset, data = self.last_write
                try:
                    report["torn_bytes"] = os.pwrite(torn_file.fd, data[:len(data) // 2], offset)
                except OSError as e:
                    report["errors"].append(f"torn write: {e}")
            for f in self.files.values():
                os.close(f.fd)
            self.files.clear()
            self.names.clear()
            return report

    # -- file data --------------------------------------------------------------------------
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        self._alive()
        st = os.fstat(fh) if fh is not None else os.lstat(self._p(path))
        out = {k: getattr(st, k) for k in _STAT}
        out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return out

    def open(self, path: str, flags: int) -> int:
        self._alive()
        fd = os.open(self._p(path), os.O_RDWR if os.path.isfile(self._p(path)) else os.O_RDONLY)
        if flags & os.O_TRUNC:
            self.truncate(path, 0, fd)
        return fd

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        with self._mutex:
            self._alive()
            existed = os.path.lexists(self._p(path))
            fd = os.open(self._p(path), os.O_RDWR | os.O_CREAT, mode)
            if not existed:
                self.names.append(("create", path))
            elif flags & os.O_TRUNC:
                self.truncate(path, 0, fd)
            return fd

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        self._alive()
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            self._alive()
            key, f = self._file(fh)
            self._keep_pages(f, offset, offset + len(data))
            n = os.pwrite(fh, data, offset)
            f.written += n
            self.last_write = (key, offset, data)
            return n

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self._mutex:
            self._alive()
            fd = fh if fh is not None else os.open(self._p(path), os.O_RDWR)
            try:
                _, f = self._file(fd)
                size = os.fstat(fd).st_size
                if length < size:
                    self._keep_pages(f, (length // PAGE) * PAGE, size)
                f.written += abs(size - length)
                os.ftruncate(fd, length)
            finally:
                if fh is None:
                    os.close(fd)
            return 0

    def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
        if mode:
            raise mfusepy.FuseOSError(errno.EOPNOTSUPP)   # hole punching and the like: not simulated
        with self._mutex:
            self._alive()
            self._file(fh)                                   # extends at most: undone by the truncate
            os.posix_fallocate(fh, offset, size)
            return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            self._alive()
            st = os.fstat(fh)
            f = self.files.pop((st.st_dev, st.st_ino), None)
            if f is not None:
                os.close(f.fd)
            self._commit_names()
            self.syncs += 1
        (os.fdatasync if datasync else os.fsync)(fh)         # the real disk's cost, outside the lock
        return 0

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        with self._mutex:
            self._alive()
            self._commit_names()
            self.syncs += 1
        os.fsync(fh)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    # -- names ------------------------------------------------------------------------------
    def opendir(self, path: str) -> int:
        self._alive()
        return os.open(self._p(path), os.O_RDONLY | os.O_DIRECTORY)

    def releasedir(self, path: str | None, fh: int) -> int:
        os.close(fh)
        return 0

    def readdir(self, path: str | None, fh: int) -> list[str]:
        """The directory's names, without libfuse's ``.fuse_hidden*`` (files unlinked while open:
        on a real disk an unlinked file has no name, and a program that checks a directory is empty,
        as etcd does for ``wal.tmp``, must not see one)."""
        self._alive()
        return [".", "..", *(n for n in os.listdir(fh) if not n.startswith(HIDDEN))]

    def readlink(self, path: str) -> str:
        return os.readlink(self._p(path))

    def mkdir(self, path: str, mode: int) -> int:
        with self._mutex:
            self._alive()
            os.mkdir(self._p(path), mode)
            self.names.append(("create", path))
            return 0

    def rmdir(self, path: str) -> int:
        with self._mutex:
            self._alive()
            mode = os.lstat(self._p(path)).st_mode & 0o7777
            os.rmdir(self._p(path))
            self.names.append(("rmdir", path, mode))
            return 0

    def unlink(self, path: str) -> int:
        with self._mutex:
            self._alive()
            self.names.append(("unlink", path, self._to_stash(self._p(path))))
            return 0

    def rename(self, old: str, new: str) -> int:
        with self._mutex:
            self._alive()
            dest = self._p(new)
            replaced = self._to_stash(dest) if os.path.lexists(dest) else None
            try:
                os.rename(self._p(old), dest)
            except OSError:
                if replaced:
                    os.rename(replaced, dest)
                raise
            self.names.append(("rename", old, new, replaced))
            return 0

    def link(self, target: str, source: str) -> int:
        with self._mutex:
            self._alive()
            os.link(self._p(source), self._p(target))
            self.names.append(("create", target))
            return 0

    def symlink(self, target: str, source: str) -> int:
        with self._mutex:
            self._alive()
            os.symlink(source, self._p(target))
            self.names.append(("create", target))
            return 0

    # -- attributes (passed through, not undone: no store relies on their durability) ---------
    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> int:
        os.chmod(fh if path is None else self._p(path), mode)
        return 0

    def chown(self, path: str | None, uid: int, gid: int, fh: int | None = None) -> int:
        os.chown(fh, uid, gid) if path is None else os.lchown(self._p(path), uid, gid)
        return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None, fh: int | None = None) -> int:
        target = fh if path is None else self._p(path)
        os.utime(target, ns=times) if times else os.utime(target)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self._p(path))
        return {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                                            "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")}

    def init(self, path: str) -> None:
        """Mounted: tell whoever runs this file system (the daemon starts its control socket)."""
        if self.on_mount is not None:
            self.on_mount(self)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _undo_name(p: Any, entry: tuple[Any, ...]) -> None:
    """Undo one name change (``p`` maps a mount path to the backing path)."""
    kind, path = entry[0], p(entry[1])
    if kind == "create":
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else _unlink(path)
    elif kind == "rmdir":
        os.mkdir(path, entry[2])
    elif kind == "unlink":
        os.rename(entry[2], path)
    elif kind == "rename":
        os.rename(p(entry[2]), path)
        if entry[3]:
            os.rename(entry[3], p(entry[2]))
