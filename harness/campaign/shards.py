"""Shards for CI matrices: ``campaign FILE --shard i/n`` runs a stable part of the cells, and
``campaign merge DIR...`` puts the parts back into one campaign folder.

Why: a CI system runs jobs in parallel on machines of its own, but each job sees only its own
folder. So every shard folder keeps the whole definition (campaign.json, as any campaign) and
records which shard it ran; the merge checks that the folders are of one campaign, takes each
cell's result from the folder that ran it, copies the cells' run folders into one histories
tree, and writes the campaign pages from the merged results, so the summary, JUnit, Markdown,
index.html and the exit code are those of one unsharded run (a cell that no folder ran stays
pending and fails the merge, as a cell that did not run fails a campaign).

Cells are dealt round-robin in the expanded definition's order (cell k goes to shard k mod n,
counting from 1): the same file always gives the same split, and shards differ by at most one
cell.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable, Sequence

from harness.campaign.definition import CampaignDef
from harness.campaign.running import CampaignRun, CellResult, new_campaign_dir
from harness.errors import UserError
from harness.limits import MAX_CELLS

#: Which result wins when several folders have one for the same cell (a re-run shard job).
_RANK = {"done": 3, "error": 2, "timeout": 2, "interrupted": 1, "running": 1, "pending": 0}


def parse_shard(text: str, cells: int = MAX_CELLS) -> tuple[int, int]:
    """``"i/n"`` as (i, n), 1 <= i <= n <= cells (no shard is empty); a one-line UserError otherwise."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", text or "")
    if not m:
        raise UserError(f"--shard takes i/n (e.g. 2/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if not 1 <= n <= min(cells, MAX_CELLS):
        raise UserError(f"--shard {text}: n must be between 1 and the campaign's {cells} cells")
    if not 1 <= i <= n:
        raise UserError(f"--shard {text}: i must be between 1 and n ({n})")
    return i, n


def shard_cells(defn: CampaignDef, i: int, n: int) -> list[str]:
    """The ids of shard ``i`` of ``n``: every n-th cell, starting with the i-th."""
    return [c.id for k, c in enumerate(defn.cells) if k % n == i - 1]


def _same_campaign(a: CampaignDef, b: CampaignDef) -> str | None:
    """Why two definitions are not one campaign (None when they are). The base spec's path may
    differ between CI machines; its name, the cells and their settings may not."""
    if a.name != b.name:
        return f"campaign {b.name!r}, not {a.name!r}"
    ca, cb = [c.to_json() for c in a.cells], [c.to_json() for c in b.cells]
    if [c["id"] for c in ca] != [c["id"] for c in cb]:
        return "other cells"
    for x, y in zip(ca, cb):
        if x != y:
            return f"cell {x['id']} set up differently"
    return None


def _run_dir_in(folder: Path, recorded: str | None) -> Path | None:
    """Where a shard's cell run is now: the recorded path, or, for a shard folder downloaded
    elsewhere (a CI artifact), the same ``<test>/<time>`` under that shard's histories root
    (a campaign folder is ``<histories>/campaigns/<name>/<time>``)."""
    if not recorded:
        return None
    moved = folder.parents[2] / Path(*Path(recorded).parts[-2:]) if folder.parent.parent.name == "campaigns" else None
    for p in (moved, Path(recorded)):
        if p is not None and p.is_dir():
            return p.resolve()
    return None


def merge_campaigns(dirs: Sequence[str | Path], *, histories: Path, out: str | Path | None = None,
                    say: Callable[[str], None] = lambda _m: None) -> CampaignRun:
    """One campaign folder from shard folders (see the module docstring); ``say`` gets notes."""
    if not dirs:
        raise UserError("campaign merge needs at least one campaign folder")
    camps = [CampaignRun.load(d) for d in dirs]
    first = camps[0]
    for d, c in zip(dirs[1:], camps[1:]):
        why = _same_campaign(first.defn, c.defn)
        if why:
            raise UserError(f"cannot merge {d} with {dirs[0]}: it holds {why}")
    cells: dict[str, CellResult] = {cid: CellResult() for cid in first.cells}
    source: dict[str, Path] = {}
    for c in camps:
        for cid, r in c.cells.items():
            if r.state != "pending" and _RANK.get(r.state, 0) >= _RANK.get(cells[cid].state, 0):
                if cid in source:
                    say(f"cell {cid} is in {source[cid]} and {c.dir}: keeping the one from {c.dir}")
                cells[cid], source[cid] = CellResult(**r.to_json()), c.dir
    for cid, r in cells.items():
        if cid in source:
            r.run_dir = _copy_run(_run_dir_in(source[cid], r.run_dir), histories)
    shards = sorted({c.shard for c in camps if c.shard})
    if shards and len({n for _, n in shards}) == 1:
        missing = sorted(set(range(1, shards[0][1] + 1)) - {i for i, _ in shards})
        if missing:
            say(f"shard(s) {', '.join(f'{i}/{shards[0][1]}' for i in missing)} not among the folders: their cells stay pending")
    target = Path(out) if out else new_campaign_dir(histories, first.defn.name)
    if (target / "campaign.json").exists():
        raise UserError(f"{target} already holds a campaign; give another --out")
    finished = max((c.finished for c in camps if c.finished), default=None)
    merged = CampaignRun(first.defn, target, cells, min(c.started for c in camps), finished,
                         interrupted=any(c.interrupted for c in camps),
                         host=",".join(sorted({c.host for c in camps if c.host})))
    merged.save()
    return merged


def _copy_run(src: Path | None, histories: Path) -> str | None:
    """The run folder at ``histories/<test>/<time>``, copied there unless it already is."""
    if src is None:
        return None
    dest = (histories / src.parent.name / src.name).resolve()
    if dest != src and not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest, symlinks=True)
    return str(dest)
