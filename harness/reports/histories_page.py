"""The front page ``dynharness serve`` shows at ``/``: every campaign and run under histories/, filterable.

Each run row carries what the page filters on (name, workload, verdict, faults, date) as
``data-`` attributes; ``assets/histories.js`` hides the rows that do not match, and keeps the
filters in the address (``/?workload=cart&verdict=invalid``), so a filtered view can be
bookmarked or shared. Each run links to its report, its node logs (shown as text) and its
folder; each campaign to its ``index.html``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from harness.limits import json_loads
from harness.run_index import NO_FAULTS, VERDICTS, RunSummary, list_runs

#: At most this many campaigns and runs (the newest) are listed; the page says when more exist.
LIMIT = 5000


def _stamp_text(stamp: str) -> tuple[str, str]:
    """(shown time, ISO date for the filter) of a run folder name like 20260101T120000(-2)."""
    s = stamp.split("-")[0]
    if len(s) != 15 or s[8] != "T" or not (s[:8] + s[9:]).isdigit():
        return stamp, ""
    day = f"{s[:4]}-{s[4:6]}-{s[6:8]}"
    return f"{day} {s[9:11]}:{s[11:13]}:{s[13:15]}", day


def _campaign(f: Path, root: Path) -> dict[str, Any]:
    try:
        obj = json_loads(f.read_text())
        cells = obj.get("cells", {})
        broken = sum(1 for c in cells.values() for e in c.get("expectations", []) if not e.get("ok"))
        done = sum(1 for c in cells.values() if c.get("state") == "done")
    except (OSError, ValueError, AttributeError):
        cells, broken, done = {}, 0, 0
    shown, day = _stamp_text(f.parent.name)
    return {"href": os.path.relpath(f.parent / "index.html", root), "name": f.parent.parent.name, "ts": shown,
            "day": day, "cells": len(cells), "done": done, "broken": broken}


def _run(r: RunSummary, root: Path) -> dict[str, Any]:
    shown, day = _stamp_text(r.started)
    nodes = r.path / "nodes"
    logs = sorted(p.name for p in nodes.glob("*.log")) if nodes.is_dir() else []
    here = os.path.relpath(r.path, root)
    return {"href": f"{here}/report.html", "folder": f"{here}/", "test": r.test, "ts": shown, "day": day,
            "workload": r.workload, "store": r.store, "nrw": r.nrw, "faults": list(r.faults),
            "faults_text": r.faults_text, "verdict": r.verdict,
            "logs": [(name.removesuffix(".log"), f"{here}/nodes/{name}") for name in logs]}


def index_page(root: Path, keep: Callable[[Path], bool], limit: int = LIMIT) -> str:
    """The page at ``/``: campaigns and runs, newest first. ``keep(path)``: whether a found
    folder may be listed (the server's rule: it resolves inside the served folder)."""
    from harness.reports.render import render_page

    found = sorted((f for f in (root / "campaigns").glob("*/*/campaign.json") if keep(f)),
                   key=lambda p: p.parent.name, reverse=True)
    campaigns = [_campaign(f, root) for f in found[:limit]]
    runs = [r for r in list_runs(root, count_ops=False) if keep(r.path)]
    runs.reverse()
    rows = [_run(r, root) for r in runs[:limit]]
    options = {"workload": sorted({r["workload"] for r in rows}),
               "verdict": [v for v in VERDICTS if any(r["verdict"] == v for r in rows)],
               "fault": sorted({f for r in rows for f in r["faults"]}) + [NO_FAULTS]}
    return render_page("index.html.j2", root=str(root), campaigns=campaigns, runs=rows, total=len(runs),
                       campaigns_total=len(found), options=options, title="histories")
