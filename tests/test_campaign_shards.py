"""Shards for CI matrices and their merge: the merged folder equals the unsharded campaign.

Cells are synthetic runs (tests.test_campaign.FakeRunner): what is checked is the split, the
merge and the pages, not the runs. Each shard gets a histories tree of its own, as a CI job
would, and the merge copies the runs into one tree.
"""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from harness.campaign import CampaignRun, CellResult, parse_campaign, run_campaign
from harness.campaign.shards import merge_campaigns, parse_shard, shard_cells
from harness.errors import UserError
from harness.reports.synthetic import write_synthetic_run


class FakeRunner:
    """A synthetic run per cell, seeded by the cell's id, so a cell gives the same run in whichever
    shard it runs: LWW loses 40% of acked adds, vclock none; cells in ``fail`` do not start."""

    def __init__(self, root: Path, fail: set[str] = frozenset()):
        self.root, self.fail = root, fail

    def run(self, defn, cell):
        if cell.id in self.fail:
            return CellResult(state="error", error="node n3 did not start", exit_code=3)
        d = self.root / cell.overrides["name"] / "20260101T000000"
        mode = cell.overrides.get("target.mode", "lww")
        write_synthetic_run(d, ops=300, mode=mode, lost_share=0.4 if mode == "lww" else 0.0,
                            seed=zlib.crc32(cell.id.encode()))
        verdict = json.loads((d / "results.json").read_text())["verdict"]
        return CellResult(state="done", run_dir=str(d), verdict=verdict, exit_code=0, seconds=0.1)


SIX = {"name": "six", "time_limit": 30, "matrix": {"nrw": [[3, 1, 1], [3, 2, 2], [3, 1, 3]], "mode": ["lww", "vclock"]},
       "expect": ["lost_writes == 0"]}


def _cells(camp: CampaignRun) -> dict:
    return {cid: (r.state, r.verdict, r.metrics, r.expectations) for cid, r in camp.cells.items()}


def _junit(path: Path) -> list[tuple]:
    cases = ET.parse(path).getroot().find("testsuite").findall("testcase")
    return sorted((c.get("classname"), c.get("name"), c.find("failure") is not None, c.find("error") is not None)
                  for c in cases)


def _table(md: Path) -> list[str]:
    """summary.md's cell rows (the folder and times differ between two campaigns)."""
    return [ln for ln in md.read_text().splitlines() if ln.startswith("| ") and "campaigns/" not in ln]


