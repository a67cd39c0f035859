"""The ``[checkers]`` table of a test spec: which options exist and which values are refused.

The harness knows no checker's options: each registered checker class declares the options it
reads (``options``) and may refuse a value (``check_options(options) -> one line or None``; perf
keeps its availability thresholds in [0, 1]). Asking the registered checkers here, when the spec
is read, turns a typo or an impossible threshold into one line and exit 3 before anything starts,
instead of a run that is judged against nonsense half an hour later.
"""
from __future__ import annotations

from typing import Any, Mapping

from harness import plugins
from harness.errors import UserError
from harness.limits import MAX_SECONDS, number

#: [checkers] options every checker may read; each checker class adds its own (its ``options``).
CHECKER_OPTIONS = ("time_limit",)


def _checker_classes() -> list[Any]:
    """Every registered checker that can be loaded (an unloadable one declares nothing; running it
    says why: unknown)."""
    out = []
    for name in plugins.names("checkers"):
        try:
            out.append(plugins.load("checkers", name, "checker"))
        except UserError:
            continue
    return out


def checker_options() -> tuple[str, ...]:
    """Every known [checkers] option name: the common ones plus what each registered checker declares."""
    out = dict.fromkeys(CHECKER_OPTIONS)
    for cls in _checker_classes():
        out.update(dict.fromkeys(getattr(cls, "options", ())))
    return tuple(out)


def checker_table_error(options: Mapping[str, Any]) -> str | None:
    """What is wrong with a spec's ``[checkers]`` table, in one line (None: nothing): an unknown
    option, a bad ``time_limit``, or a value a checker's ``check_options`` refuses."""
    known = checker_options()
    unknown = sorted(set(options) - set(known))
    if unknown:
        return f"unknown [checkers] option {unknown[0]!r} (known: {', '.join(known)})"
    if options.get("time_limit") is not None:
        try:
            number("checkers.time_limit", options["time_limit"], 0, MAX_SECONDS, lo_open=True)
        except UserError as e:
            return str(e)
    for cls in _checker_classes():
        check = getattr(cls, "check_options", None)
        error = check(options) if check is not None else None
        if error:
            return str(error)
    return None
