"""A campaign's ``index.html`` (heat maps of each anomaly over N/R/W x mode) and the other outputs.

``write_campaign_outputs`` is called after every cell, so the folder of an
interrupted campaign still has a current ``summary.md``, ``junit.xml`` and
``index.html``. Cells link to their runs' ``report.html`` by relative path,
so the whole ``histories/`` tree can be copied or served as it is.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.reports.junit import campaign_junit
from harness.reports.markdown import campaign_markdown
from harness.reports.render import render_page
from harness.reports.summary import (BAD_HIGH, GOOD_HIGH, METRICS, Row, expectation_text, fmt_metric, label_axes,
                                     measured, on_workers, rows, status_text)

GOOD_STRINGS = {"valid": 0.0, "unknown": 0.5, "invalid": 1.0}


def _badness(key: str, value: Any, top: float) -> float | None:
    """0 (fine) .. 1 (worst in this campaign) for heat-map colour; None when not measured."""
    if value is None:
        return None
    if isinstance(value, str):
        return GOOD_STRINGS.get(value)
    if not isinstance(value, (int, float)):
        return None
    if key == "availability":
        return max(0.0, min(1.0, 1.0 - float(value)))
    if key == "max_siblings":  # one version is no conflict at all
        return 0.0 if value <= 1 or top <= 1 else max(0.0, min(1.0, (float(value) - 1) / (top - 1)))
    if key in ("lost_share", "stale_read_share"):
        return max(0.0, min(1.0, float(value)))
    if key in GOOD_HIGH:
        return 0.0 if not top else max(0.0, min(1.0, 1.0 - float(value) / top))
    return 0.0 if not top else max(0.0, min(1.0, float(value) / top))


def _colour(b: float | None) -> str:
    if b is None:
        return "#eef0f3"
    if b == 0:
        return "#d8f0dc"
    # light amber to deep red
    r, g, bl = 255, int(225 - 175 * b), int(170 - 130 * b)
    return f"rgb({r},{g},{bl})"


def _link(camp_dir: Path, run_dir: str | None) -> str | None:
    if not run_dir:
        return None
    return os.path.relpath(Path(run_dir) / "report.html", camp_dir)


def heatmaps(camp: Any, all_rows: list[Row]) -> list[dict[str, Any]]:
    """Per metric, per group of the other axes: a grid rows=N/R/W (or cell) x cols=mode (or '')."""
    axes = label_axes(all_rows)
    row_ax = "nrw" if "nrw" in axes else None
    col_ax = "mode" if "mode" in axes else None
    group_axes = [a for a in axes if a not in (row_ax, col_ax, "repeat")]
    # A grid needs every cell to have both axes and its own slot (repeats aside); explicit cells
    # (riak-2013: two LWW 3/2/2 cells that differ in PR/PW) get one row each instead.
    slots = {(tuple(r.labels.get(a) for a in group_axes), r.labels.get(row_ax), r.labels.get(col_ax))
             for r in all_rows}
    if row_ax is None or col_ax is None or any(r.labels.get(row_ax) is None or r.labels.get(col_ax) is None
                                               for r in all_rows) or len(slots) < len({r.cell.rsplit("-r", 1)[0] if "repeat" in r.labels else r.cell for r in all_rows}):
        row_ax, col_ax, group_axes = None, None, []
    out = []
    for key, title, desc in METRICS:
        vals = [r.metrics.get(key) for r in all_rows if isinstance(r.metrics.get(key), (int, float))]
        top = max(vals) if vals else 0
        if not any(r.metrics.get(key) is not None for r in all_rows):
            continue
        groups: dict[str, dict[str, Any]] = {}
        for r in all_rows:
            g = " · ".join(f"{a} {r.labels.get(a, '-')}" for a in group_axes) or "all cells"
            grid = groups.setdefault(g, {"rows": [], "cols": [], "cells": {}})
            rk = str(r.labels.get(row_ax)) if row_ax else r.cell
            ck = str(r.labels.get(col_ax)) if col_ax else ""
            if rk not in grid["rows"]:
                grid["rows"].append(rk)
            if ck not in grid["cols"]:
                grid["cols"].append(ck)
            v = r.metrics.get(key)
            b = _badness(key, v, top)
            grid["cells"].setdefault((rk, ck), []).append({
                "text": fmt_metric(key, v) if r.state == "done" else r.state, "colour": _colour(b if r.state == "done" else None),
                "href": _link(camp.dir, r.run_dir), "cell": r.cell, "broken": r.expect_broken})
        out.append({"key": key, "title": title, "desc": desc, "groups": groups, "row_axis": row_ax or "cell",
                    "col_axis": col_ax or ""})
    return out


def campaign_index_html(camp: Any) -> str:
    """The campaign page: status, broken expectations, heat maps, and the full table linking each run."""
    all_rows = rows(camp)
    axes = label_axes(all_rows)
    shown = measured(all_rows)
    table = [{"row": r, "labels": [r.labels.get(a, "") for a in axes], "metrics": [r.cells_text()[i] for i in shown],
              "expect": expectation_text(r), "href": _link(camp.dir, r.run_dir),
              "description": r.labels.get("description", "")} for r in all_rows]
    return render_page("campaign.html.j2", camp=camp, status=status_text(camp), broken=camp.broken(), axes=axes,
                       workers=on_workers(all_rows),
                       table=table, metrics=[METRICS[i] for i in shown], heatmaps=heatmaps(camp, all_rows), bad_high=BAD_HIGH,
                       title=f"campaign {camp.defn.name}")


def write_campaign_outputs(camp: Any) -> None:
    """Write summary.md, junit.xml and index.html into the campaign folder."""
    (camp.dir / "summary.md").write_text(campaign_markdown(camp), encoding="utf-8")
    (camp.dir / "junit.xml").write_text(campaign_junit(camp), encoding="utf-8")
    (camp.dir / "index.html").write_text(campaign_index_html(camp), encoding="utf-8")
