"""``dynharness ls``: stored runs with workload, mode, N/R/W, faults and verdict, filtered, readable
at 80 and 100 columns (run folders built by hand in tmp_path)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.run_index import list_runs, parse_since
from tests.test_cli_run import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "histories" / "examples"


def make_run(root: Path, test: str, stamp: str, verdict: str | None, workload: str = "cart", mode: str = "vclock",
             nrw: tuple[int, int, int] = (3, 2, 2), faults: tuple[str, ...] = ("partition",)) -> Path:
    d = root / test / stamp
    d.mkdir(parents=True)
    shutil.copy(EXAMPLES / "cart-valid.jsonl", d / "history.jsonl")
    (d / "spec.json").write_text(json.dumps({
        "workload": {"name": workload}, "nemesis": {"faults": list(faults), "interval": 10},
        "target": {"kind": "dynamo", "mode": mode, "n": nrw[0], "r": nrw[1], "w": nrw[2]}}))
    if verdict:
        (d / "results.json").write_text(json.dumps({"verdict": verdict, "summary": {
            "lost_writes": 2, "acked_adds": 1234, "max_siblings": 7, "availability": 0.9987}}))
    return d


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """Five runs of different workloads, modes, faults and verdicts, names as long as real ones."""
    make_run(tmp_path, "cart-vclock-partition", "20260101T100000", "valid")
    make_run(tmp_path, "cart-lww-clock+crash", "20260102T100000", "invalid", mode="lww", faults=("clock", "crash"))
    make_run(tmp_path, "register-lww-partition+pause", "20260103T100000", "invalid", workload="register",
             mode="lww", nrw=(3, 1, 1), faults=("partition", "pause"))
    make_run(tmp_path, "session-dvv-nofaults", "20260104T100000", None, workload="session", mode="dvv", faults=())
    make_run(tmp_path, "cart-vclock-partition", "20260105T100000", "unknown")
    return tmp_path


def ls(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str,
       width: int = 200) -> tuple[int, str, str]:
    monkeypatch.setenv("COLUMNS", str(width))
    code = main(["ls", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_are_read_with_workload_mode_nrw_and_faults(stored: Path) -> None:
    os.symlink("cart-vclock-partition/20260105T100000", stored / "latest")
    runs = list_runs(stored)
    assert [(r.test, r.verdict) for r in runs][:3] == [
        ("cart-vclock-partition", "valid"), ("cart-lww-clock+crash", "invalid"), ("register-lww-partition+pause", "invalid")]
    reg = runs[2]
    assert (reg.workload, reg.store, reg.nrw, reg.faults) == ("register", "lww", "3/1/1", ("partition", "pause"))
    assert runs[3].verdict == "incomplete" and runs[3].faults_text == "none"
    assert runs[0].ops == 140 and runs[0].summary["lost_writes"] == 2 and len(runs) == 5   # 280 lines: 140 ops


@pytest.mark.parametrize("width", [80, 100])
def test_ls_fits_the_terminal_with_names_and_verdicts_whole(stored: Path, width: int, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = ls(capsys, monkeypatch, "--histories", str(stored), width=width)
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    for name, verdict in (("cart-lww-clock+crash", "invalid"), ("register-lww-partition+pause", "invalid"),
                          ("session-dvv-nofaults", "incomplete"), ("cart-vclock-partition", "unknown")):
        assert any(f" {name} " in line and f" {verdict} " in line for line in lines), (name, verdict, out)
    assert "…" not in out   # nothing cut short: columns are left out or wrapped instead
    header = next(line for line in lines if " name " in line)
    for col in ("N/R/W",) + (("workload", "faults") if width == 100 else ()):
        assert f" {col} " in header, header
    assert any(" 3/1/1 " in line for line in lines)
    assert "not shown at this width" in out   # the caption names what was left out


def test_ls_wide_terminal_shows_every_column(stored: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = ls(capsys, monkeypatch, "--histories", str(stored), width=240)
    assert code == 0 and "not shown" not in out
    for col in ("time", "workload", "mode", "N/R/W", "faults", "ops", "verdict", "summary"):
        assert f" {col} " in out
    assert "clock, crash" in out and "lost_writes=2" in out


@pytest.mark.parametrize("args, names", [
    (["--workload", "register"], {"register-lww-partition+pause"}),
    (["--verdict", "invalid"], {"cart-lww-clock+crash", "register-lww-partition+pause"}),
    (["--verdict", "valid,incomplete"], {"cart-vclock-partition", "session-dvv-nofaults"}),
    (["--nemesis", "crash"], {"cart-lww-clock+crash"}),
    (["--nemesis", "none"], {"session-dvv-nofaults"}),
    (["--name", "cart-*"], {"cart-vclock-partition", "cart-lww-clock+crash"}),
    (["--test", "session-dvv-nofaults"], {"session-dvv-nofaults"}),
    (["--since", "2026-01-03"], {"register-lww-partition+pause", "session-dvv-nofaults", "cart-vclock-partition"}),
    (["--since", "2026-01-04T10:00"], {"session-dvv-nofaults", "cart-vclock-partition"}),
    (["--workload", "cart", "--verdict", "invalid"], {"cart-lww-clock+crash"}),
    (["--name", "cart-vclock-*", "--last", "1"], {"cart-vclock-partition"}),
])
def test_filters_select_the_right_runs(stored: Path, args: list[str], names: set[str],
                                       capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = ls(capsys, monkeypatch, "--histories", str(stored), *args)
    assert code == 0
    every = {"cart-vclock-partition", "cart-lww-clock+crash", "register-lww-partition+pause", "session-dvv-nofaults"}
    listed = {n for n in every if f" {n} " in out}
    assert listed == names, out


def test_last_after_filters_keeps_the_newest(stored: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _, out, _ = ls(capsys, monkeypatch, "--histories", str(stored), "--name", "cart-vclock-*", "--last", "1")
    assert "20260105T100000" in out and "20260101T100000" not in out and "(1 of 5)" in out


@pytest.mark.parametrize("args, needle", [
    (["--verdict", "broken"], "--verdict takes one of"),
    (["--workload", "bank"], "--workload takes one of"),
    (["--nemesis", "meteor"], "--nemesis takes one of"),
    (["--since", "yesterday"], "--since takes a UTC date"),
    (["--since", "2026-13-45"], "--since takes a UTC date"),
    (["--last", "0"], "--last"),
])
def test_bad_filter_values_are_one_line_exit_3(stored: Path, args: list[str], needle: str,
                                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = ls(capsys, monkeypatch, "--histories", str(stored), *args)
    assert code == 3 and out == "" and err.count("\n") == 1 and needle in err, err


def test_since_takes_an_age() -> None:
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("2026-01-01") == parse_since("2026-01-01T00:00:00Z")


def test_ls_on_nothing_and_no_match(tmp_path: Path, stored: Path) -> None:
    p = cli("ls", "--histories", str(tmp_path / "none"))
    assert p.returncode == 0 and "no stored runs" in p.stdout
    p = cli("ls", "--histories", str(stored), "--workload", "session", "--verdict", "valid")
    assert p.returncode == 0 and "no stored runs under" in p.stdout and "match (of 5)" in p.stdout


def test_an_orphan_is_flagged_and_explained_whole_at_80_columns(stored: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from harness.backends import cluster_state as cs

    run = stored / "cart-lww-clock+crash" / "20260102T100000"
    gone = {"pid": 2 ** 22 + 7, "start": 1, "host": socket.gethostname(), "kept": None}   # above pid_max: no such process
    assert cs.owner_status(gone) == cs.DEAD
    (run / cs.STATE_FILE).write_text(json.dumps({"owner": gone}))
    code, out, _ = ls(capsys, monkeypatch, "--histories", str(stored), width=80)
    table = [line for line in out.splitlines() if not line.startswith(("ORPHAN ", "1 run(s)"))]
    assert code == 0 and max(len(line) for line in table) <= 80   # the note under it is whole: a path to act on
    assert any(" cart-lww-clock+crash " in line and " ORPHAN " in line for line in out.splitlines()), out
    assert f"ORPHAN {run}: owner pid {2 ** 22 + 7} is gone" in out.splitlines()
    assert "1 run(s) left an orphaned cluster" in out
