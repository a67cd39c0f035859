"""Input limits: every number finite and bounded, deep nesting a one-line error (never a traceback).

The measured holes: ``--duration nan|inf|1e309``, ``--rate nan`` and ``--client-timeout nan``
ran or hung, ``--concurrency 100000000`` took 12 GB, campaign ``repeats = 100000000`` hung,
``ls --last -1`` was accepted, ``serve --port 99999`` and a history line of 100,000 brackets
gave tracebacks. Each must now be one ``dynharness: error:`` line with exit 3, before anything
starts.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.campaign import CampaignRun, parse_campaign
from harness.cli import main
from harness.errors import UserError
from harness.limits import MAX_CONCURRENCY, json_loads, number, toml_loads
from harness.spec import load_spec

DEEP = "[" * 100_000 + "]" * 100_000
EXAMPLES = Path(__file__).resolve().parents[1] / "histories" / "examples"


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    """``main(argv)`` exits 3 with exactly one stderr line containing ``needle``."""
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dynharness: error: ") and needle in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("v, lo, hi, kw, needle", [
    (float("nan"), 0, 1, {}, "must be a finite number, got nan"),
    (float("inf"), 0, 1, {}, "must be a finite number, got inf"),
    (10**400, 0, 1, {"integer": True}, "at most 1, got 1000"),   # compared exactly, never converted
    (True, 0, 1, {}, "must be a number"),
    ("3", 0, 5, {}, "must be a number"),
    (2.5, 0, 5, {"integer": True}, "must be an integer"),
    (0, 0, 5, {"lo_open": True}, "must be positive and at most 5, got 0"),
    (-1, 1, 5, {}, "must be at least 1 and at most 5, got -1"),
])
def test_number_refuses_non_finite_and_out_of_range(v, lo, hi, kw, needle) -> None:
    with pytest.raises(UserError, match="x ") as e:
        number("x", v, lo, hi, **kw)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert number("x", 3, 0, 5) == 3.0 and number("x", 3, 0, 5, integer=True) == 3


@pytest.mark.parametrize("over, needle", [
    ({"duration": float("nan")}, "duration must be a finite number"),
    ({"duration": float("inf")}, "duration must be a finite number"),
    ({"duration": 10.0**9}, "duration must be positive and at most 604800"),
    ({"rate": float("nan")}, "rate must be a finite number"),
    ({"rate": 10**9}, "rate must be positive and at most 100000"),
    ({"client_timeout": float("nan")}, "client_timeout must be a finite number"),
    ({"recovery": float("inf")}, "recovery must be a finite number"),
    ({"final_read_timeout": -1}, "final_read_timeout must be at least 0"),
    ({"concurrency": 100_000_000}, f"concurrency must be at least 1 and at most {MAX_CONCURRENCY}"),
    ({"concurrency": 0}, "concurrency must be at least 1"),
    ({"nodes": 10**6}, "nodes must be at least 1 and at most 200"),
    ({"seed": 2**70}, "seed must be at least"),
    ({"workload.keys": 10**9}, "workload.keys must be at least 1 and at most 100000"),
    ({"workload.name": "session", "workload.keys": 2000, "concurrency": 1000}, "workload.keys x concurrency"),
    ({"workload.zipf_s": float("nan")}, "workload.zipf_s must be a finite number"),
    ({"workload.foreign_reads": float("nan"), "workload.name": "session"}, "workload.foreign_reads must be a finite"),
    ({"workload.mix.add": float("inf")}, "workload.mix.add must be a finite number"),
    ({"checkers.time_limit": float("nan")}, "checkers.time_limit must be a finite number"),
    ({"target.request_timeout": float("inf")}, "target.request_timeout must be a finite number"),
    ({"nemesis.interval": float("nan")}, "nemesis.interval must be a finite number"),
    ({"nemesis.start_at": float("inf")}, "nemesis.start_at must be a finite number"),
    ({"duration": 604800, "nemesis.interval": 0.1}, "plans about 6048000 fault changes (at most 100000)"),
    ({"duration": 6000, "nemesis.interval": 1, "nodes": 200, "target.partitions": 256},
     "(at most 625 with partitions on 200 nodes)"),
])
def test_every_spec_number_is_finite_and_bounded(over: dict, needle: str) -> None:
    with pytest.raises(UserError) as e:
        load_spec(None, over)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("argv, needle", [
    (["run", "--duration", "nan"], "duration must be a finite number, got nan"),
    (["run", "--duration", "inf"], "duration must be a finite number, got inf"),
    (["run", "--duration", "1e309"], "duration must be a finite number, got inf"),
    (["run", "--rate", "nan"], "rate must be a finite number"),
    (["run", "--client-timeout", "nan"], "client_timeout must be a finite number"),
    (["run", "--concurrency", "100000000"], "concurrency must be at least 1 and at most"),
    (["run", "--nemesis-interval=-inf"], "nemesis.interval must be a finite number"),
    (["ls", "--last", "-1"], "--last must be at least 1"),
    (["ls", "--last", "0"], "--last must be at least 1"),
    (["cluster", "status", "--timeout", "nan"], "--timeout must be a finite number"),
    (["image", "build", "--timeout", "inf"], "--timeout must be a finite number"),
])
def test_cli_numbers_go_through_the_same_checks(argv: list[str], needle: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--histories", str(tmp_path)] if argv[0] in ("run", "ls") else []
    one_line_error(capsys, argv + extra, needle)
    assert not any(tmp_path.iterdir()), "nothing started, nothing stored"


@pytest.mark.parametrize("data, needle", [
    ({"repeats": 100_000_000}, "repeats must be at least 1 and at most 1000"),
    ({"repeats": "3"}, "repeats must be an integer"),
    ({"time_limit": float("nan")}, "time_limit must be a finite number"),
    ({"time_limit": 0}, "time_limit must be positive"),
    ({"matrix": {f"target.x{i}": list(range(10)) for i in range(8)}}, "at most 10000 runs"),
    ({"repeats": 1000, "matrix": {"nodes": list(range(3, 20))}}, "17 cells x 1000 repeats"),
    ({"cell": [{"id": "a", "time_limit": float("inf")}]}, "cell 'a': time_limit must be a finite number"),
    ({"base": 5}, "base must be a table"),
    ({"cell": 5}, "cell must be [[cell]] tables"),
])
def test_campaign_numbers_are_bounded_before_expanding(data: dict, needle: str) -> None:
    """A matrix is refused by its size, not after expanding 10^8 cells (``repeats = 100000000`` hung)."""
    full = {"name": "t", "matrix": {"nodes": [3]}, **data}
    with pytest.raises(UserError) as e:
        parse_campaign(full)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


# ---------------------------------------------------------------- deep nesting


def test_decoders_make_deep_nesting_and_huge_ints_their_own_decode_errors() -> None:
    with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
        json_loads(DEEP)
    with pytest.raises(json.JSONDecodeError, match="digits"):
        json_loads("1" * 5000)
    import tomllib
    with pytest.raises(tomllib.TOMLDecodeError, match="nested too deeply"):
        toml_loads(f"v = {DEEP}")
    assert json_loads("[[1]]") == [[1]] and toml_loads("v = [[1]]") == {"v": [[1]]}


def test_deeply_nested_history_line_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "deep.jsonl"
    bare.write_text(DEEP + "\n")
    one_line_error(capsys, ["check", str(bare)], "deep.jsonl:1: nested too deeply")
    run = tmp_path / "t" / "20260101T000000"
    run.mkdir(parents=True)
    lines = (EXAMPLES / "cart-valid.jsonl").read_text().splitlines()
    lines[2] = '{"index": 2, "value": ' + DEEP + "}"
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")
    one_line_error(capsys, ["check", str(run)], "history.jsonl:3: nested too deeply")
    one_line_error(capsys, ["report", str(run)], "nested too deeply")


def test_deeply_nested_edn_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edn = tmp_path / "deep.edn"
    edn.write_text("{:type :invoke, :f :read, :process 0, :time 0, :value " + DEEP + "}\n")
    one_line_error(capsys, ["import-edn", str(edn), str(tmp_path / "out")], "nested too deeply")
    edn.write_text(DEEP + "\n")
    one_line_error(capsys, ["import-edn", str(edn), str(tmp_path / "out")], "deep.edn")


def test_deeply_nested_specs_and_campaigns_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "deep.toml"
    spec.write_text(f"x = {DEEP}\n")
    one_line_error(capsys, ["run", "--spec", str(spec), "--histories", str(tmp_path)], "deep.toml: not valid TOML: nested too deeply")
    stored = tmp_path / "spec.json"
    stored.write_text('{"name": ' + DEEP + "}")
    one_line_error(capsys, ["run", "--spec", str(stored), "--histories", str(tmp_path)], "not valid JSON: nested too deeply")
    camp = tmp_path / "camp.toml"
    camp.write_text(f'name = "c"\nx = {DEEP}\n')
    one_line_error(capsys, ["campaign", str(camp), "--dry-run"], "camp.toml: not valid TOML: nested too deeply")
    one_line_error(capsys, ["run", "--set", f"name={'[' * 5000}", "--histories", str(tmp_path)], "name must be a non-empty file name")
    one_line_error(capsys, ["run", "--set", f"name={'[' * 5000 + ']' * 5000}", "--histories", str(tmp_path)], "name must be")
    folder = tmp_path / "campaigns" / "c" / "1"
    folder.mkdir(parents=True)
    (folder / "campaign.json").write_text(DEEP)
    with pytest.raises(UserError, match="damaged: nested too deeply"):
        CampaignRun.load(folder)
