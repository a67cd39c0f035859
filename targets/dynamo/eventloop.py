"""The node's event loop: uvloop, or an asyncio loop whose clock libfaketime cannot move.

uvloop (libuv) is the default: it takes about a quarter off a node's CPU per operation
(``benchmarks/RESULTS.md``, "Store"). But libuv's timers run on ``CLOCK_MONOTONIC``, which
libfaketime fakes, so in a process that has libfaketime loaded (the harness's clock
nemesis starts nodes that way) :func:`new_loop` picks :class:`UptimeEventLoop` instead.

libfaketime shifts every clock a process can ask for (``time.time()``,
``time.monotonic()``, ``CLOCK_MONOTONIC_RAW``, ``CLOCK_BOOTTIME``): a node
started with ``-5m`` would see ``loop.time()`` jump back five minutes and every
timer (gossip, anti-entropy, request timeouts) would
stall for five minutes. ``/proc/uptime`` is read with plain ``pread`` and is not
faked, so :class:`UptimeClock` anchors on it: it uses ``time.monotonic()`` for
resolution between anchors and re-anchors on ``/proc/uptime`` (10 ms
resolution) whenever the two disagree by more than a tolerance, i.e. whenever
the faked clock jumped. The result never goes backwards.

Wall-clock timestamps (LWW, tombstones, clock pruning) still come from
``time.time()`` on purpose: that is the clock the harness skews.
"""
from __future__ import annotations

import asyncio
import os
import time

_UPTIME = "/proc/uptime"
#: How far monotonic-based time may drift from /proc/uptime before re-anchoring.
_TOLERANCE = 0.05


class UptimeClock:
    """A monotonic seconds counter immune to libfaketime (falls back to time.monotonic).

    ``/proc/uptime`` is only read when ``time.monotonic()`` moved backwards or more than
    ``_TOLERANCE`` since the last check: a busy loop asking many times per millisecond pays
    for one ``pread`` per 50 ms, and any jump of the faked clock (either way) is caught at once.
    """

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open(_UPTIME, os.O_RDONLY)
        except OSError:
            self._fd = None
        self._anchor_up = self._uptime()
        self._anchor_mono = self._checked_mono = time.monotonic()
        self._last = self._anchor_up

    def _uptime(self) -> float:
        if self._fd is None:
            return time.monotonic()
        return float(os.pread(self._fd, 64, 0).split(b" ", 1)[0])

    def now(self) -> float:
        """Seconds since boot (unfaked), with sub-millisecond resolution while the fake clock is steady."""
        mono = time.monotonic()
        estimate = self._anchor_up + (mono - self._anchor_mono)
        if self._fd is not None and not 0 <= mono - self._checked_mono <= _TOLERANCE:
            self._checked_mono = mono
            up = self._uptime()
            if abs(estimate - up) > _TOLERANCE:
                self._anchor_up, self._anchor_mono = up, mono
                estimate = up
        estimate = max(estimate, self._last)
        self._last = estimate
        return estimate


CLOCK = UptimeClock()


class UptimeEventLoop(asyncio.SelectorEventLoop):
    """A selector loop whose ``time()`` is :data:`CLOCK` (timers survive wall/monotonic jumps)."""

    def __init__(self) -> None:
        super().__init__()
        # Re-anchoring can land up to 10 ms early/late: treat timers due within it as ready
        # so a coarse step never makes the loop spin.
        self._clock_resolution = max(self._clock_resolution, 0.001)

    def time(self) -> float:
        return CLOCK.now()


async def wait_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` on the loop clock unless ``stopping`` is set first; True when stopping."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
        return True
    except TimeoutError:
        return stopping.is_set()


def clock_is_faked() -> bool:
    """True when libfaketime is loaded into this process (by LD_PRELOAD or /etc/ld.so.preload)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return "libfaketime" in maps.read()
    except OSError:
        return "faketime" in os.environ.get("LD_PRELOAD", "")


def new_loop(kind: str = "auto") -> tuple[asyncio.AbstractEventLoop, str]:
    """A fresh loop and its name: ``uvloop``, or ``asyncio-uptime`` under libfaketime.

    ``kind`` ``auto`` picks uvloop unless the clock is faked (or uvloop is missing);
    ``asyncio`` forces :class:`UptimeEventLoop`; ``uvloop`` forces uvloop (its timers then
    follow libfaketime: for experiments only)."""
    if kind == "uvloop" or (kind == "auto" and not clock_is_faked()):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop(), "uvloop"
    return UptimeEventLoop(), "asyncio-uptime"


#: Name of the loop :func:`run` started (shown by ``/admin/stats``).
LOOP_KIND = "none"


def run(main_coro, kind: str = "auto") -> object:
    """Run ``main_coro`` to completion on a fresh :func:`new_loop` (the node's entry point)."""
    global LOOP_KIND
    loop, LOOP_KIND = new_loop(kind)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main_coro)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
