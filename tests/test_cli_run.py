"""The CLI as users run it: bad flags and specs give one stderr line and exit 3, no traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT)


@pytest.mark.parametrize("args, needle", [
    (["run", "--r", "4"], "target.r = 4"),
    (["run", "--nodes", "2"], "nodes = 2"),
    (["run", "--workload", "bank"], "unknown workload 'bank' (known: cart, cas-register, register, session)"),
    (["run", "--set", "colour=blue"], "unknown spec field 'colour'"),
    (["run", "--set", "nonsense"], "--set expects"),
    (["run", "--nodes", "many"], "invalid int value"),
    (["run", "--spec", "/nonexistent.toml"], "cannot read spec"),
    (["run", "--nemesis", "meteor"], "meteor"),
    (["check", "/nonexistent"], "no such run folder"),
])
def test_bad_input_is_one_line_exit_3(args: list[str], needle: str, tmp_path: Path) -> None:
    p = cli(*args, "--histories", str(tmp_path)) if args[0] == "run" else cli(*args)
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    assert not any(tmp_path.iterdir()), "nothing started, nothing stored"


def test_help_lists_every_spec_flag() -> None:
    p = cli("run", "--help")
    assert p.returncode == 0
    for flag in ("--spec", "--name", "--backend", "--nodes", "--seed", "--duration", "--rate", "--concurrency",
                 "--recovery", "--workload", "--n", "--r", "--w", "--pr", "--pw", "--mode", "--fsync", "--keys",
                 "--blind", "--nemesis", "--nemesis-interval", "--partition", "--leave-running", "--set",
                 "--no-display", "--replay-schedule"):
        assert flag in p.stdout, flag


@pytest.mark.parametrize("command", [["run"], ["campaign", "x.toml"]])
@pytest.mark.parametrize("flag", ["--no-display", "--no-live"])
def test_one_no_display_flag_on_every_command(command: list[str], flag: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``--no-display`` is the documented name on run and campaign; ``--no-live`` stays accepted."""
    from harness.cli import build_parser
    assert build_parser().parse_args([*command, flag]).no_display is True
    with pytest.raises(SystemExit):
        build_parser().parse_args([command[0], "--help"])
    shown = capsys.readouterr().out
    assert "--no-display" in shown and "--no-live" not in shown
