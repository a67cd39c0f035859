"""Run reports, campaign pages, the report/serve commands: built from synthetic run folders."""
from __future__ import annotations

import json
import re
import threading
import urllib.request

import pytest

from harness.cli import main
from harness.errors import UserError
from harness.history import History
from harness.ops import Op
from harness.reports.html import build_run_model, fault_windows, write_run_report
from harness.reports.synthetic import write_synthetic_run


@pytest.fixture(scope="module")
def cart_run(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("h") / "cart-test" / "20260101T000000", ops=600, seed=3)


@pytest.fixture(scope="module")
def register_run(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("h") / "reg-test" / "20260101T000000", workload="register",
                               ops=600, seed=4)


def test_model_lists_every_anomaly_with_the_ops_that_prove_it(cart_run):
    m = build_run_model(cart_run)
    results = json.loads((cart_run / "results.json").read_text())
    lost = results["checkers"]["lost-writes"]["anomalies"]
    assert m["verdict"] == "invalid" and m["anomaly_count"] == len(lost) > 0
    for a in m["anomalies"]:
        for i in a["ops"]:
            assert m["proof_ops"][str(i)]["index"] == i
    # the add the first anomaly cites is drawn on the timeline (its invoke index is a row)
    assert lost[0]["ops"][0] in m["ops"]["inv"]


def test_model_timeline_columns_and_aggregates_match_the_history(cart_run):
    m = build_run_model(cart_run)
    lines = [json.loads(x) for x in (cart_run / "history.jsonl").read_text().splitlines()]
    client_invokes = [o for o in lines if o["process"] != "nemesis" and o["type"] == "invoke"]
    completions = [o for o in lines if o["process"] != "nemesis" and o["type"] != "invoke"]
    cols = m["ops"]
    assert len(cols["t0"]) == len(client_invokes)
    assert all(len(v) == len(cols["t0"]) for v in cols.values())
    assert all(d >= 0 for d in cols["dur"])
    by_index = {o["index"]: o for o in lines}
    for i in range(0, len(cols["t0"]), 37):   # the compact columns decode to the history's ops
        inv = by_index[cols["inv"][i]]
        assert abs(cols["t0"][i] / 10 - inv["time"] / 1e6) <= 0.05
        if cols["dcomp"][i] >= 0:
            comp = by_index[cols["inv"][i] + cols["dcomp"][i]]
            assert comp["process"] == inv["process"] and comp["type"] != "invoke"
            assert abs((cols["t0"][i] + cols["dur"][i]) / 10 - comp["time"] / 1e6) <= 0.1
    assert sum(map(sum, m["throughput"].values())) == len(completions)
    assert m["lanes"][-1] == "final" and set(m["lanes"][:-1]) == {str(i) for i in range(5)}
    ok_reads = [o for o in completions if o["f"] == "read" and o["type"] == "ok" and "siblings" in o]
    assert m["siblings"]["reads"] == len(ok_reads) == sum(d["reads"] for d in m["siblings"]["divergent"])
    ok_with_siblings = [o for o in completions if o["type"] == "ok" and "siblings" in o]
    assert sum(n for _, n in m["siblings"]["histogram"]) == len(ok_with_siblings) > len(ok_reads)
    assert [w["kind"] for w in m["windows"]] == ["partition"] and m["windows"][0]["start"] < m["windows"][0]["end"]


def test_fault_windows_heal_closes_everything_and_failed_faults_are_marked():
    ms = 1_000_000
    ops = [Op(0, 1 * ms, "nemesis", "invoke", "start-partition", value={}),
           Op(1, 2 * ms, "nemesis", "info", "start-partition", value={"n1": "cut"}),
           Op(2, 3 * ms, "nemesis", "invoke", "kill", value=["n2"]),
           Op(3, 4 * ms, "nemesis", "info", "kill", value={"n2": "killed"}),
           Op(4, 5 * ms, "nemesis", "invoke", "start-clock", value={}),
           Op(5, 6 * ms, "nemesis", "fail", "start-clock", error="libfaketime missing"),
           Op(6, 9 * ms, "nemesis", "invoke", "heal"),
           Op(7, 10 * ms, "nemesis", "info", "heal")]
    w = fault_windows(History.of(ops), 20.0)
    assert [(x["kind"], x["start"], x["end"], x["failed"]) for x in w] == [
        ("partition", 1.0, 10.0, False), ("crash", 3.0, 10.0, False), ("clock", 5.0, 6.0, True)]


