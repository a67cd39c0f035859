"""Limits of user input: every number finite and bounded, every parsed file shallow enough.

Why one module: a bound written in two places drifts, and an unbounded number is not
a harmless typo here. NaN compares false with everything, so ``nan <= 0`` let
``--duration nan`` through a "must be positive" check and the run never ended;
``1e309`` parses as inf; an integer has no upper limit at all, and
``--concurrency 100000000`` started one asyncio task per worker and took 12 GB before a
signal could be handled. So each kind of number has one bound here, with the reason
beside it, and one check (:func:`number`) that spec fields (``harness.spec``), nemesis
settings (``nemeses.schedule``), campaign files and the CLI-only flags all go through.
The bounds are generous for real tests and finite; ``docs/harness.md`` lists them.

Deep nesting is the other unbounded input: a history line of 100,000 ``[`` makes
Python's decoders raise RecursionError, which no reader expected. :func:`json_loads`
and :func:`toml_loads` turn it (and an integer too long to convert) into the format's
own decode error, so every reader that already names its file and line in one
:class:`~harness.errors.UserError` line does so for these too.
"""
from __future__ import annotations

import json
import math
import tomllib
from typing import Any

from harness.errors import UserError

#: Nodes of one cluster: each is a process or a container with its own port(s) and log, and
#: the partition topologies, the ring and the report's per-node columns are made for tens.
MAX_NODES = 200
#: Client workers: one asyncio task each in one event loop, each with requests in flight;
#: past ~1000 the loop (and the usual 1024 open files) is the bottleneck, not the store.
MAX_CONCURRENCY = 1024
#: Ops per second over all workers: one Python event loop issues a few thousand at most, so
#: a larger rate only means "as fast as it can", which 100,000 already says.
MAX_RATE = 100_000.0
#: Seconds of any duration, timeout or time limit: a week covers soak tests; more is a typo
#: (and inf/NaN would mean a run that never ends).
MAX_SECONDS = 7 * 86400.0
#: Keys of a workload: the final reads read every key (a session workload has ``keys`` per
#: worker), so the product is bounded too: a million reads already take minutes.
MAX_KEYS = 100_000
MAX_FINAL_READS = 1_000_000
#: A workload op weight or zipf exponent beyond these says nothing a smaller one does not
#: (1/(i+1)^s underflows to 0 for every key but the first long before s = 100).
MAX_WEIGHT = 1e6
MAX_ZIPF_S = 100.0
#: Seeds are 64-bit: what a TOML integer holds, so a spec.json always reloads.
SEED_RANGE = (-(2**63), 2**63 - 1)
#: A nemesis schedule is built (and stored) whole before the run: 100,000 fault changes take
#: about a second to plan. A partition op also records its grudge, one entry per pair of
#: nodes, so partitions are bounded by changes x nodes^2 too (200 nodes: 625 changes).
MAX_FAULT_CHANGES = 100_000
MAX_PARTITION_PAIRS = 25_000_000
#: Campaigns: each cell is a whole run; 1000 repeats or 10,000 cells is days of machine time.
MAX_REPEATS = 1000
MAX_CELLS = 10_000
#: A test name is a folder name (campaign cells: ``<campaign>.<cell>``); file systems stop at 255 bytes.
MAX_NAME = 200
#: TCP ports (0: the system picks a free one).
MAX_PORT = 65535
#: Rows a listing shows (``ls --last``): anything larger is "all of them".
MAX_LISTED = 1_000_000


def _show(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def number(name: str, v: Any, lo: float, hi: float, *, lo_open: bool = False, integer: bool = False) -> Any:
    """``v`` if it is a finite number with ``lo <= v <= hi`` (``lo < v`` with ``lo_open``), else a
    one-line UserError naming ``name``. ``integer``: only an int will do. Returns an int for
    ``integer``, else a float (a huge int is compared exactly, never converted first)."""
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
        raise UserError(f"{name} must be {'an integer' if integer else 'a number'}, got {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise UserError(f"{name} must be a finite number, got {v!r}")
    if v < lo or v > hi or (lo_open and v == lo):
        low = "positive" if lo_open and lo == 0 else f"more than {_show(lo)}" if lo_open else f"at least {_show(lo)}"
        raise UserError(f"{name} must be {low} and at most {_show(hi)}, got {_show(v)}")
    return int(v) if integer else float(v)


def seconds(name: str, v: Any, *, lo: float = 0.0, lo_open: bool = True) -> float:
    """A duration, timeout or time limit: positive (or ``>= lo``) and at most :data:`MAX_SECONDS`."""
    return number(name, v, lo, MAX_SECONDS, lo_open=lo_open)


#: Units a duration given as text may carry (``90``, ``90s``, ``10m``, ``1.5h``).
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds_text(name: str, text: str) -> float:
    """A duration flag as text: a number of seconds, or with a unit ``s``, ``m`` or ``h``."""
    t = text.strip().lower()
    unit = t[-1] if t[-1:] in ("s", "m", "h") else ""
    try:
        value = float(t[:-1] if unit else t) * _UNITS[unit]
    except ValueError:
        raise UserError(f"{name} must be seconds or a duration such as 90s, 10m or 1h, got {text!r}") from None
    return seconds(name, value)


def _too_deep(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply to read"
    return str(e)  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"


def json_loads(text: str | bytes) -> Any:
    """``json.loads`` whose every failure is a ``json.JSONDecodeError`` (a ValueError), including
    nesting deeper than the stack and integers too long to convert."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except (RecursionError, ValueError) as e:
        doc = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        raise json.JSONDecodeError(_too_deep(e), doc, 0) from None


def toml_loads(text: str) -> dict[str, Any]:
    """``tomllib.loads`` whose every failure is a ``tomllib.TOMLDecodeError`` (see :func:`json_loads`)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise
    except (RecursionError, ValueError) as e:
        raise tomllib.TOMLDecodeError(_too_deep(e)) from None
