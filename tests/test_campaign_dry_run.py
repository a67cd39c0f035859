"""``campaign --dry-run`` checks every cell exactly as the run would, through the same function.

Measured: ``--dry-run`` listed invalid cells as fine, and the real run then refused them. Now each
cell's spec is built by ``harness.campaign.cell_spec`` in the dry run, in the check before the
first cell, and in the cell's child process, so the three cannot disagree.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.campaign import cell_specs, load_campaign
from harness.campaign.running import _run_cell_child
from harness.cli import main

CAMPAIGN = '''
name = "mixed-bag"
[base]
nodes = 3
duration = 30
[nemeses.short]
faults = ["partition"]
interval = 10
[[cell]]
id = "fine"
nemesis = "none"
[[cell]]
id = "r-too-big"
nemesis = "none"
set = { target = { n = 3, r = 4 } }
[[cell]]
id = "no-room"
nemesis = "short"
set = { duration = 20 }
[[cell]]
id = "no-room-allowed"
nemesis = "short"
set = { duration = 20, "nemesis.allow_unscheduled" = true }
'''


@pytest.fixture
def camp_file(tmp_path: Path) -> Path:
    f = tmp_path / "mixed.toml"
    f.write_text(CAMPAIGN)
    return f


def test_dry_run_lists_invalid_cells_with_their_error_and_exits_3(camp_file: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["campaign", str(camp_file), "--dry-run"]) == 3
    out = capsys.readouterr().out
    lines = out.splitlines()
    invalid = [ln for ln in lines if "invalid:" in ln]
    assert len(invalid) == 2, out
    assert any("target.r = 4" in ln for ln in invalid)
    assert any("no room for partition" in ln and "a duration above 20 s" in ln for ln in invalid)
    assert any("will not happen (no room, allowed): partition" in ln for ln in lines)
    assert lines[-1] == "4 cells, 2 invalid"
    assert "Traceback" not in out


def test_dry_run_and_run_refuse_the_same_cells_with_the_same_words(camp_file: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    defn = load_campaign(camp_file)
    errors = {cid: str(s) for cid, s in cell_specs(defn).items() if isinstance(s, Exception)}
    assert sorted(errors) == ["no-room", "r-too-big"]
    hist = tmp_path / "h"
    assert main(["campaign", str(camp_file), "--histories", str(hist), "--no-live"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cell r-too-big" in err and errors["r-too-big"] in err
    assert not hist.exists(), "nothing ran"
    # the cell's own child process builds its spec the same way and reports the same error
    out = tmp_path / "cell.json"
    _run_cell_child(json.dumps({"spec_path": None, "overrides": dict(defn.cells[2].overrides), "out": str(out)}))
    assert json.loads(out.read_text()) == {"error": errors["no-room"], "exit_code": 3}


def test_dry_run_of_one_cell_checks_only_that_cell(camp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["campaign", str(camp_file), "--dry-run", "--cell", "fine"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 cells"
    assert main(["campaign", "--builtin", "nrw-matrix", "--dry-run"]) == 0