def test_report_is_one_self_contained_file(cart_run):
    page = write_run_report(cart_run).read_text()
    assert '<span class="verdict invalid" id="verdict">invalid</span>' in page
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert page.count("<script") == page.count("</script>") == 2


def test_values_from_the_history_cannot_break_out_of_the_page(tmp_path):
    run = write_synthetic_run(tmp_path / "x" / "1", ops=50, seed=9)
    lines = (run / "history.jsonl").read_text().splitlines()
    evil = json.loads(lines[0])
    evil["value"] = "</script><script>alert(1)</script>"
    lines[0] = json.dumps(evil)
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")
    page = write_run_report(run).read_text()
    assert page.count("</script>") == 2 and "alert(1)" in page  # present, but only as escaped JSON


def test_register_report_has_the_per_key_drill_down(register_run):
    m = build_run_model(register_run)
    lin = next(c for c in m["checkers"] if c["name"] == "linearizable")
    assert lin["per_key"][0]["verdict"] == "invalid"   # invalid keys first
    assert m["staleness"] and all(len(sr["points"]) >= 2 for c in m["staleness"] for sr in c["series"])
    page = write_run_report(register_run).read_text()
    assert 'id="per-key-table"' in page and 'id="staleness"' in page


def test_report_of_an_interrupted_run_without_results(tmp_path):
    run = write_synthetic_run(tmp_path / "x" / "1", ops=50, seed=2)
    (run / "results.json").unlink()
    page = write_run_report(run).read_text()
    assert "No results.json" in page and 'id="verdict">unknown<' in page


def test_report_command_run_campaign_and_bad_dir(tmp_path, capsys):
    from harness.campaign import parse_campaign, run_campaign
    from tests.test_campaign import FakeRunner

    run = write_synthetic_run(tmp_path / "t" / "1", ops=50, seed=1)
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file()
    camp = run_campaign(parse_campaign({"name": "c", "matrix": {"mode": ["lww", "vclock"]}}), histories=tmp_path,
                        runner=FakeRunner(tmp_path))
    (camp.dir / "index.html").unlink()
    assert main(["report", str(camp.dir), "--runs"]) == 0
    assert (camp.dir / "index.html").is_file()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nothing")]) == 3
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(UserError, match="neither a run folder"):
        from harness.cli.report import rebuild
        rebuild(tmp_path)


def test_serve_lists_runs_and_builds_missing_reports_on_loopback(tmp_path):
    from harness.cli.serve import make_server

    run = write_synthetic_run(tmp_path / "demo" / "20260101T000000", ops=50, seed=1)
    srv = make_server(tmp_path, 0)
    host, port = srv.server_address[:2]
    assert host == "127.0.0.1"
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        index = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert "demo/20260101T000000/report.html" in index and "invalid" in index
        assert not (run / "report.html").exists()
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/demo/20260101T000000/report.html", timeout=10).read().decode()
        assert 'id="verdict"' in page and (run / "report.html").is_file()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/../../etc/passwd", timeout=10)
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_campaign_heat_map_grid_and_per_cell_fallback(tmp_path):
    from harness.campaign import parse_campaign, run_campaign
    from harness.reports.campaign_page import heatmaps
    from harness.reports.summary import rows
    from tests.test_campaign import FakeRunner

    grid = run_campaign(parse_campaign({"name": "g", "matrix": {"nrw": [[3, 1, 1], [3, 2, 2]], "mode": ["lww", "vclock"]}}),
                        histories=tmp_path, runner=FakeRunner(tmp_path))
    lost = next(h for h in heatmaps(grid, rows(grid)) if h["key"] == "lost_writes")
    g = lost["groups"]["all cells"]
    assert (lost["row_axis"], lost["col_axis"]) == ("nrw", "mode")
    assert g["rows"] == ["3/1/1", "3/2/2"] and g["cols"] == ["lww", "vclock"]
    assert g["cells"][("3/1/1", "vclock")][0]["text"] == "0"
    # two explicit cells in the same N/R/W x mode slot (they differ in PR/PW): one row per cell
    explicit = run_campaign(parse_campaign({"name": "e", "cell": [
        {"id": "sloppy", "mode": "lww"}, {"id": "strict", "mode": "lww", "set": {"target": {"pr": 2}}}]}),
        histories=tmp_path, runner=FakeRunner(tmp_path))
    lost = next(h for h in heatmaps(explicit, rows(explicit)) if h["key"] == "lost_writes")
    assert lost["row_axis"] == "cell" and lost["groups"]["all cells"]["rows"] == ["sloppy", "strict"]


