"""``junit.xml`` validates against both JUnit schema families CI servers read.

``tests/data/junit-common.xsd`` is the Jenkins/xunit shape (a testcase may hold skipped, error,
failure, system-out/-err); ``tests/data/junit-ant.xsd`` is Apache Ant's, the stricter one (a
testcase holds at most an error or failure; the suite needs timestamp, hostname, package and id,
properties first, system-out and system-err last). Campaigns with done, failed-expectation,
errored, interrupted and never-run cells, a shard and merged shards cover every shape the file
takes; each schema is checked to refuse a shape this project wrote before, so a pass means something.
"""
from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.campaign import CampaignRun, parse_campaign, run_campaign
from harness.campaign.shards import merge_campaigns, shard_cells
from harness.reports.junit import campaign_junit
from tests.test_campaign import SMALL, FakeRunner
from tests.test_campaign_shards import SIX
from tests.test_campaign_shards import FakeRunner as ShardRunner

xmlschema = pytest.importorskip("xmlschema")
DATA = Path(__file__).parent / "data"
SCHEMAS = {name: xmlschema.XMLSchema(DATA / f"junit-{name}.xsd") for name in ("common", "ant")}


def _valid_suite(text: str) -> ET.Element:
    """The one testsuite of a junit.xml text, after checking it against both schemas."""
    for schema in SCHEMAS.values():
        schema.validate(text)
    suites = ET.fromstring(text).findall("testsuite")
    assert len(suites) == 1
    return suites[0]


def _case(suite: ET.Element, cell: str, name: str = "run") -> ET.Element:
    return next(c for c in suite.findall("testcase") if c.get("classname").endswith(f".{cell}") and c.get("name") == name)


def _outcomes(suite: ET.Element) -> dict[tuple[str, str], tuple[str, str] | None]:
    """(classname, name) -> (outcome tag, type) or None for a passing case."""
    out = {}
    for c in suite.findall("testcase"):
        o = next(iter(c), None)
        out[c.get("classname"), c.get("name")] = (o.tag, o.get("type")) if o is not None else None
    return out


def test_campaign_junit_is_valid_under_both_schemas_and_keeps_each_cells_facts(tmp_path: Path) -> None:
    camp = run_campaign(parse_campaign(SMALL), histories=tmp_path, runner=FakeRunner(tmp_path, fail={"322-vclock"}))
    suite = _valid_suite((camp.dir / "junit.xml").read_text())
    assert suite.get("timestamp") == camp.started.removesuffix("Z") and "Z" not in suite.get("timestamp")
    assert (suite.get("hostname"), suite.get("package"), suite.get("id")) == (socket.gethostname(), "dynharness", "0")
    names = {p.get("name") for p in suite.find("properties")}
    assert {"311-lww.verdict", "311-lww.run_dir"} <= names
    assert all(len(c) <= 1 and c.find("system-out") is None for c in suite.findall("testcase"))
    out = suite.find("system-out").text
    block = out[out.index("== 311-lww =="):].split("\n\n")[0]
    assert f"verdict: {camp.cells['311-lww'].verdict}" in block and f"run_dir: {camp.cells['311-lww'].run_dir}" in block
    assert [ln for ln in out.splitlines() if ln.startswith("== ")] == [f"== {c.id} ==" for c in camp.defn.cells]
    assert suite.find("system-err") is not None
    failure = _case(suite, "311-lww", "expect lost_writes == 0").find("failure")
    assert failure.get("type") == "expectation" and "verdict: " in failure.text and "run_dir: " in failure.text
    assert _case(suite, "311-vclock", "expect lost_writes == 0").find("failure") is None
    error = _case(suite, "322-vclock").find("error")
    assert error.get("type") == "error" and "did not start" in error.get("message") and "state: error" in error.text
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("8", "3", "1")


def test_cells_not_run_are_errors_as_in_the_exit_code(tmp_path: Path) -> None:
    camp = run_campaign(parse_campaign(SMALL), histories=tmp_path, runner=FakeRunner(tmp_path, interrupt_at=3))
    assert camp.exit_code() == 130
    suite = _valid_suite((camp.dir / "junit.xml").read_text())
    outcomes = _outcomes(suite)
    assert outcomes["small.322-lww", "run"] == ("error", "interrupted")
    assert outcomes["small.322-vclock", "run"] == ("error", "not-run")
    assert "incomplete" in _case(suite, "322-vclock").find("error").get("message")
    assert suite.get("errors") == "2" and suite.find("skipped") is None and "skipped" not in suite.attrib
    assert "== 322-vclock ==\n" in suite.find("system-out").text


