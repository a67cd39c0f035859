"""``junit.xml`` validates against the common JUnit schema CI servers read (tests/data/junit-common.xsd).

A campaign with a done, a failed-expectation, an errored and a never-run cell covers every
shape the file takes; the schema itself is checked to refuse the shape that used to be written
(``<properties>`` inside a ``<testcase>``), so a pass means something.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.campaign import parse_campaign, run_campaign
from tests.test_campaign import SMALL, FakeRunner

xmlschema = pytest.importorskip("xmlschema")
XSD = Path(__file__).parent / "data" / "junit-common.xsd"


def test_campaign_junit_is_valid_and_keeps_each_cells_facts(tmp_path: Path) -> None:
    camp = run_campaign(parse_campaign(SMALL), histories=tmp_path, runner=FakeRunner(tmp_path, fail={"322-vclock"}))
    text = (camp.dir / "junit.xml").read_text()
    xmlschema.XMLSchema(XSD).validate(text)
    suite = ET.fromstring(text).find("testsuite")
    names = {p.get("name") for p in suite.find("properties")}
    assert {"311-lww.verdict", "311-lww.run_dir"} <= names
    run_case = next(c for c in suite.findall("testcase") if c.get("classname").endswith("311-lww") and c.get("name") == "run")
    assert "verdict: " in run_case.find("system-out").text


def test_the_schema_refuses_properties_inside_a_testcase() -> None:
    old = ('<testsuites><testsuite name="s" tests="1" failures="0" errors="0"><testcase name="run">'
           '<properties><property name="verdict" value="valid"/></properties></testcase></testsuite></testsuites>')
    assert not xmlschema.XMLSchema(XSD).is_valid(old)


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
    text = (camp.dir / "junit.xml").read_text()
    xmlschema.XMLSchema(XSD).validate(text)               # the worker property keeps the file valid
    suite = ET.fromstring(text).find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert {cid: props[f"{cid}.worker"] for cid in workers} == workers
    run_case = next(c for c in suite.findall("testcase") if c.get("classname").endswith("311-lww") and c.get("name") == "run")
    assert f"worker: {workers['311-lww']}" in run_case.find("system-out").text
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
