"""Campaigns and CI expectations: parsing, matrix expansion, running with a fake runner, resume, outputs."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from checkers.base import CheckContext
from checkers.perf import PerfChecker
from harness.campaign import (CampaignRun, CellResult, load_campaign, parse_campaign, run_campaign,
                              validate_cells)
from harness.errors import UserError
from harness.expectations import cell_metrics, evaluate, parse_expectation, parse_expectations
from harness.reports.synthetic import write_synthetic_run
from harness.runs import load_run


# ---------- expectations ----------

def test_expectation_holds_and_breaks_with_the_actual_value():
    e = parse_expectation("lost_writes == 0")
    assert e.evaluate({"lost_writes": 0}).ok
    out = e.evaluate({"lost_writes": 7})
    assert not out.ok and "lost_writes is 7" in out.message and "== 0" in out.message


def test_expectation_operators_and_percent():
    m = {"max_siblings": 3, "lost_share": 0.42, "availability": 0.99}
    assert parse_expectation("max_siblings <= 3").evaluate(m).ok
    assert not parse_expectation("max_siblings < 3").evaluate(m).ok
    assert parse_expectation("lost_share > 20%").evaluate(m).ok
    assert not parse_expectation("availability >= 99.5%").evaluate(m).ok
    assert parse_expectation("max_siblings != 4").evaluate(m).ok


def test_unknown_ok_accepts_valid_and_unknown_only():
    e = parse_expectation('linearizable = "unknown-ok"')
    assert e.evaluate({"linearizable": "valid"}).ok
    assert e.evaluate({"linearizable": "unknown"}).ok
    assert not e.evaluate({"linearizable": "invalid"}).ok


def test_missing_metric_breaks_the_expectation():
    out = parse_expectation("rw_violations == 0").evaluate({"lost_writes": 0})
    assert not out.ok and "not measured" in out.message


@pytest.mark.parametrize("bad", ["lost_writs == 0", "lost_writes ~ 0", "lost_writes == zero", "== 3",
                                 'linearizable < "unknown-ok"', "lost_writes"])
def test_bad_expectations_are_one_line_user_errors(bad):
    with pytest.raises(UserError) as ei:
        parse_expectation(bad)
    assert "\n" not in str(ei.value)


def test_cell_metrics_sums_session_violations_and_reads_checker_counts():
    results = {"verdict": "invalid", "summary": {"rw_violations": 2, "mr_violations": 1},
               "checkers": {"session": {"counts": {"mw_violations": 4, "not_headline": 9}}}}
    m = cell_metrics(results)
    assert m["session_violations"] == 7 and m["verdict"] == "invalid" and "not_headline" not in m
    assert [o.ok for o in evaluate(parse_expectations(["verdict == invalid", "session_violations <= 6"]), results)] == [True, False]


# ---------- campaign files ----------

MATRIX = {
    "name": "t", "repeats": 1, "time_limit": 60, "expect": ["max_siblings <= 100"],
    "base": {"nodes": 5, "duration": 5, "target": {"fsync": "never"}},
    "matrix": {"nrw": [[3, 1, 1], [3, 2, 2], "3/1/3"], "mode": ["lww", "vclock"], "nemesis": ["none", "split"]},
    "nemeses": {"split": {"faults": ["partition"], "interval": 5}},
    "expectations": [{"where": {"mode": "vclock"}, "expect": ["lost_writes == 0"]},
                     {"where": {"nrw": [3, 2, 2]}, "expect": ["stale_read_share <= 0.5"]}],
}


def test_matrix_expands_to_every_combination_with_overrides_and_expectations():
    d = parse_campaign(MATRIX)
    assert len(d.cells) == 3 * 2 * 2
    assert len({c.id for c in d.cells}) == 12
    c = next(c for c in d.cells if c.labels == {"nrw": "3/2/2", "mode": "vclock", "nemesis": "split"})
    assert c.overrides["target.n"] == 3 and c.overrides["target.r"] == 2 and c.overrides["target.mode"] == "vclock"
    assert c.overrides["nemesis.faults"] == ["partition"] and c.overrides["target.fsync"] == "never"
    assert c.overrides["name"] == f"t.{c.id}" and c.time_limit == 60
    assert set(c.expect) == {"max_siblings <= 100", "lost_writes == 0", "stale_read_share <= 0.5"}
    lww_none = next(c for c in d.cells if c.labels == {"nrw": "3/1/1", "mode": "lww", "nemesis": "none"})
    assert lww_none.expect == ("max_siblings <= 100",) and lww_none.overrides["nemesis.faults"] == []


def test_explicit_cells_and_repeats():
    d = parse_campaign({"name": "x", "repeats": 2, "cell": [
        {"id": "a", "mode": "lww", "set": {"target": {"pr": 2}}, "expect": ["lost_writes > 0"]},
        {"id": "b", "nrw": [3, 1, 1], "workload": "register"}]})
    assert [c.id for c in d.cells] == ["a-r1", "a-r2", "b-r1", "b-r2"]
    assert d.cells[0].overrides["target.pr"] == 2 and d.cells[0].labels["repeat"] == 1
    assert d.cells[2].overrides["workload.name"] == "register"


@pytest.mark.parametrize("data, words", [
    ({"name": "x", "matrix": {"mode": ["lww"]}, "colour": 1}, "unknown campaign field 'colour'"),
    ({"name": "x"}, "no cells"),
    ({"name": "x", "matrix": {"nemesis": ["storm"]}}, "'storm' is not defined"),
    ({"name": "x", "matrix": {"nrw": [[3, 2]]}}, "triples"),
    ({"name": "x", "matrix": {"mode": ["lww"]}, "expect": ["lost == 0"]}, "unknown count 'lost'"),
    ({"name": "x", "cell": [{"id": "a", "bogus": 1}]}, "unknown field 'bogus'"),
    ({"name": "x", "matrix": {"speed": [1]}}, "unknown matrix axis"),
])
def test_bad_campaigns_are_one_line_errors(data, words):
    with pytest.raises(UserError) as ei:
        parse_campaign(data, source="c.toml")
    assert words in str(ei.value) and str(ei.value).startswith("c.toml: ") and "\n" not in str(ei.value)


@pytest.mark.parametrize("name", ["riak-2013", "nrw-matrix", "ci-smoke"])
def test_builtin_campaigns_resolve_to_valid_specs(name):
    d = load_campaign(builtin=name)
    validate_cells(d)   # every cell's overrides pass harness.spec.load_spec
    assert d.cells and all(c.time_limit for c in d.cells)


def test_unknown_builtin_names_the_known_ones():
    with pytest.raises(UserError, match="ci-smoke"):
        load_campaign(builtin="nope")


def test_riak_2013_has_the_jepsen_table_cells():
    d = load_campaign(builtin="riak-2013")
    modes = {c.id: c.overrides.get("target.mode") for c in d.cells}
    assert {"lww", "vclock"} <= set(modes.values())
    strict = [c for c in d.cells if c.overrides.get("target.pr")]
    assert strict and all(c.overrides["target.pw"] for c in strict)
    vc = [c for c in d.cells if c.overrides.get("target.mode") == "vclock"]
    assert any("lost_writes == 0" in c.expect for c in vc)


def test_nrw_matrix_covers_the_six_triples_with_a_slow_node_and_with_partitions():
    d = load_campaign(builtin="nrw-matrix")
    triples = {c.labels["nrw"] for c in d.cells}
    assert triples == {"3/1/1", "3/1/2", "3/2/1", "3/2/2", "3/3/1", "3/1/3"}
    assert {c.labels["nemesis"] for c in d.cells} == {"slow-node", "partition"}
    assert {c.labels["workload"] for c in d.cells} == {"session", "register"}
    assert {c.labels["mode"] for c in d.cells if c.labels["workload"] == "register"} == {"lww"}



def test_nrw_matrix_expects_only_what_quorum_overlap_guarantees_under_a_slow_node():
    """The first column slows one node (no failure) so R+W <= N shows its stale reads whatever the
    load; only R+W > N cells carry expectations, and only what overlap promises at any timing."""
    d = load_campaign(builtin="nrw-matrix")
    for c in d.cells:
        if c.labels["nemesis"] != "slow-node":
            continue
        assert c.overrides["nemesis.faults"] == ["latency"] and c.overrides["nemesis.targets"] == "n1"
        n, r, w = (int(x) for x in c.labels["nrw"].split("/"))
        want = {"session": ["rw_violations == 0"], "register": ["stale_read_share == 0"]}[c.labels["workload"]]
        assert list(c.expect) == (want if r + w > n else []), c.id


# ---------- running (fake runner writing synthetic runs) ----------

class FakeRunner:
    """Writes a synthetic run per cell: LWW loses 40% of acked adds, vclock none."""

    def __init__(self, root: Path, interrupt_at: int | None = None, fail: set[str] = frozenset()):
        self.root, self.calls, self.interrupt_at, self.fail = root, [], interrupt_at, fail

    def run(self, defn, cell):
        self.calls.append(cell.id)
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        if cell.id in self.fail:
            return CellResult(state="error", error="node n3 did not start", exit_code=3)
        d = self.root / cell.overrides["name"] / f"run{len(self.calls)}"
        mode = cell.overrides.get("target.mode", "lww")
        write_synthetic_run(d, ops=300, mode=mode, lost_share=0.4 if mode == "lww" else 0.0, seed=len(self.calls))
        verdict = json.loads((d / "results.json").read_text())["verdict"]
        return CellResult(state="done", run_dir=str(d), verdict=verdict, exit_code=0, seconds=0.1)


SMALL = {"name": "small", "time_limit": 30, "matrix": {"nrw": [[3, 1, 1], [3, 2, 2]], "mode": ["lww", "vclock"]},
         "expect": ["lost_writes == 0"]}


def test_campaign_runs_every_cell_and_reports_broken_expectations(tmp_path):
    runner = FakeRunner(tmp_path)
    camp = run_campaign(parse_campaign(SMALL), histories=tmp_path, runner=runner)
    assert len(runner.calls) == 4 and all(r.state == "done" for r in camp.cells.values())
    broken = camp.broken()
    assert {cid for cid, _ in broken} == {"311-lww", "322-lww"}
    assert camp.exit_code() == 1
    assert camp.cells["311-lww"].metrics["lost_writes"] > 0 and camp.cells["311-vclock"].metrics["lost_writes"] == 0
    d = camp.dir
    assert d.parent == tmp_path / "campaigns" / "small"
    for f in ("campaign.json", "summary.md", "junit.xml", "index.html"):
        assert (d / f).is_file(), f
    # each cell's run got its report, and the index links to it by relative path
    idx = (d / "index.html").read_text()
    for r in camp.cells.values():
        assert (Path(r.run_dir) / "report.html").is_file()
        rel = str(Path(r.run_dir, "report.html").relative_to(tmp_path))
        assert rel in idx
    md = (d / "summary.md").read_text()
    assert "expectation(s) broken" in md and "`lost_writes == 0`" in md and "| 311-vclock |" in md


def test_junit_has_a_case_per_cell_and_expectation(tmp_path):
    camp = run_campaign(parse_campaign(SMALL), histories=tmp_path, runner=FakeRunner(tmp_path, fail={"322-vclock"}))
    root = ET.parse(camp.dir / "junit.xml").getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 8 and suite.get("tests") == "8"
    assert suite.get("failures") == "3" and suite.get("errors") == "1"  # 2 LWW cells + the errored cell's expectation
    err = [c for c in cases if c.find("error") is not None]
    assert err[0].get("classname") == "small.322-vclock" and "did not start" in err[0].find("error").get("message")
    assert camp.exit_code() == 3


def test_interrupt_keeps_finished_cells_and_resume_runs_only_the_rest(tmp_path):
    defn = parse_campaign(SMALL)
    first = FakeRunner(tmp_path, interrupt_at=3)
    camp = run_campaign(defn, histories=tmp_path, runner=first)
    assert camp.interrupted and camp.exit_code() == 130
    states = {cid: r.state for cid, r in camp.cells.items()}
    assert states == {"311-lww": "done", "311-vclock": "done", "322-lww": "interrupted", "322-vclock": "pending"}
    loaded = CampaignRun.load(camp.dir)
    assert {cid: r.state for cid, r in loaded.cells.items()} == states
    second = FakeRunner(tmp_path)
    camp2 = run_campaign(loaded.defn, histories=tmp_path, runner=second, resume=loaded)
    assert second.calls == ["322-lww", "322-vclock"]
    assert camp2.dir == camp.dir and all(r.state == "done" for r in camp2.cells.values())
    assert camp2.exit_code() == 1


def test_load_refuses_a_folder_without_campaign_json(tmp_path):
    with pytest.raises(UserError, match="not a campaign folder"):
        CampaignRun.load(tmp_path)


def test_cli_dry_run_lists_cells_and_bad_file_is_one_line(tmp_path, capsys):
    from harness.cli import main

    assert main(["campaign", "--builtin", "ci-smoke", "--dry-run"]) == 0
    assert "cells" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\n[matrix]\nmode = ["lww"]\nexpect = 3\n')
    assert main(["campaign", str(bad)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("dynharness: error:") and err.count("\n") == 1
    assert main(["campaign"]) == 3


def test_live_table_shows_states_and_only_measured_columns(tmp_path):
    from rich.console import Console

    from harness.cli.campaign import live_table

    camp = run_campaign(parse_campaign(SMALL), histories=tmp_path, runner=FakeRunner(tmp_path, fail={"322-vclock"}))
    console = Console(record=True, width=250)
    console.print(live_table(camp, None, 0.0))
    text = console.export_text()
    assert "311-lww" in text and "error" in text and "1 broken of 1" in text
    assert "lost %" in text and "linearizable" not in text   # no register cell: no linearizability column
    assert " ops/s " in text


def test_ops_per_second_is_the_perf_checkers_load_throughput_in_every_summary(tmp_path):
    from harness.reports.summary import METRICS, Row

    results = {"verdict": "valid", "summary": {"lost_writes": 0},
               "checkers": {"perf": {"counts": {"load_ok_ops_per_s": 93.4, "ok_throughput_ops_s": 70.0}}}}
    m = cell_metrics(results)
    assert m["load_ok_ops_per_s"] == 93.4
    row = Row("c", {}, "done", "valid", m, 0, 0, None, None, None)
    assert row.cells_text()[[t for _, t, _ in METRICS].index("ops/s")] == "93.4"

    camp = run_campaign(parse_campaign(SMALL), histories=tmp_path, runner=FakeRunner(tmp_path))
    ops = {cid: r.metrics["load_ok_ops_per_s"] for cid, r in camp.cells.items()}
    assert all(v > 0 for v in ops.values())
    history = load_run(camp.cells["311-lww"].run_dir).history    # the synthetic run's figure is the checker's
    assert PerfChecker().check(history, CheckContext()).counts["load_ok_ops_per_s"] == pytest.approx(ops["311-lww"])
    md = (camp.dir / "summary.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| cell"))
    assert header.rstrip(" |").split(" | ")[-2] == "ops/s"      # the last metric, before the expectations
    assert f"| {ops['311-lww']:.1f} |" in md and "**ops/s** ok client ops per second" in md
    props = {p.get("name"): p.get("value") for p in ET.parse(camp.dir / "junit.xml").getroot().iter("property")}
    assert props["311-lww.load_ok_ops_per_s"] == f"{ops['311-lww']:.1f}"
    assert "ops/s" in (camp.dir / "index.html").read_text()


WIDE = {"name": "wide-matrix-for-narrow-terminals", "time_limit": 30,
        "matrix": {"nrw": [[3, 1, 1], [3, 2, 2]], "mode": ["lww", "vclock"], "nemesis": ["none", "partition"]},
        "nemeses": {"partition": {"faults": ["partition"]}}, "expect": ["lost_writes == 0", "max_siblings < 100"]}


@pytest.mark.parametrize("width", [80, 100])
def test_final_table_stays_readable_in_a_narrow_terminal(tmp_path, width):
    """Measured before: at 100 columns every cell was cut short ("311-lww-pa…", "inv…")."""
    from rich.console import Console

    from harness.cli.campaign import live_table

    camp = run_campaign(parse_campaign(WIDE), histories=tmp_path, runner=FakeRunner(tmp_path, fail={"322-vclock-partition"}))
    console = Console(record=True, width=width)
    console.print(live_table(camp, None, 0.0, width=width))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width and "…" not in text
    for cid, r in camp.cells.items():   # each cell's name, state, verdict and expectations whole, on its own line
        line = next(line for line in lines if f" {cid} " in line)
        assert f" {r.state} " in line and f" {r.verdict or '-'} " in line, line
        assert (" 1 broken of 2 " if cid.startswith(("311-lww", "322-lww")) else " 2/2 ok ") in line or r.state == "error"
    header = next(line for line in lines if " cell " in line)
    assert " lost " in header and " lost % " in header and " nemesis " not in header
    assert " ops/s " not in header   # throughput is the first metric left out
    caption = text.split("not shown at this width")[1]
    assert "nemesis" in caption and "ops/s" in caption


def test_only_some_cells_do_not_fail_for_the_others(tmp_path):
    runner = FakeRunner(tmp_path)
    camp = run_campaign(parse_campaign(SMALL), histories=tmp_path, runner=runner, only=["311-vclock"])
    assert runner.calls == ["311-vclock"]
    assert camp.cells["322-lww"].state == "pending" and camp.exit_code() == 0
