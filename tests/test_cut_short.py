"""Verdicts for runs cut short: hand-built run folders checked as ``dynharness check`` does.

A harness run (its spec.json has the run facts) without its final reads is never judged from
ordinary reads: the checkers that need final reads answer unknown with the reason, the run is
never valid, an anomaly found anyway is still invalid, and what the run recorded stays.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.history import write_history
from harness.runs import check_run
from tests.checker_support import HistoryBuilder
from tests.test_cli_run import cli

INTERRUPTED = {"run_error": "interrupted", "cleanup_errors": [],
               "run_end": {"state": "interrupted", "signal": "SIGTERM", "at_s": 12.3, "phase": "main",
                           "final_reads_done": False}}


def run_folder(tmp_path: Path, workload: str, h: HistoryBuilder, results: dict | None = None) -> Path:
    """A run folder as the runner leaves it: spec.json with its facts, history, maybe results.json."""
    run = tmp_path / "t" / "20260101T000000"
    run.mkdir(parents=True)
    (run / "spec.json").write_text(json.dumps({"workload": {"name": workload}, "target": {"n": 3},
                                               "started": "2026-01-01T00:00:00Z", "run_dir": str(run)}))
    write_history(run / "history.jsonl", h.build().ops)
    if results is not None:
        (run / "results.json").write_text(json.dumps({"verdict": "unknown", "summary": {}, "checkers": {},
                                                      **results}))
    return run


def cart_missing_an_acked_add() -> HistoryBuilder:
    """Add 1 and 2 to cart-0 (both ok); the last ordinary read (during a partition, say) has only 1."""
    return (HistoryBuilder().op(1, "add", "cart-0", 1, 0, 5).op(2, "add", "cart-0", 2, 1, 6)
            .op(1, "read", "cart-0", None, 10, 12, result=[1]))


def test_interrupted_run_without_final_reads_is_unknown_not_lost_writes(tmp_path: Path) -> None:
    run = run_folder(tmp_path, "cart", cart_missing_an_acked_add(), INTERRUPTED)
    p = cli("check", str(run))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "no final reads: run interrupted by SIGTERM at 12.3 s" in " ".join(p.stdout.split())
    res = json.loads((run / "results.json").read_text())
    assert res["verdict"] == "unknown"
    for name in ("lost-writes", "resurrections"):
        assert res["checkers"][name]["verdict"] == "unknown"
        assert res["checkers"][name]["reason"] == "no final reads: run interrupted by SIGTERM at 12.3 s (phase: main)"
    assert res["run_end"] == INTERRUPTED["run_end"] and res["run_error"] == "interrupted"   # kept beside the verdicts
    assert check_run(run)["checkers"]["lost-writes"]["verdict"] == "unknown"                # and on a second check


def test_killed_harness_recorded_no_end_and_is_unknown(tmp_path: Path) -> None:
    run = run_folder(tmp_path, "cart", cart_missing_an_acked_add())     # kill -9: no results.json at all
    res = check_run(run)
    assert res["verdict"] == "unknown" and "run_end" not in res
    assert res["cut_short"] == ("no final reads: the run recorded no end (its harness was killed, or it is "
                                "still running) at 0.0 s")
    assert check_run(run)["cut_short"] == res["cut_short"]


def test_anomaly_found_in_a_cut_short_run_is_still_invalid(tmp_path: Path) -> None:
    h = HistoryBuilder().op(1, "write", "r-0", 1, 0, 5).op(2, "read", "r-0", None, 10, 12, result=2)  # 2 never written
    res = check_run(run_folder(tmp_path, "register", h, INTERRUPTED))
    assert res["checkers"]["linearizable"]["verdict"] == "invalid"
    assert res["verdict"] == "invalid" and res["cut_short"].startswith("no final reads")


def test_cut_short_run_is_never_valid_even_when_every_checker_is(tmp_path: Path) -> None:
    h = HistoryBuilder().op(1, "write", "r-0", 1, 0, 5).op(2, "read", "r-0", None, 10, 12, result=1)
    res = check_run(run_folder(tmp_path, "register", h, INTERRUPTED))
    assert res["checkers"]["linearizable"]["verdict"] == "valid"      # true of the part it has
    assert res["verdict"] == "unknown"                                # not of the run


def test_final_reads_decide_when_the_run_has_them(tmp_path: Path) -> None:
    """Interrupted during the final reads: a key whose final read came back is judged (a loss is real);
    a run completed, or stopped after its final reads, is judged as always."""
    h = cart_missing_an_acked_add().op(3, "read", "cart-0", None, 20, 22, result=[1], final=True)
    res = check_run(run_folder(tmp_path, "cart", h, {**INTERRUPTED, "run_end": {
        **INTERRUPTED["run_end"], "phase": "final reads"}}))
    assert res["checkers"]["lost-writes"]["verdict"] == "invalid" and res["summary"]["lost_writes"] == 1
    assert res["cut_short"] == "final reads incomplete: run interrupted by SIGTERM at 12.3 s (phase: final reads)"
    ok = HistoryBuilder().op(1, "add", "cart-0", 1, 0, 5).op(3, "read", "cart-0", None, 20, 22, result=[1], siblings=1,
                                                          final=True)
    res = check_run(run_folder(tmp_path / "done", "cart", ok, {"run_end": {"state": "completed"}}))
    assert res["verdict"] == "valid" and "cut_short" not in res
    after = {**INTERRUPTED, "run_end": {**INTERRUPTED["run_end"], "final_reads_done": True}}   # stopped in teardown
    res = check_run(run_folder(tmp_path / "after", "cart", ok, after))
    assert res["verdict"] == "valid" and "cut_short" not in res and res["run_error"] == "interrupted"
