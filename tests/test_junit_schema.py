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
