"""``dynharness ls``: stored runs with their verdicts."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from harness.runs import list_runs
from tests.test_cli_run import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "histories" / "examples"


def make_run(root: Path, test: str, stamp: str, verdict: str | None) -> Path:
    d = root / test / stamp
    d.mkdir(parents=True)
    shutil.copy(EXAMPLES / "cart-valid.jsonl", d / "history.jsonl")
    (d / "spec.json").write_text(json.dumps({"workload": {"name": "cart"}}))
    if verdict:
        (d / "results.json").write_text(json.dumps({"verdict": verdict, "summary": {"lost_writes": 2}}))
    return d


def test_ls_lists_runs_with_verdicts(tmp_path: Path) -> None:
    make_run(tmp_path, "alpha", "20260101T000000", "valid")
    make_run(tmp_path, "beta", "20260102T000000", "invalid")
    make_run(tmp_path, "beta", "20260103T000000", None)
    os.symlink("beta/20260103T000000", tmp_path / "latest")
    runs = list_runs(tmp_path)
    assert [(r.test, r.verdict) for r in runs] == [("alpha", "valid"), ("beta", "invalid"), ("beta", "incomplete")]
    assert runs[0].ops == 280 and runs[1].summary == {"lost_writes": 2}
    p = cli("ls", "--histories", str(tmp_path))
    assert p.returncode == 0 and "alpha" in p.stdout and "invalid" in p.stdout and "incomplete" in p.stdout
    p = cli("ls", "--histories", str(tmp_path), "--test", "alpha")
    assert "beta" not in p.stdout


def test_ls_on_nothing(tmp_path: Path) -> None:
    p = cli("ls", "--histories", str(tmp_path / "none"))
    assert p.returncode == 0 and "no stored runs" in p.stdout
