"""``dynharness check`` on stored runs and on the checked-in example histories."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.test_cli_run import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "histories" / "examples"


def test_examples_give_their_verdicts() -> None:
    ok = cli("check", str(EXAMPLES / "cart-valid.jsonl"))
    assert ok.returncode == 0, ok.stderr
    assert "lost-writes" in ok.stdout and "valid" in ok.stdout
    lost = cli("check", str(EXAMPLES / "cart-lost-writes.jsonl"))
    assert lost.returncode == 1 and "lost_writes" in lost.stdout


def test_check_rewrites_results_of_a_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "t" / "20260101T000000"
    run.mkdir(parents=True)
    shutil.copy(EXAMPLES / "cart-lost-writes.jsonl", run / "history.jsonl")
    (run / "spec.json").write_text(json.dumps({"workload": {"name": "cart"}, "target": {"n": 3}}))
    p = cli("check", str(run), "--checkers", "lost-writes")
    assert p.returncode == 1
    res = json.loads((run / "results.json").read_text())
    assert res["verdict"] == "invalid" and list(res["checkers"]) == ["lost-writes"]
    assert res["summary"]["lost_writes"] > 0


def test_malformed_history_is_one_line_with_line_number(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    lines = (EXAMPLES / "cart-valid.jsonl").read_text().splitlines()
    lines[4] = '{"index": 4, "time": "soon"}'
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")
    p = cli("check", str(run))
    assert p.returncode == 3
    assert p.stderr.count("\n") == 1 and "history.jsonl:5:" in p.stderr
