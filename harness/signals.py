"""Stopping a run or a campaign on SIGINT, SIGTERM and SIGHUP, whatever the parent did to them.

Why the harness installs its own handlers: Python turns only SIGINT into
KeyboardInterrupt, and only when SIGINT was not ignored at start. A job put
in the background by a script (``cmd &`` in a non-interactive shell) inherits
SIGINT ignored, so a SIGTERM handler that re-raised SIGINT stopped nothing,
and SIGHUP (terminal closed, SSH dropped) killed the harness without any
cleanup, leaving iptables rules behind. Inside :func:`stop_on_signals` each
of the three signals raises :class:`Interrupted` (a KeyboardInterrupt, so
every Ctrl-C path serves: faults healed, cluster torn down, history kept).
SIGINT and SIGTERM get the handler even when inherited ignored: a harness run
must be stoppable. A SIGHUP ignored at start stays ignored: that is ``nohup``
asking the run to outlive its terminal (SIGTERM and SIGINT still stop it).

The first signal raises; later ones are ignored while that interrupt
unwinds, and :func:`shielded` code (the cleanup) is never interrupted, so a
second Ctrl-C or a supervisor's repeated SIGTERM cannot stop a heal half-way.
A signal that arrives in shielded code when nothing is stopping yet (say,
while a finished run tears down) is kept: :func:`raise_pending` raises it
where stopping is safe. Should the first raise be swallowed (a library
catching BaseException), a signal more than ``REARM`` seconds later raises
again.

Inside an event loop, raising at an arbitrary point is not safe: the
exception can surface in a callback or a half-stepped task, the loop stops
before the cancelled tasks unwind, and clients are left unclosed. So, as
``asyncio.Runner`` does for Ctrl-C, :func:`run_async` makes the first signal
cancel the main task instead; every coroutine unwinds through its own
``finally``, and Interrupted is raised once the loop is done.

Signal dispositions belong to the process, hence the module-level state; only
the main thread can hold them (elsewhere both context managers do nothing).
Every interrupt exits 130 (``INTERRUPTED_EXIT``), the signal is named on stderr
and in ``results.json``.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Coroutine, Iterator, TypeVar

T = TypeVar("T")

#: The signals that stop a run or a campaign.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Exit code of an interrupted run or campaign, whichever of STOP_SIGNALS stopped it.
INTERRUPTED_EXIT = 130
#: Seconds after a raise during which further signals are only remembered.
REARM = 10.0


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def signal_name(exc: BaseException) -> str:
    """``SIGTERM`` for an Interrupted, ``SIGINT`` for a plain KeyboardInterrupt (Ctrl-C)."""
    return exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"


class _State:
    """What the process's handlers share: inside stop_on_signals, shield depth, when the last raise was."""

    def __init__(self) -> None:
        self.reset(active=False)

    def reset(self, active: bool) -> None:
        self.active = active
        self.shield_depth = 0
        self.raised_at: float | None = None
        self.pending: int | None = None     # a signal kept by shielded code, for raise_pending
        self.stop_loop: Callable[[], None] | None = None   # run_async's: cancel its main task
        self.loop_stopped_by: int | None = None


_state = _State()


def _handler(signum: int, frame: Any) -> None:
    if signum == signal.SIGHUP:
        _leave_hung_up_terminal()
    stopping = _state.raised_at is not None
    if _state.shield_depth:
        if not stopping:
            _state.pending = _state.pending or signum
        return
    if stopping and time.monotonic() - _state.raised_at < REARM:  # type: ignore[operator]
        return
    if _state.stop_loop is not None and not stopping:
        _state.raised_at, _state.loop_stopped_by = time.monotonic(), signum
        _state.stop_loop()
        return
    _raise(signum)


def _raise(signum: int) -> None:
    _state.raised_at = time.monotonic()
    raise Interrupted(signum)


def raise_pending() -> None:
    """Raise :class:`Interrupted` now if a stop signal arrived during shielded code (see above)."""
    if _state.pending is not None:
        signum, _state.pending = _state.pending, None
        _raise(signum)


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, except that inside :func:`stop_on_signals` a stop signal cancels
    ``main`` and, once the loop has unwound, raises :class:`Interrupted` (see the module docstring)."""
    if not _state.active or threading.current_thread() is not threading.main_thread():
        return asyncio.run(main)
    with asyncio.Runner() as runner:   # ours is the SIGINT handler, so the Runner does not install its own
        loop = runner.get_loop()
        task = loop.create_task(main)

        def stop() -> None:
            task.cancel()
            loop.call_soon_threadsafe(lambda: None)   # wake a select() waiting on a long timeout

        _state.stop_loop, _state.loop_stopped_by = stop, None
        try:
            result = loop.run_until_complete(task)
        except asyncio.CancelledError:
            if _state.loop_stopped_by is None:
                raise
            result = None   # type: ignore[assignment]
        finally:
            _state.stop_loop = None
    if _state.loop_stopped_by is not None:   # also when the cancellation was swallowed and main finished
        signum, _state.loop_stopped_by = _state.loop_stopped_by, None
        raise Interrupted(signum)
    return result


def _leave_hung_up_terminal() -> None:
    """After a hangup, writes to the terminal fail (EIO): send stdout/stderr to /dev/null so the
    cleanup's messages cannot break the cleanup. Files and pipes are kept (``nohup.out``, logs)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and stream.isatty():
                stream.flush()
                os.dup2(null, stream.fileno())
        except (OSError, ValueError):
            pass
    os.close(null)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGINT/SIGTERM/SIGHUP raise :class:`Interrupted` (see the module docstring).

    Nested use is a no-op; the outermost exit restores the dispositions found on entry."""
    if _state.active or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    for s in STOP_SIGNALS:
        current = signal.getsignal(s)
        if s == signal.SIGHUP and current == signal.SIG_IGN:
            continue  # nohup: the run was asked to outlive its terminal
        old[s] = signal.signal(s, _handler)
    _state.reset(active=True)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)   # None: a handler set outside Python
        _state.reset(active=False)


@contextmanager
def shielded() -> Iterator[None]:
    """Stop signals arriving inside are not raised: cleanup must run to its end (kept for
    :func:`raise_pending` when nothing was stopping yet, else ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.shield_depth += 1
    try:
        yield
    finally:
        _state.shield_depth -= 1



def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send this process SIGTERM when ``parent_pid`` (the process, or rather the
    thread, that started it) dies, and stop now if it already has.

    Why: a campaign cell run by a Dask worker is a session of its own (so a time limit can stop it
    alone), so nothing else ends it when its worker is killed; with this it heals and tears down
    on its own (SIGTERM is a stop signal above) instead of running on unsupervised. Linux only:
    elsewhere this does nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:   # the parent died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)
