"""CI expectations: small assertions on a cell's headline counts.

A campaign (and so a CI fault suite) says what it allows per cell, e.g.
``lost_writes == 0``, ``max_siblings <= 3``, ``rw_violations == 0`` or
``linearizable = "unknown-ok"``; the campaign fails the build when one is
broken. Expectations are parsed up front, so a typo is a one-line
:class:`~harness.errors.UserError` before any cluster starts, not a crash
after twenty minutes of runs.

Names are the headline counts of ``checkers.base.HEADLINE`` plus the derived
``verdict`` and ``session_violations`` (the four session guarantees summed). A count a cell did not measure breaks the expectation:
a checker that crashed must not pass a CI suite silently.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from harness.errors import UserError

#: Headline names an expectation may use (checkers.base.HEADLINE, copied so parsing never imports checkers).
KNOWN_NAMES = frozenset({
    "acked_writes", "lost_writes", "lost_share", "resurrections", "resurrected_deletes", "max_siblings",
    "rw_violations", "mr_violations", "mw_violations", "wfr_violations",
    "stale_read_share", "linearizable", "availability", "p999_latency_ms", "load_ok_ops_per_s",
    "divergent_keys", "under_replicated_keys", "availability_outside_faults",
})
#: Names computed from the headline counts and the run's verdict.
DERIVED = frozenset({"verdict", "session_violations"})
SESSION_NAMES = ("rw_violations", "mr_violations", "mw_violations", "wfr_violations")

#: ``"unknown-ok"``: the three-valued result may be valid or unknown, never invalid.
UNKNOWN_OK = "unknown-ok"

_OPS = ("==", "!=", "<=", ">=", "<", ">", "=")
_EXPR = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|<=|>=|<|>|=)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Expectation:
    """One parsed assertion: ``name op value`` (``=`` is the same as ``==``)."""

    name: str
    op: str
    value: Any
    text: str

    def evaluate(self, metrics: Mapping[str, Any]) -> "Outcome":
        """Check this expectation against one cell's metrics (see :func:`cell_metrics`)."""
        actual = metrics.get(self.name)
        if actual is None:
            return Outcome(self, False, None, f"{self.name} was not measured (no checker reported it, or it crashed)")
        if self.value == UNKNOWN_OK:
            ok = str(actual) in ("valid", "unknown")
            return Outcome(self, ok, actual, "" if ok else f"{self.name} is {actual!r}, expected valid or unknown")
        if isinstance(self.value, str) or isinstance(actual, str):
            if self.op not in ("==", "!="):
                return Outcome(self, False, actual, f"{self.name} is {actual!r}: cannot compare a string with {self.op}")
            ok = (str(actual) == str(self.value)) == (self.op == "==")
        else:
            try:
                a, v = float(actual), float(self.value)
            except (TypeError, ValueError):
                return Outcome(self, False, actual, f"{self.name} is {actual!r}, not a number")
            if math.isnan(a):
                return Outcome(self, False, actual, f"{self.name} is NaN")
            ok = {"==": a == v, "!=": a != v, "<=": a <= v, ">=": a >= v, "<": a < v, ">": a > v}[self.op]
        return Outcome(self, ok, actual, "" if ok else f"{self.name} is {_fmt(actual)}, expected {self.op} {_fmt(self.value)}")

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Outcome:
    """An expectation evaluated on one cell: held or broken, the actual value, and why."""

    expectation: Expectation
    ok: bool
    actual: Any
    message: str

    def to_json(self) -> dict[str, Any]:
        """The outcome as campaign.json, JUnit and the pages read it."""
        return {"expect": self.expectation.text, "ok": self.ok, "actual": self.actual, "message": self.message}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return repr(v) if isinstance(v, str) else str(v)


def _parse_value(raw: str, text: str) -> Any:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("valid", "invalid", "unknown", UNKNOWN_OK):
        return low
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw.rstrip("%")) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UserError(f"expectation {text!r}: value {raw!r} is not a number or a quoted string") from None


def parse_expectation(text: str) -> Expectation:
    """Parse ``name op value``; a bad name or operator is a one-line UserError."""
    if not isinstance(text, str):
        raise UserError(f"expectation {text!r} must be a string like \"lost_writes == 0\"")
    m = _EXPR.match(text)
    if not m:
        raise UserError(f"expectation {text!r} is not of the form 'name op value' (ops: {' '.join(_OPS)})")
    name, op, raw = m.groups()
    if name not in KNOWN_NAMES and name not in DERIVED:
        known = ", ".join(sorted(KNOWN_NAMES | DERIVED))
        raise UserError(f"expectation {text!r}: unknown count {name!r} (known: {known})")
    op = "==" if op == "=" else op
    value = _parse_value(raw, text)
    if value == UNKNOWN_OK and op != "==":
        raise UserError(f"expectation {text!r}: \"unknown-ok\" only goes with = or ==")
    return Expectation(name, op, value, text.strip())


def parse_expectations(texts: Sequence[str] | str | None, where: str = "expect") -> tuple[Expectation, ...]:
    """Parse a list of expectation strings (a single string is one expectation)."""
    if texts is None:
        return ()
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)):
        raise UserError(f"{where} must be a list of strings like [\"lost_writes == 0\"]")
    return tuple(parse_expectation(t) for t in texts)


def cell_metrics(results: Mapping[str, Any] | None) -> dict[str, Any]:
    """The names expectations read, from a run's ``results.json`` object.

    ``summary`` holds the merged headline counts; counts missing there are
    looked up in each checker's own counts; ``session_violations`` is the sum
    of the four session guarantees when any was measured.
    """
    if not results:
        return {}
    out: dict[str, Any] = {}
    for k, v in (results.get("summary") or {}).items():
        out[k] = v
    for res in (results.get("checkers") or {}).values():
        for k, v in ((res or {}).get("counts") or {}).items():
            if k in KNOWN_NAMES:
                out.setdefault(k, v)
    if "verdict" in results:
        out["verdict"] = results["verdict"]
    session = [out[n] for n in SESSION_NAMES if isinstance(out.get(n), (int, float))]
    if session:
        out["session_violations"] = sum(session)
    return out


def evaluate(expectations: Sequence[Expectation], results: Mapping[str, Any] | None) -> list[Outcome]:
    """Evaluate every expectation on one run's results."""
    metrics = cell_metrics(results)
    return [e.evaluate(metrics) for e in expectations]
