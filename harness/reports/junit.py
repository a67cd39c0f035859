"""``junit.xml``: a campaign as JUnit test cases, so any CI shows which cell broke which expectation.

One ``<testcase>`` per cell for "the run completed" and one per (cell, expectation); a broken
expectation is a ``<failure>`` whose message names the actual value, a cell that could not run
is an ``<error>`` of its state (``error``, ``timeout``, ``interrupted``), and a cell this
invocation was to run but never started is an ``<error type="not-run">``: the campaign is then
incomplete and exits 3 (``CampaignRun.exit_code``), so the CI's test view says so too rather
than reporting it skipped. Cells another shard or ``--cell`` run owns are left out (the suite's
``<system-out>`` names them); ``campaign merge`` writes the whole campaign.

The file is valid under both JUnit schema families CI servers read (``tests/data/junit-common.xsd``,
the Jenkins/xunit shape, and ``tests/data/junit-ant.xsd``, Apache Ant's): a ``<testcase>`` holds at
most its ``<failure>``/``<error>``; the ``<testsuite>`` has ``timestamp``, ``hostname``,
``package`` and ``id``, its ``<properties>`` first and ``<system-out>``/``<system-err>`` last.
Each cell's labels, verdict, run folder and metrics are suite properties named
``<cell>.<label>`` (for tools that read properties), a block headed ``== <cell> ==`` in the
suite's ``<system-out>`` (what a person reads), and lines after the text of the cell's
failures and errors. A cell run on a Dask worker (``--jobs``/``--scheduler``) has
``<cell>.worker`` among them.
"""
from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from harness.reports.summary import METRICS, fmt_metric

#: What the ``<error>`` of a cell that was to run but never did says.
NOT_RUN = "cell not run: the campaign is incomplete"


def _cell_facts(c: Any, r: Any) -> list[tuple[str, str]]:
    """(name, value) of everything known about one cell's run, in the order a reader wants it."""
    facts = [(k, str(v)) for k, v in c.labels.items()]
    facts += [("state", str(r.state)), ("verdict", str(r.verdict)), ("run_dir", str(r.run_dir))]
    if r.worker:                    # the Dask worker that ran it (campaign --jobs/--scheduler)
        facts.append(("worker", str(r.worker)))
    facts += [(k, fmt_metric(k, r.metrics[k])) for k, _, _ in METRICS if r.metrics.get(k) is not None]
    return facts


def _outcome(case: ET.Element, tag: str, kind: str, message: str, text: str, facts: str) -> None:
    """A ``<failure>``/``<error>`` whose text ends with the cell's facts (what CI shows for a broken case)."""
    ET.SubElement(case, tag, message=message, type=kind).text = f"{text}\n\n{facts}"


def _timestamp(camp: Any) -> str:
    """The campaign's start as Ant writes it: ISO 8601 to the second, no time zone (UTC).
    (The epoch only for a campaign.json without "started", which run_campaign and merge never write.)"""
    return (camp.started or "1970-01-01T00:00:00").removesuffix("Z")[:19]


def campaign_junit(camp: Any) -> str:
    """JUnit XML text of a CampaignRun (one testsuite named after the campaign)."""
    suite = ET.Element("testsuite", name=f"dynharness.{camp.defn.name}", timestamp=_timestamp(camp),
                       hostname=camp.host or "unknown", package="dynharness", id="0")
    props = ET.SubElement(suite, "properties")  # both schemas want them before every testcase
    out: list[str] = []
    tests = failures = errors = 0
    total_time = 0.0
    for c in camp.defn.cells:
        r = camp.cells[c.id]
        if r.state == "pending" and not camp.asked(c.id):
            continue
        cls = f"{camp.defn.name}.{c.id}"
        secs = r.seconds or 0.0
        total_time += secs
        facts = _cell_facts(c, r)
        fact_lines = "\n".join(f"{k}: {v}" for k, v in facts)
        for k, v in facts:
            ET.SubElement(props, "property", name=f"{c.id}.{k}", value=v)
        out.append(f"== {c.id} ==\n{fact_lines}\n")
        run_case = ET.SubElement(suite, "testcase", classname=cls, name="run", time=f"{secs:.1f}")
        tests += 1
        if r.state == "pending":
            _outcome(run_case, "error", "not-run", NOT_RUN, f"cell {c.id}: {NOT_RUN}", fact_lines)
            errors += 1
        elif r.state != "done":
            _outcome(run_case, "error", r.state, f"{r.state}: {r.error or ''}", f"cell {c.id}: {r.error or r.state}",
                     fact_lines)
            errors += 1
        for e in r.expectations:
            tests += 1
            case = ET.SubElement(suite, "testcase", classname=cls, name=f"expect {e['expect']}", time="0")
            if not e["ok"]:
                failures += 1
                _outcome(case, "failure", "expectation", e["message"],
                         f"cell {c.id}: {e['expect']}: {e['message']} (run: {r.run_dir})", fact_lines)
    others = [c.id for c in camp.defn.cells if camp.cells[c.id].state == "pending" and not camp.asked(c.id)]
    if others:
        shard = f" (shard {camp.shard[0]}/{camp.shard[1]})" if camp.shard else ""
        out.insert(0, f"not run by this invocation{shard}, left out: {', '.join(others)}\n")
    ET.SubElement(suite, "system-out").text = "\n".join(out)
    ET.SubElement(suite, "system-err").text = ""
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("time", f"{total_time:.1f}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
