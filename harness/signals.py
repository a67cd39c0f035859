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

Signal dispositions belong to the process, hence the module-level state; only
the main thread can hold them (elsewhere both context managers do nothing).
Every interrupt exits 130 (``INTERRUPTED_EXIT``), the signal is named on stderr
and in ``results.json``.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

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
    _raise(signum)


def _raise(signum: int) -> None:
    _state.raised_at = time.monotonic()
    raise Interrupted(signum)


def raise_pending() -> None:
    """Raise :class:`Interrupted` now if a stop signal arrived during shielded code (see above)."""
    if _state.pending is not None:
        signum, _state.pending = _state.pending, None
        _raise(signum)


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

