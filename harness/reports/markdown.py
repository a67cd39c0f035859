"""``summary.md``: a campaign's results as Markdown, for a CI job summary or the README.

GitHub Actions shows it when appended to ``$GITHUB_STEP_SUMMARY``; the
integrator pastes it into the README. Broken expectations come first, so a
red build says why at the top.
"""
from __future__ import annotations

from typing import Any

from harness.reports.summary import METRICS, expectation_text, label_axes, measured, on_workers, rows, status_text


def _esc(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def campaign_markdown(camp: Any, *, title_level: int = 2) -> str:
    """Markdown of a CampaignRun: status line, broken expectations, then the per-cell table."""
    all_rows = rows(camp)
    axes = label_axes(all_rows)
    h = "#" * title_level
    done = sum(1 for r in all_rows if r.state == "done")
    broken = camp.broken()
    status = status_text(camp)[1]
    out = [f"{h} Campaign `{camp.defn.name}`: {status}", ""]
    if camp.defn.description:
        out += [camp.defn.description.strip(), ""]
    out += [f"{done}/{len(all_rows)} cells finished; started {camp.started}"
            + (f", finished {camp.finished}" if camp.finished else "") + f"; folder `{camp.dir}`.", ""]
    failed = [r for r in all_rows if r.state in ("error", "timeout", "interrupted")]
    if broken or failed:
        out += [f"{h}# What broke", ""]
        for cid, e in broken:
            out.append(f"- **{_esc(cid)}**: `{_esc(e['expect'])}` — {_esc(e['message'])}")
        for r in failed:
            out.append(f"- **{_esc(r.cell)}**: {r.state}: {_esc(r.error or '')}")
        out.append("")
    shown = measured(all_rows)
    described = any(r.labels.get("description") for r in all_rows)
    workers = on_workers(all_rows)
    head = ["cell", *(["what"] if described else []), *axes, "state", *(["worker"] if workers else []), "verdict",
            *(METRICS[i][1] for i in shown), "expectations"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in all_rows:
        texts = r.cells_text()
        vals = [r.cell, *([r.labels.get("description", "")] if described else []), *(r.labels.get(a, "") for a in axes),
                r.state, *([r.worker or "-"] if workers else []), r.verdict or "-", *(texts[i] for i in shown),
                expectation_text(r)]
        out.append("| " + " | ".join(_esc(v) for v in vals) + " |")
    out += ["", "Columns: " + "; ".join(f"**{METRICS[i][1]}** {METRICS[i][2]}" for i in shown) + "."]
    return "\n".join(out) + "\n"
