"""``dynharness report DIR``: (re)build the HTML report of a run, or the pages of a campaign."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import UserError


def rebuild(path: str | Path, *, runs: bool = False) -> list[Path]:
    """Rebuild report.html of a run folder, or index.html/summary.md/junit.xml of a campaign folder.

    With ``runs`` a campaign's cells get their run reports rebuilt too.
    """
    from harness.reports.html import write_run_report

    d = Path(path)
    if (d / "campaign.json").is_file():
        from harness.campaign import CampaignRun

        camp = CampaignRun.load(d)
        out = []
        if runs:
            for r in camp.cells.values():
                if r.run_dir and (Path(r.run_dir) / "history.jsonl").is_file():
                    out.append(write_run_report(r.run_dir))
        from harness.reports.campaign_page import write_campaign_outputs

        write_campaign_outputs(camp)
        return out + [camp.dir / "index.html"]
    if (d / "history.jsonl").is_file():
        return [write_run_report(d)]
    if not d.exists():
        raise UserError(f"{d}: no such folder")
    raise UserError(f"{d} is neither a run folder (history.jsonl) nor a campaign folder (campaign.json)")


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild the pages of one folder and print their paths."""
    for p in rebuild(args.dir, runs=args.runs):
        print(p)
    return 0


def register(sub: Any) -> None:
    """Add the ``report`` subcommand."""
    p = sub.add_parser("report", help="(re)build the HTML report of a run or campaign",
                       description="Write report.html into a run folder, or index.html, summary.md and junit.xml "
                                   "into a campaign folder. Reports are single files that open without network.",
                       epilog="examples:\n  dynharness report histories/latest\n"
                              "  dynharness report histories/campaigns/riak-2013/20260101T120000 --runs",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="a run folder or a campaign folder")
    p.add_argument("--runs", action="store_true", help="for a campaign, also rebuild each cell's run report")
    p.set_defaults(func=cmd_report)