def test_shards_are_a_stable_round_robin_split():
    defn = parse_campaign(SIX)
    parts = [shard_cells(defn, i, 3) for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(c.id for c in defn.cells) and all(len(p) == 2 for p in parts)
    assert parts == [shard_cells(parse_campaign(SIX), i, 3) for i in (1, 2, 3)]
    assert parse_shard("2/3") == (2, 3) and parse_shard(" 1 / 1 ") == (1, 1)


@pytest.mark.parametrize("bad, words", [("3/2", "i must be between 1 and n"), ("4/3", "i must be between 1 and n"),
                                        ("0/2", "i must be between"), ("1/7", "campaign's 6 cells"),
                                        ("1-2", "takes i/n"), ("", "takes i/n")])
def test_bad_shards_are_one_line_errors(bad, words):
    with pytest.raises(UserError, match=words):
        parse_shard(bad, 6)


@pytest.mark.parametrize("fail", [set(), {"313-vclock"}])
def test_three_merged_shards_equal_the_unsharded_campaign(tmp_path, fail):
    defn = parse_campaign(SIX)
    whole = run_campaign(defn, histories=tmp_path / "whole", runner=FakeRunner(tmp_path / "whole", fail=fail))
    dirs = []
    for i in (1, 2, 3):
        h = tmp_path / f"ci-job-{i}" / "histories"
        part = run_campaign(defn, histories=h, runner=FakeRunner(h, fail=fail), only=shard_cells(defn, i, 3),
                            shard=(i, 3))
        assert part.shard == (i, 3) and CampaignRun.load(part.dir).shard == (i, 3)
        assert part.exit_code() in (0, 1, 3)
        # the CI merge job downloads each job's artifact somewhere else: the recorded paths are gone
        moved = tmp_path / "artifacts" / f"shard-{i}"
        shutil.copytree(h, moved)
        dirs.append(str(moved / part.dir.relative_to(h)))
    shutil.rmtree(tmp_path / "ci-job-1")
    merged = merge_campaigns(dirs, histories=tmp_path / "merged", out=tmp_path / "merged" / "campaign")
    assert _cells(merged) == _cells(whole)
    assert merged.exit_code() == whole.exit_code() == (3 if fail else 1)
    assert _junit(merged.dir / "junit.xml") == _junit(whole.dir / "junit.xml")
    assert _table(merged.dir / "summary.md") == _table(whole.dir / "summary.md")
    for r in merged.cells.values():   # runs copied into the merged tree; the page links to them
        if r.state == "error":
            continue
        assert Path(r.run_dir).is_relative_to(tmp_path / "merged") and (Path(r.run_dir) / "report.html").is_file()
        assert str(Path(r.run_dir, "report.html").relative_to(tmp_path / "merged")) in (merged.dir / "index.html").read_text()
    again = CampaignRun.load(merged.dir)
    assert _cells(again) == _cells(whole)


def test_cli_merge_exit_code_and_a_missing_shard(tmp_path, capsys):
    from harness.cli import main

    defn = parse_campaign(SIX)
    dirs = [str(run_campaign(defn, histories=tmp_path, runner=FakeRunner(tmp_path), only=shard_cells(defn, i, 3),
                             shard=(i, 3)).dir) for i in (1, 2, 3)]
    assert main(["campaign", "merge", *dirs, "--histories", str(tmp_path), "--out", str(tmp_path / "m1")]) == 1
    assert "BROKEN" in capsys.readouterr().out
    assert main(["campaign", "merge", *dirs[:2], "--histories", str(tmp_path), "--out", str(tmp_path / "m2")]) == 3
    out = capsys.readouterr().out
    assert "shard(s) 3/3 not among the folders" in out
    merged = json.loads((tmp_path / "m2" / "campaign.json").read_text())
    assert sorted(cid for cid, c in merged["cells"].items() if c["state"] == "pending") == sorted(shard_cells(defn, 3, 3))


def test_merging_different_campaigns_is_one_line_exit_3(tmp_path, capsys):
    from harness.cli import main

    a = run_campaign(parse_campaign(SIX), histories=tmp_path, runner=FakeRunner(tmp_path))
    b = run_campaign(parse_campaign({**SIX, "name": "other"}), histories=tmp_path, runner=FakeRunner(tmp_path))
    c = run_campaign(parse_campaign({**SIX, "expect": ["lost_writes <= 5"]}), histories=tmp_path,
                     runner=FakeRunner(tmp_path))
    for other, words in ((b, "campaign 'other'"), (c, "set up differently")):
        assert main(["campaign", "merge", str(a.dir), str(other.dir), "--out", str(tmp_path / "x")]) == 3
        err = capsys.readouterr().err
        assert err.startswith("dynharness: error: cannot merge") and words in err and err.count("\n") == 1


def test_cli_shard_runs_then_merge_give_the_unsharded_exit_code_and_summary(tmp_path, monkeypatch, capsys):
    from harness.campaign import running
    from harness.cli import main

    monkeypatch.delenv("DYNHARNESS_HISTORIES", raising=False)
    monkeypatch.setattr(running, "SubprocessCellRunner", lambda histories: FakeRunner(histories, fail=set()))
    f = tmp_path / "six.toml"
    f.write_text('name = "six"\nexpect = ["lost_writes == 0"]\n[matrix]\nnrw = [[3, 1, 1], [3, 2, 2], [3, 1, 3]]\n'
                 'mode = ["lww", "vclock"]\n')
    whole = main(["campaign", str(f), "--histories", str(tmp_path / "whole"), "--no-live"])
    codes = [main(["campaign", str(f), "--shard", f"{i}/3", "--histories", str(tmp_path / f"s{i}"), "--no-live"])
             for i in (1, 2, 3)]
    dirs = [str(next((tmp_path / f"s{i}" / "campaigns" / "six").iterdir())) for i in (1, 2, 3)]
    assert [json.loads((Path(d) / "campaign.json").read_text())["shard"] for d in dirs] == [[1, 3], [2, 3], [3, 3]]
    capsys.readouterr()
    merged = main(["campaign", "merge", *dirs, "--histories", str(tmp_path / "merged"), "--out", str(tmp_path / "m"),
                   "--junit", str(tmp_path / "m.xml")])
    assert whole == merged == 1 and codes == [1, 1, 1]   # each shard has an LWW cell, which breaks "lost_writes == 0"
    whole_dir = next((tmp_path / "whole" / "campaigns" / "six").iterdir())
    assert _table(tmp_path / "m" / "summary.md") == _table(whole_dir / "summary.md")
    assert _junit(tmp_path / "m.xml") == _junit(whole_dir / "junit.xml")
