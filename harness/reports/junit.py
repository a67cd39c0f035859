"""``junit.xml``: a campaign as JUnit test cases, so any CI shows which cell broke which expectation.

One ``<testcase>`` per cell for "the run completed" and one per (cell,
expectation); a broken expectation is a ``<failure>`` whose message names the
actual value, a cell that could not run is an ``<error>``.

The file keeps to the common (Jenkins / Ant) JUnit schema that CI servers validate against
(``tests/data/junit-common.xsd``): a ``<testcase>`` may hold only its outcome and
``<system-out>``/``<system-err>``, so each cell's labels, verdict, run folder and metrics go to
the suite's ``<properties>`` (named ``<cell>.<label>``, for tools that read properties) and to
the cell's run case as ``<system-out>`` lines (what a person reads in the CI's test view). A
cell run on a Dask worker (``--jobs``/``--scheduler``) has ``<cell>.worker`` among them.
"""
from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from harness.reports.summary import METRICS, fmt_metric


def _cell_facts(c: Any, r: Any) -> list[tuple[str, str]]:
    """(name, value) of everything known about one cell's run, in the order a reader wants it."""
    facts = [(k, str(v)) for k, v in c.labels.items()]
    facts += [("verdict", str(r.verdict)), ("run_dir", str(r.run_dir))]
    if r.worker:                    # the Dask worker that ran it (campaign --jobs/--scheduler)
        facts.append(("worker", str(r.worker)))
    facts += [(k, fmt_metric(k, r.metrics[k])) for k, _, _ in METRICS if r.metrics.get(k) is not None]
    return facts


def campaign_junit(camp: Any) -> str:
    """JUnit XML text of a CampaignRun (one testsuite named after the campaign)."""
    suite = ET.Element("testsuite", name=f"dynharness.{camp.defn.name}")
    props = ET.SubElement(suite, "properties")  # the schema wants them before every testcase
    tests = failures = errors = skipped = 0
    total_time = 0.0
    for c in camp.defn.cells:
        r = camp.cells[c.id]
        cls = f"{camp.defn.name}.{c.id}"
        secs = r.seconds or 0.0
        total_time += secs
        run_case = ET.SubElement(suite, "testcase", classname=cls, name="run", time=f"{secs:.1f}")
        tests += 1
        facts = _cell_facts(c, r)
        for k, v in facts:
            ET.SubElement(props, "property", name=f"{c.id}.{k}", value=v)
        if r.state == "pending":
            ET.SubElement(run_case, "skipped", message="cell not run")
            skipped += 1
        elif r.state != "done":
            el = ET.SubElement(run_case, "error", message=f"{r.state}: {r.error or ''}", type=r.state)
            el.text = r.error or r.state
            errors += 1
        ET.SubElement(run_case, "system-out").text = "\n".join(f"{k}: {v}" for k, v in facts) + "\n"
        for e in r.expectations:
            tests += 1
            case = ET.SubElement(suite, "testcase", classname=cls, name=f"expect {e['expect']}", time="0")
            if not e["ok"]:
                failures += 1
                el = ET.SubElement(case, "failure", message=e["message"], type="expectation")
                el.text = f"cell {c.id}: {e['expect']}: {e['message']} (run: {r.run_dir})"
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{total_time:.1f}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