def test_large_data_is_embedded_compressed_and_decodes_to_the_model(tmp_path, monkeypatch):
    import base64
    import gzip

    from harness.reports import render

    run = write_synthetic_run(tmp_path / "x" / "1", ops=200, seed=2)
    monkeypatch.setattr(render, "COMPRESS_ABOVE", 1000)
    page = write_run_report(run).read_text()
    packed = re.search(r'<script type="application/octet-stream" id="run-data" data-encoding="gzip-base64">([^<]*)</script>', page)
    data = json.loads(gzip.decompress(base64.b64decode(packed.group(1))))
    assert data["ops"] == build_run_model(run)["ops"] and data["verdict"] == "invalid"


def test_staleness_curves_pair_observed_with_theory_and_read_bucket_lists():
    from harness.reports.html import _curves

    charts = _curves({"k_staleness_observed": {"1": 0.3, "2": 0.1}, "k_staleness_theory": {"1": 0.67, "2": 0.44},
                      "k_staleness_histogram": {"0": 40, "1": 9},
                      "t_visibility": [{"t_ms_from": 0, "t_ms_to": 1, "p_visible": 0.8},
                                       {"t_ms_from": 1, "t_ms_to": 5, "p_visible": 0.95}],
                      "nrw": {"n": 3, "r": 1, "w": 1}})
    by_name = {c["name"]: c for c in charts}
    assert [s["name"] for s in by_name["k_staleness"]["series"]] == ["observed", "theory"]
    assert by_name["k_staleness_histogram"]["series"][0]["points"] == [[0.0, 40.0], [1.0, 9.0]]
    assert by_name["t_visibility (p_visible by t_ms_to)"]["series"][0]["points"] == [[1.0, 0.8], [5.0, 0.95]]


def test_anomalies_accepted_by_design_are_notes_not_alarms(tmp_path):
    """A cart's resurrected removes with the resurrections checker valid: the tile and the list
    say "accepted by design" beside a VALID verdict, not a red alarm; lost writes stay alarms."""
    run = write_synthetic_run(tmp_path / "cart" / "20260101T000000", ops=300, seed=5)
    res = json.loads((run / "results.json").read_text())
    res["verdict"] = "valid"
    res["summary"] = {"resurrections": 3, "lost_writes": 0}
    res["checkers"] = {"resurrections": {"checker": "resurrections", "verdict": "valid", "counts": {"resurrections": 3},
                                         "anomalies": [{"kind": "resurrection", "description": "item 7 came back",
                                                        "ops": [1], "key": "c1"}] * 3, "details": {}}}
    (run / "results.json").write_text(json.dumps(res))
    m = build_run_model(run)
    assert m["accepted_keys"] == ["resurrections"] and (m["alarm_count"], m["accepted_count"]) == (0, 3)
    page = write_run_report(run).read_text()
    assert 'class="m accepted"' in page and "(accepted by design)" in page and 'class="m bad"' not in page
    assert "0 + 3 accepted" in page
    res["checkers"]["resurrections"]["verdict"] = "invalid"       # resurrections_invalid on: alarms again
    (run / "results.json").write_text(json.dumps(res))
    assert build_run_model(run)["accepted_keys"] == [] and 'class="m bad"' in write_run_report(run).read_text()


@pytest.fixture(scope="module")
def counterexample_run(tmp_path_factory):
    from harness.reports.synthetic import write_counterexample_run
    from harness.runs import check_run

    run = write_counterexample_run(tmp_path_factory.mktemp("h") / "counterexample" / "1")
    check_run(run, ["linearizable"])   # the real checker on the hand-built history
    return run


def test_linearizability_table_says_why_a_key_is_not_decided(counterexample_run):
    m = build_run_model(counterexample_run)
    rows = {r["key"]: r for r in next(c for c in m["checkers"] if c["name"] == "linearizable")["per_key"]}
    assert [r["label"] for r in rows.values()] == ["invalid", "not reached", "valid"]
    assert rows["x"]["ops"] == 5 and rows["x"]["progress"].startswith("3 of 5 ops linearized")
    assert rows["x"]["reason"].startswith("read -> 1 [9..13] cannot be placed")
    assert rows["z"]["progress"] == "never searched"
    assert rows["z"]["reason"].startswith("not reached: the checker stopped at the first non-linearizable key ('x')")
    assert rows["y"]["progress"].startswith("all 2 ops linearized")
    assert m["linear_summary"]["linearizable"] == {"invalid": 1, "not reached": 1, "valid": 1}
    page = write_run_report(counterexample_run).read_text()
    assert 'id="linearizability"' in page and "linearizable details (raw JSON)</summary>" in page


