"""The checker plug point: a history in, a three-valued verdict out.

Every checker returns a :class:`Result`: a verdict (valid / invalid /
unknown), headline counts (the names in ``HEADLINE`` are what campaigns,
expectations and reports read), the anomalies with the op indexes that prove
each one, and free-form details (curves, tables) for reports.

:func:`compose` runs several checkers as one: verdicts merge as
invalid > unknown > valid, and a checker that raises becomes ``unknown`` with
the reason instead of crashing the analysis (Jepsen's ``compose``).
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from harness.history import History


class Verdict(str, Enum):
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"

    @staticmethod
    def merge(verdicts: Sequence["Verdict"]) -> "Verdict":
        """invalid beats unknown beats valid; no verdicts at all is unknown."""
        if not verdicts:
            return Verdict.UNKNOWN
        if Verdict.INVALID in verdicts:
            return Verdict.INVALID
        if Verdict.UNKNOWN in verdicts:
            return Verdict.UNKNOWN
        return Verdict.VALID


#: Headline count names shared by checkers, campaign summaries and CI expectations.
HEADLINE = (
    "acked_writes",        # lost-writes: acknowledged adds
    "lost_writes",         # acknowledged adds missing from the final read
    "lost_share",          # lost_writes / acked_writes
    "resurrections",       # acknowledged removes whose item is back in the final read
    "resurrected_deletes",  # items of a real delete back in the final read with nothing to write them back
    "max_siblings",        # largest sibling count any read saw
    "rw_violations",       # read-your-writes
    "mr_violations",       # monotonic reads
    "mw_violations",       # monotonic writes
    "wfr_violations",      # writes-follow-reads
    "stale_read_share",    # share of reads that missed an acknowledged write (PBS)
    "linearizable",        # "valid" / "invalid" / "unknown" (string)
    "availability",        # share of client ops that completed ok
    "availability_outside_faults",  # perf: the same share among ops clear of every fault window and its grace
    "p999_latency_ms",     # 99.9th percentile latency of ok ops
    "load_ok_ops_per_s",   # perf: ok client ops per second over the load phase (final reads left out)
    "divergent_keys",      # convergence: keys whose replicas hold different versions after settle
    "under_replicated_keys",  # convergence: keys a replica of their preference list lacks after settle
)


@dataclass(frozen=True)
class Anomaly:
    """One thing that went wrong, with the ops (by index) that prove it."""

    kind: str
    description: str
    ops: tuple[int, ...] = ()
    key: str | None = None
    time: int | None = None  # ns since start, where one moment is meaningful

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description, "ops": list(self.ops),
                "key": self.key, "time": self.time}


@dataclass(frozen=True)
class Result:
    """What one checker concluded."""

    checker: str
    verdict: Verdict
    counts: Mapping[str, Any] = field(default_factory=dict)
    anomalies: tuple[Anomaly, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None  # why unknown / invalid, in one line
    seconds: float | None = None  # time the check took

    def to_json(self) -> dict[str, Any]:
        return {"checker": self.checker, "verdict": self.verdict.value, "counts": dict(self.counts),
                "anomalies": [a.to_json() for a in self.anomalies], "details": dict(self.details),
                "reason": self.reason, "seconds": self.seconds}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> "Result":
        return Result(
            checker=obj["checker"], verdict=Verdict(obj["verdict"]), counts=dict(obj.get("counts", {})),
            anomalies=tuple(Anomaly(a["kind"], a["description"], tuple(a.get("ops", ())), a.get("key"), a.get("time"))
                            for a in obj.get("anomalies", ())),
            details=dict(obj.get("details", {})), reason=obj.get("reason"), seconds=obj.get("seconds"))


@dataclass(frozen=True)
class CheckContext:
    """What a checker may know about the run besides the history.

    ``settings`` holds the target's resolved settings (n, r, w, mode, ...);
    ``options`` holds checker options from the spec (thresholds, whether
    resurrections count as invalid, time limits). ``replicas`` is what the run
    stored beside its history for checkers that judge the store's replicas.
    """

    settings: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    time_limit: float | None = None  # seconds a single checker may take before answering unknown
    #: every replica's own copy of the final keys after settle (the run folder's ``replicas.json``,
    #: see ``checkers.convergence``); None when the run has none
    replicas: Mapping[str, Any] | None = None


@runtime_checkable
class Checker(Protocol):
    """A plug point: read a history, return a Result. Must never mutate the history.

    A checker whose verdict rests on the final reads (the reads after heal and recovery) sets
    the class attribute ``needs_final_reads = True``: on a harness run cut short before them it
    is not run, and answers unknown with the reason (``harness.runs.cut_short``).
    """

    name: str

    def check(self, history: History, ctx: CheckContext) -> Result: ...


@dataclass(frozen=True)
class Composed:
    """Several checkers as one (see :func:`compose`)."""

    checkers: tuple[Checker, ...]
    name: str = "composed"

    def check_all(self, history: History, ctx: CheckContext) -> dict[str, Result]:
        """Each checker's result by name; a checker that raises gives unknown with the reason."""
        out: dict[str, Result] = {}
        for c in self.checkers:
            t0 = time.monotonic()
            try:
                r = c.check(history, ctx)
                if r.seconds is None:
                    r = Result(r.checker, r.verdict, r.counts, r.anomalies, r.details, r.reason,
                               time.monotonic() - t0)
            except Exception as e:  # a broken checker must not take the analysis down
                last = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
                where = f" at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}" if last else ""
                r = Result(c.name, Verdict.UNKNOWN, reason=f"checker crashed: {type(e).__name__}: {e}{where}",
                           seconds=time.monotonic() - t0)
            out[c.name] = r
        return out

    def check(self, history: History, ctx: CheckContext) -> Result:
        results = self.check_all(history, ctx)
        return merge_results(results, name=self.name)


def compose(*checkers: Checker) -> Composed:
    """Run checkers together; verdicts merge invalid > unknown > valid."""
    return Composed(tuple(checkers))


def merge_results(results: Mapping[str, Result], name: str = "composed") -> Result:
    """One Result from many: merged verdict, union of headline counts, all anomalies."""
    verdict = Verdict.merge([r.verdict for r in results.values()])
    counts: dict[str, Any] = {}
    for r in results.values():
        for k, v in r.counts.items():
            if k in HEADLINE:
                counts.setdefault(k, v)
    anomalies = tuple(a for r in results.values() for a in r.anomalies)
    reasons = [f"{n}: {r.reason}" for n, r in results.items() if r.reason and r.verdict != Verdict.VALID]
    return Result(name, verdict, counts, anomalies, {}, "; ".join(reasons) or None)
