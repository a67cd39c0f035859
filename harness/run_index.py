"""The stored runs as rows: what ``dynharness ls`` lists and ``dynharness serve`` indexes.

One :class:`RunSummary` per run folder (``<histories>/<test>/<time>/`` with a ``history.jsonl``),
read from its ``spec.json`` (workload, store and versioning mode, N/R/W, faults) and
``results.json`` (verdict, headline counts), and :class:`RunFilter`, the filters both offer
(``ls --workload cart --verdict invalid``; the served index does the same in the page).
"""
from __future__ import annotations

import calendar
import fnmatch
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.errors import UserError
from harness.limits import json_loads
from harness.runs import HISTORY, RESULTS, SPEC

#: Every verdict a listed run can have: a checked run's, ``failed`` (its run stopped on an error)
#: and ``incomplete`` (no results.json yet: still running, or its harness was killed).
VERDICTS = ("valid", "invalid", "unknown", "failed", "incomplete")
#: ``--nemesis none``: the runs without any fault.
NO_FAULTS = "none"
_STAMP = re.compile(r"(\d{8}T\d{6})(?:-\d+)?")
_AGO = re.compile(r"(\d{1,6})([mhd])")
_INVOKE = re.compile(rb'"type"\s*:\s*"invoke"')
_DATES = ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class RunSummary:
    """One stored run as ``ls`` and the served index show it."""

    path: Path
    test: str                      # the run's name (its folder under histories/)
    started: str                   # its folder: YYYYmmddTHHMMSS (UTC), suffixed -2.. when two shared a second
    verdict: str                   # one of VERDICTS
    workload: str
    ops: int | None                # operations invoked (client and nemesis): the history's invoke lines
    summary: Mapping[str, Any]     # results.json's headline counts
    store: str = "?"               # the versioning mode of the reference store (vclock, dvv, lww), else the target kind
    nrw: str = ""                  # "3/2/2" when the target has N, R and W
    faults: tuple[str, ...] = ()

    @property
    def when(self) -> float | None:
        """When the run started (epoch seconds, UTC), from its folder name; None if it is not a timestamp."""
        m = _STAMP.fullmatch(self.started)
        if not m:
            return None
        return float(calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%S")))

    @property
    def faults_text(self) -> str:
        return ", ".join(self.faults) if self.faults else NO_FAULTS


def list_runs(root: Path, count_ops: bool = True) -> list[RunSummary]:
    """Every stored run under root, oldest first (folders without a history are skipped).
    ``count_ops=False`` leaves ``ops`` None rather than read every history (the served index)."""
    out: list[RunSummary] = []
    if not root.is_dir():
        return out
    for test_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name != "campaigns"):
        for run in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            if (run / HISTORY).exists():
                out.append(summarize(test_dir.name, run, count_ops))
    out.sort(key=lambda r: (r.started, r.test))
    return out


def _json(path: Path) -> dict[str, Any]:
    try:
        obj = json_loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return obj if isinstance(obj, dict) else {}


def summarize(test: str, run: Path, count_ops: bool = True) -> RunSummary:
    """The row of one run folder (whatever its files lack shows as ``?`` or empty, never an error)."""
    res = _json(run / RESULTS)
    verdict = str(res.get("verdict", "unknown")) if res else "incomplete"
    if res.get("run_error"):
        verdict = "failed"
    summary = res.get("summary") if isinstance(res.get("summary"), dict) else {}
    spec = _json(run / SPEC)
    workload = spec.get("workload") if isinstance(spec.get("workload"), dict) else {}
    target = spec.get("target") if isinstance(spec.get("target"), dict) else {}
    nemesis = spec.get("nemesis") if isinstance(spec.get("nemesis"), dict) else {}
    kind = str(target.get("kind") or ("dynamo" if target else "?"))
    store = str(target.get("mode") or kind)
    nrw = "/".join(str(target[k]) for k in ("n", "r", "w")) if all(k in target for k in ("n", "r", "w")) else ""
    faults = nemesis.get("faults") if isinstance(nemesis.get("faults"), list) else []
    ops: int | None = None
    try:
        if count_ops:
            with open(run / HISTORY, "rb") as fh:      # an op is its invoke line (+ its completion)
                ops = sum(1 for line in fh if _INVOKE.search(line))
    except OSError:
        pass
    return RunSummary(run, test, run.name, verdict, str(workload.get("name", "?")), ops, summary, store, nrw,
                      tuple(str(f) for f in faults))


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a UTC date (``2026-01-31``, ``2026-01-31T12:00[:00]``) or an age (``30m``, ``2h``, ``7d``),
    as epoch seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    m = _AGO.fullmatch(text)
    if m:
        return now - int(m.group(1)) * {"m": 60, "h": 3600, "d": 86400}[m.group(2)]
    for fmt in _DATES:
        try:
            return float(calendar.timegm(time.strptime(text.rstrip("Z"), fmt)))
        except ValueError:
            continue
    raise UserError(f"--since takes a UTC date like 2026-01-31 or 2026-01-31T12:00, or an age like 30m, 2h, 7d; "
                    f"got {text!r}")


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list; every field left empty matches every run."""

    name: str | None = None               # a glob on the run's name (``cart-*``)
    workload: str | None = None
    fault: str | None = None              # runs whose faults include it; NO_FAULTS: runs without any
    verdicts: frozenset[str] = frozenset()
    since: float | None = None            # epoch seconds

    def matches(self, r: RunSummary) -> bool:
        if self.name is not None and not fnmatch.fnmatchcase(r.test, self.name):
            return False
        if self.workload is not None and r.workload != self.workload:
            return False
        if self.fault is not None and (self.fault not in r.faults if self.fault != NO_FAULTS else bool(r.faults)):
            return False
        if self.verdicts and r.verdict not in self.verdicts:
            return False
        when = r.when
        return self.since is None or (when is not None and when >= self.since)


def build_filter(name: str | None = None, workload: str | None = None, fault: str | None = None,
                 verdicts: str | None = None, since: str | None = None,
                 known_workloads: Iterable[str] = (), known_faults: Iterable[str] = ()) -> RunFilter:
    """A RunFilter from command-line values, each checked (UserError in one line naming what it takes)."""
    def known(flag: str, value: str, options: Iterable[str]) -> str:
        options = sorted(set(options))
        if value not in options:
            raise UserError(f"{flag} takes one of {', '.join(options)}; got {value!r}")
        return value

    picked: set[str] = set()
    for v in (verdicts or "").split(",") if verdicts is not None else ():
        picked.add(known("--verdict", v.strip(), VERDICTS))
    return RunFilter(name=name, workload=known("--workload", workload, known_workloads) if workload is not None else None,
                     fault=known("--nemesis", fault, [*known_faults, NO_FAULTS]) if fault is not None else None,
                     verdicts=frozenset(picked), since=parse_since(since) if since is not None else None)