def test_counterexample_drawn_per_process_on_the_run_clock(counterexample_run):
    (v,) = build_run_model(counterexample_run)["linear_views"]
    assert v["unit"] == "ms" and v["processes"] == ["0", "1", "2", "3", "4"]
    roles = [(b["op"], b["role"], b["order"], b["process"], b["proof"]) for b in v["bars"]]
    assert roles == [("write 1", "prefix", 1, 0, True), ("write 2", "prefix", 2, 1, False),
                     ("read -> 2", "prefix", 3, 3, True), ("write 3 (info)", "other", None, 4, False),
                     ("read -> 1", "blocked", None, 2, True)]
    assert [b["open"] for b in v["bars"]] == [False, False, False, True, False]   # the timed-out write never ended
    bars = {b["op"]: b for b in v["bars"]}
    # on the run's clock: write 1 [0.2 s, 0.4 s] is as long as write 2 [0.5 s, 0.7 s]; the cut is where the red op completed
    assert abs((bars["write 1"]["x1"] - bars["write 1"]["x0"]) - (bars["write 2"]["x1"] - bars["write 2"]["x0"])) < 0.1
    assert v["cut"] == bars["read -> 1"]["x1"] and bars["read -> 1"]["label"].startswith("✗")
    assert [t["text"] for t in v["ticks"]] == ["0.2 s", "0.4 s", "0.6 s", "0.8 s", "1.0 s", "1.2 s"]


@pytest.mark.parametrize("info, label, reason", [
    ({"verdict": "unknown", "ops": 5, "steps": 0, "reason": "not finished: stopped once key 'a' was found non-linearizable"},
     "not reached", "not reached: the checker stopped at the first non-linearizable key ('a')"),
    ({"verdict": "unknown", "ops": 5, "steps": 40000, "reason": "not finished: stopped once key 'a' was found non-linearizable"},
     "undecided", "not finished: the checker stopped when another key ('a')"),
    ({"verdict": "unknown", "ops": 9, "steps": 12000, "reason": "time limit reached before the search finished"},
     "undecided", "search budget exhausted: the time limit ran out after 12,000 steps"),
    ({"verdict": "unknown", "ops": 9, "steps": 7000, "cache_peak": 201, "reason": "cache cap of 200 (linearized set, state) pairs reached"},
     "undecided", "search budget exhausted: the memory cap was reached with 201 states cached"),
    ({"verdict": "valid", "ops": 3}, "valid", ""),
    ("invalid", "invalid", "no linearization exists"),
])
def test_older_results_without_stop_causes_still_read_plainly(info, label, reason):
    from harness.reports.linear_view import key_rows

    (row,) = key_rows({"keys": {"k": info}})
    assert row["label"] == label and row["reason"].startswith(reason)


def test_a_long_prefix_is_cut_to_its_last_ops_but_every_proof_op_is_drawn():
    from harness.reports.linear_view import MAX_PREFIX, linear_views

    def op(i, text):
        return {"invoke": 2 * i, "complete": 2 * i + 1, "process": i % 3, "type": "ok", "op": text}

    prefix = [op(i, f"write {i}") for i in range(30)]
    blocked = op(30, "read -> 1")
    keys = {"k": {"verdict": "invalid", "longest_prefix": prefix, "blocked": blocked, "state_after_prefix": "29",
                  "counterexample": [prefix[1], prefix[29], blocked], "counterexample_minimal": True}}
    (v,) = linear_views({"checkers": {"linearizable": {"details": {"keys": keys}}}})
    orders = [b["order"] for b in v["bars"] if b["role"] == "prefix"]
    assert orders == [2] + list(range(31 - MAX_PREFIX, 31))       # write 1 (in the proof), then the last ones
    assert v["hidden_prefix"] == 30 - len(orders) and v["unit"] == "position"
    assert [b["proof"] for b in v["bars"]].count(True) == 3
    assert all(96 <= b["x0"] < b["x1"] <= 1000 for b in v["bars"])
