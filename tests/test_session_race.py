"""Sessions that race replication, on a real 3-node cluster without faults.

A session's read now follows its write at once (``read_after_write``, ``think_time`` 0), through
another coordinator. At R = W = 1 the read can reach a replica the write has not reached yet, so
read-your-writes breaks without any fault (before, the next op came ~50 ms later and such reads
were rare); at R = W = 2 the quorums overlap and it must not break.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.history import read_history
from harness.runner import run_test
from harness.spec import load_spec

pytestmark = pytest.mark.cluster


def session_run(tmp_path: Path, name: str, r: int, w: int) -> tuple[dict, Path]:
    spec = load_spec(None, {"name": name, "histories": str(tmp_path), "nodes": 3, "duration": 6, "rate": 150,
                            "concurrency": 6, "recovery": 0, "seed": 5, "workload.name": "session",
                            "workload.keys": 4, "nemesis.faults": [], "target.r": r, "target.w": w,
                            "target.fsync": "never"})
    out = run_test(spec)
    assert out.error is None, out.error
    return out.results, out.run_dir


def test_reads_right_after_writes_catch_r1_w1_and_spare_quorums(tmp_path: Path) -> None:
    loose, run_dir = session_run(tmp_path, "r1w1", 1, 1)
    assert loose["checkers"]["session"]["counts"]["rw_violations"] > 0, loose["checkers"]["session"]
    ops = [o for o in read_history(run_dir / "history.jsonl").client_ops() if o.type == "invoke"]
    by_session: dict[int, list] = {}
    for o in ops:
        by_session.setdefault(o.get("session"), []).append(o)
    followed = [(a, b) for seq in by_session.values() for a, b in zip(seq, seq[1:]) if a.f == "write"]
    assert followed and all(b.f == "read" and b.key == a.key for a, b in followed)
    quorum, _ = session_run(tmp_path, "r2w2", 2, 2)
    assert quorum["checkers"]["session"]["counts"]["rw_violations"] == 0, quorum["checkers"]["session"]
    assert quorum["checkers"]["perf"]["verdict"] == "valid"
