"""``dynharness explore`` as users run it: bad input is one line and exit 3; a short real explore
on a zoo bug finds it, shrinks it and stores a reproducer that fails again; Ctrl-C keeps the
search's record and leaves nothing running."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: short, small and calm runs: 3 local nodes, no fsync (a disk stall is not a bug), quick waits
SMALL = ["--nodes", "3", "--recovery", "1", "--set", "final_read_timeout=8", "--set", "target.fsync=never"]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("args, needle", [
    (["--budget", "nan"], "--budget must be a finite number"),
    (["--budget", "0"], "--budget must be positive"),
    (["--budget=-3m"], "--budget must be positive"),
    (["--budget", "soon"], "--budget must be seconds or a duration"),
    (["--shrink-budget", "inf"], "--shrink-budget must be a finite number"),
    (["--nemesis", "none"], "no faults to vary"),
    (["--max-run", "1"], "--max-run must be at least 2 s"),
    (["--confirm", "0"], "--confirm must be 1-20"),
    (["--max-faults", "11"], "--max-faults must be 1-10"),
    (["--reliable", "1.5"], "--reliable must be"),
    (["--replays", "1000"], "--replays must be"),
    (["--vary", "target.r"], "--vary expects dotted.key=V1,V2"),
    (["--vary", "target.r=2,9"], "target.r = 9"),
    (["--checkers", "lost-writes,telepathy"], "unknown checker(s) telepathy"),
    (["--resume", "/nonexistent"], "not an explore folder"),
    (["--target", "etcd", "--nemesis", "clock"], "refusing the clock nemesis"),
    (["--nemesis", "meteor"], "meteor"),
])
def test_bad_input_is_one_line_exit_3(args: list[str], needle: str, tmp_path: Path) -> None:
    p = cli("explore", *args, "--histories", str(tmp_path))
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert not any(tmp_path.iterdir()), "nothing started, nothing stored"


def test_resume_takes_its_settings_from_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "explore" / "x"
    folder.mkdir(parents=True)
    (folder / "explore.json").write_text(json.dumps({"settings": {}, "summary": {}}))
    p = cli("explore", "--resume", str(folder), "--nemesis", "crash")
    assert p.returncode == 3 and "--resume takes its settings from the explore folder" in p.stderr


def test_a_short_explore_finds_a_zoo_bug_and_its_reproducer_fails_again(tmp_path: Path) -> None:
    """storage-drops-wal: a node restarting deletes its write-ahead log. Killing every node loses
    acknowledged writes; the search finds a crash of the three, shrinks it, and the stored
    reproducer, run as a user would, is invalid again."""
    p = cli("explore", *SMALL, "--set", "target.bug=storage-drops-wal", "--nemesis", "crash",
            "--set", "nemesis.targets=n1,n2,n3", "--max-run", "6", "--budget", "90", "--shrink-budget", "60",
            "--confirm", "2", "--max-faults", "2", "--checkers", "lost-writes", "--histories", str(tmp_path),
            "--no-display", timeout=600)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "minimal failing case" in p.stdout and "n1, n2, n3 killed" in p.stdout
    [folder] = (tmp_path / "explore").iterdir()
    summary = json.loads((folder / "explore.json").read_text())["summary"]
    assert summary["fail"] >= 1 and summary["minimal"] is not None
    starts = [a for a in summary["minimal"]["schedule"] if a["f"] == "kill"]
    assert 1 <= len(starts) <= 2
    log = [json.loads(line) for line in (folder / "search.jsonl").read_text().splitlines()]
    assert len(log) == summary["cases"]
    for case in log:
        if case["outcome"] == "fail":
            assert [a["failing"] for a in case["attempts"]] == [True, True]
            assert all(Path(a["run_dir"], "results.json").is_file() for a in case["attempts"])
    minimal = folder / "minimal"
    for name in ("spec.json", "nemesis-schedule.json", "report.html", "README.md"):
        assert (minimal / name).is_file(), name
    again = subprocess.run([sys.executable, "-m", "harness", "run", "--spec", str(minimal / "spec.json"),
                            "--replay-schedule", str(minimal), "--histories", str(tmp_path / "again"),
                            "--no-display"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "lost" in again.stdout
    # --resume: the same settings, numbering on, and what failed is the first case tried
    resumed = cli("explore", "--resume", str(folder), "--budget", "5", "--shrink-budget", "1", "--no-display",
                  timeout=300)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    log = [json.loads(line) for line in (folder / "search.jsonl").read_text().splitlines()]
    first_new = log[summary["cases"]]
    assert first_new["number"] == summary["cases"] + 1 and first_new["outcome"] == "fail"


def test_ctrl_c_keeps_the_record_and_leaves_nothing_running(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "harness", "explore", *SMALL, "--nemesis", "partition",
                             "--max-run", "8", "--budget", "5m", "--histories", str(tmp_path), "--no-display"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        log = None
        while time.monotonic() < deadline:       # wait until one case is done and the next is running
            found = list((tmp_path / "explore").glob("*/search.jsonl"))
            if found and found[0].read_text().count("\n") >= 1 and list(tmp_path.glob("explore/*/runs/case-0002-1")):
                log = found[0]
                break
            time.sleep(0.5)
        assert log is not None, "no case finished in 120 s"
        time.sleep(3)                           # inside case 2's run
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    summary = json.loads((log.parent / "explore.json").read_text())["summary"]
    assert summary["stopped"] == "interrupted" and summary["cases"] >= 2
    cluster = list(tmp_path.glob("explore/*/runs/case-0002-1/*/cluster.json"))
    pids = [n.get("pid") for c in cluster for n in json.loads(c.read_text()).get("nodes", [])]
    for pid in filter(None, pids):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.docker
def test_explore_runs_its_cases_on_docker(tmp_path: Path) -> None:
    from harness.backends.docker_cluster import engine_available
    from tests.conftest import require

    require(engine_available(), "a Docker engine")
    p = cli("explore", *SMALL, "--backend", "docker", "--nemesis", "crash,partition", "--max-run", "5",
            "--budget", "15", "--confirm", "1", "--histories", str(tmp_path), "--no-display", timeout=400)
    assert p.returncode == 0, p.stdout + p.stderr            # the clean store: nothing found
    [folder] = (tmp_path / "explore").iterdir()
    log = [json.loads(line) for line in (folder / "search.jsonl").read_text().splitlines()]
    assert log and all(c["outcome"] == "pass" for c in log)
    for case in log:
        spec = json.loads(Path(case["attempts"][0]["run_dir"], "spec.json").read_text())
        assert spec["backend"] == "docker" and spec["replay_schedule"]
