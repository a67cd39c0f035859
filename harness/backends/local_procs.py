"""The processes the local backend starts (nodes, lazy disk daemons) and how it ends them.

Why apart: the rules are the same for every process the backend owns, and each is subtle. A
process runs in a session of its own (one signal reaches its whole group). Unless the cluster
is to be left running, it gets ``PR_SET_PDEATHSIG = SIGKILL``, so a harness killed with
``kill -9`` takes it along; the kernel sends that signal when the *thread* that forked it
exits, so every such process is forked from one long-lived spawner thread. A pid is checked
against ``/proc`` before it is trusted (a zombie is not alive; a reused pid is not ours).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

_PR_SET_PDEATHSIG = 1


def _set_pdeathsig(sig: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def runs_with_arg(pid: int, arg: str) -> bool:
    """Whether ``pid``'s command line has ``arg`` (its data dir: still *our* process, not a reused pid)."""
    try:
        return arg.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


class Spawner:
    """Starts processes by the rules above; ``outlive`` (a cluster left running): no PDEATHSIG."""

    def __init__(self, outlive: bool = False) -> None:
        self.outlive = outlive
        self._thread: ThreadPoolExecutor | None = None

    def launch(self, argv: list[str], log_path: Path, env: dict[str, str],
               in_child: Callable[[], None] | None = None,
               death_signal: int = signal.SIGKILL) -> subprocess.Popen[bytes]:
        """Start argv with stdout and stderr appended to ``log_path``; ``in_child`` runs before exec.
        ``death_signal``: what the process gets when the harness dies (a lazy disk daemon: SIGTERM,
        on which it unmounts itself before it exits)."""
        log = open(log_path, "ab")

        def prepare() -> None:
            if in_child is not None:
                in_child()
            if not self.outlive:
                _set_pdeathsig(death_signal)

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=prepare)

        try:
            if self.outlive:
                return popen()
            if self._thread is None:
                self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-spawner")
            return self._thread.submit(popen).result()
        finally:
            log.close()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None


def kill_group(pid: int, proc: subprocess.Popen[bytes] | None, wait: float = 5.0) -> None:
    """SIGCONT (a paused process dies too) then SIGKILL to the group; reap or wait for it to go."""
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + wait
    if proc is not None:
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