def test_a_shards_junit_holds_its_cells_and_the_merge_every_cell(tmp_path: Path) -> None:
    defn = parse_campaign(SIX)
    dirs = []
    for i in (1, 2, 3):
        part = run_campaign(defn, histories=tmp_path, runner=ShardRunner(tmp_path, fail={"313-vclock"}),
                            only=shard_cells(defn, i, 3), shard=(i, 3))
        suite = _valid_suite((part.dir / "junit.xml").read_text())
        mine = sorted(f"six.{cid}" for cid in shard_cells(defn, i, 3))
        assert sorted({c.get("classname") for c in suite.findall("testcase")}) == mine
        assert "not-run" not in str(_outcomes(suite)) and part.exit_code() in (1, 3)
        assert f"(shard {i}/3), left out: " in suite.find("system-out").text
        # rebuilt from campaign.json (dynharness report): the same cases, not the other shards' as not run
        assert _outcomes(ET.fromstring(campaign_junit(CampaignRun.load(part.dir))).find("testsuite")) == _outcomes(suite)
        dirs.append(part.dir)
    whole = merge_campaigns(dirs, histories=tmp_path / "m", out=tmp_path / "m" / "all")
    suite = _valid_suite((whole.dir / "junit.xml").read_text())
    assert len({c.get("classname") for c in suite.findall("testcase")}) == 6
    assert _outcomes(suite)["six.313-vclock", "run"] == ("error", "error") and whole.exit_code() == 3
    assert suite.get("hostname") == socket.gethostname()
    partial = merge_campaigns(dirs[:2], histories=tmp_path / "m", out=tmp_path / "m" / "two")
    suite = _valid_suite((partial.dir / "junit.xml").read_text())
    not_run = sorted(k[0] for k, v in _outcomes(suite).items() if v == ("error", "not-run"))
    assert not_run == sorted(f"six.{cid}" for cid in shard_cells(defn, 3, 3)) and partial.exit_code() == 3


OLD_TESTCASE = ('<testcase classname="small.311-lww" name="run" time="0.1">{}</testcase>')


def _suite_with(case: str, attrs: str = 'timestamp="2026-12-05T05:40:00" hostname="h" package="dynharness" id="0"') -> str:
    return (f'<testsuites><testsuite name="s" {attrs} tests="1" failures="0" errors="0" time="0.1">'
            f'<properties/>{case}<system-out/><system-err/></testsuite></testsuites>')


def test_the_schemas_refuse_the_shapes_written_before() -> None:
    assert SCHEMAS["ant"].is_valid(_suite_with(OLD_TESTCASE.format("")))           # the frame itself is fine
    assert SCHEMAS["common"].is_valid(_suite_with(OLD_TESTCASE.format("")))
    assert not SCHEMAS["common"].is_valid(_suite_with(OLD_TESTCASE.format(
        '<properties><property name="verdict" value="valid"/></properties>')))
    for inner in ("<system-out>verdict: valid</system-out>", '<skipped message="cell not run"/>',
                  '<failure message="m" type="expectation"/><failure message="n" type="expectation"/>'):
        assert not SCHEMAS["ant"].is_valid(_suite_with(OLD_TESTCASE.format(inner))), inner
    for attrs in ('hostname="h" package="dynharness" id="0"', 'timestamp="2026-12-05T05:40:00Z" hostname="h" '
                  'package="dynharness" id="0"', 'timestamp="2026-12-05T05:40:00" hostname="h"',
                  'timestamp="2026-12-05T05:40:00" hostname="h" package="dynharness" id="0" skipped="0"'):
        assert not SCHEMAS["ant"].is_valid(_suite_with("", attrs)), attrs


class OnWorkers(FakeRunner):
    """FakeRunner whose cells say which Dask worker ran them, as the Dask pool's results do."""

    def run(self, defn, cell):
        res = super().run(defn, cell)
        res.worker = f"host-a/{len(self.calls) % 2}"
        return res


def test_each_cells_worker_is_in_junit_summary_page_and_campaign_json(tmp_path: Path) -> None:
    import json

    camp = run_campaign(parse_campaign(SMALL), histories=tmp_path, runner=OnWorkers(tmp_path, fail={"322-vclock"}))
    workers = {cid: r.worker for cid, r in camp.cells.items()}
    assert set(workers.values()) == {"host-a/0", "host-a/1"}
    suite = _valid_suite((camp.dir / "junit.xml").read_text())   # the worker property keeps the file valid
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert {cid: props[f"{cid}.worker"] for cid in workers} == workers
    out = suite.find("system-out").text
    assert f"worker: {workers['311-lww']}" in out[out.index("== 311-lww =="):].split("\n\n")[0]
    summary = (camp.dir / "summary.md").read_text().splitlines()
    head = next(line for line in summary if line.startswith("| cell"))
    column = [c.strip() for c in head.strip("|").split("|")].index("worker")
    for cid, worker in workers.items():
        row = next(line for line in summary if line.startswith(f"| {cid} "))
        assert [c.strip() for c in row.strip("|").split("|")][column] == worker
    stored = json.loads((camp.dir / "campaign.json").read_text())
    assert {cid: c["worker"] for cid, c in stored["cells"].items()} == workers
    page = (camp.dir / "index.html").read_text()
    assert "<th>worker</th>" in page and all(f"<td>{w}</td>" in page for w in workers.values())


def test_a_serial_campaign_has_no_worker_column_or_property(tmp_path: Path) -> None:
    camp = run_campaign(parse_campaign(SMALL), histories=tmp_path, runner=FakeRunner(tmp_path))
    suite = ET.fromstring((camp.dir / "junit.xml").read_text()).find("testsuite")
    assert not [p for p in suite.find("properties") if p.get("name").endswith(".worker")]
    assert "worker" not in (camp.dir / "summary.md").read_text()
    assert "<th>worker</th>" not in (camp.dir / "index.html").read_text()
