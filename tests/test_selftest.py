"""``dynharness selftest`` without a cluster: the plan it builds, the table it draws, its exit codes, bad input.

Real runs of the zoo are ``tests/test_selftest_cells.py``.
"""
from __future__ import annotations

import json

import pytest

from harness import plugins, selftest
from harness.campaign import CampaignRun, CellResult, validate_cells
from harness.cli import main
from harness.errors import UserError
from targets.dynamo.zoo import ZOO



@pytest.fixture(autouse=True)
def todays_plugins(monkeypatch):
    """As if the convergence checker were not installed (a plug-in a scenario waits for), whatever the
    installed metadata says."""
    load = plugins.load

    def only_here(group, name, what=None):
        if (group, name) == ("checkers", "convergence"):
            raise UserError(f"unknown {group} {name!r}")
        return load(group, name, what)
    monkeypatch.setattr(plugins, "load", only_here)
    return load


def test_plan_has_a_cell_per_bug_scenario_and_seed_plus_the_clean_store():
    defn = selftest.plan("dynamo", seeds=2, repeat=3)
    runnable = {b: [s for s in ZOO.bugs[b].scenarios if not ZOO.scenarios[s].needs] for b in ZOO.bugs}
    assert sum(len(v) for v in runnable.values()) == len(ZOO.bugs)    # the convergence scenario waits
    bug_cells = [c for c in defn.cells if c.labels["bug"] != "clean"]
    assert len(bug_cells) == 2 * sum(len(v) for v in runnable.values())
    used = {s for v in runnable.values() for s in v}
    clean = [c for c in defn.cells if c.labels["bug"] == "clean"]
    assert {c.labels["scenario"] for c in clean} == used and len(clean) == len(used) * 6
    assert {c.labels["seed"] for c in clean} == set(range(1, 7))
    for c in bug_cells:
        assert c.expect == ("verdict == invalid",) and c.overrides["target.bug"] == c.labels["bug"]
        assert c.overrides["seed"] == c.labels["seed"] and c.overrides["name"] == f"selftest.{c.id}"
    for c in clean:
        assert c.expect == ("verdict != invalid",) and "target.bug" not in c.overrides
    assert "convergence-after-partition" not in {c.labels["scenario"] for c in defn.cells}
    validate_cells(defn)                                 # every scenario is a valid spec, before any run


def test_plan_picks_bugs_and_refuses_what_it_cannot_run():
    defn = selftest.plan("dynamo", ["ring-wrap-truncated"], seeds=1, clean=False)
    assert [c.id for c in defn.cells] == ["ring-wrap-truncated--cart-availability--s1"]
    assert selftest.described(defn)["bugs"] == ["ring-wrap-truncated"]
    with pytest.raises(UserError, match="unknown bug 'nope'"):
        selftest.plan("dynamo", ["nope"])
    with pytest.raises(UserError, match="at least 1"):
        selftest.plan("dynamo", seeds=0)
    with pytest.raises(UserError, match="nothing to run"):
        selftest.plan("dynamo", clean=False, buggy=False)
    only = selftest.plan("dynamo", ["ring-wrap-truncated"], seeds=2, repeat=2, buggy=False)
    assert [c.id for c in only.cells] == [f"clean--cart-availability--s{s}" for s in (1, 2, 3, 4)]
    with pytest.raises(UserError, match="the etcd target has no bug zoo"):
        selftest.plan("etcd")


def test_a_scenario_waits_for_its_plugin_and_runs_once_it_is_registered(monkeypatch, todays_plugins):
    assert selftest.missing_needs(["checkers:convergence", "checkers:perf"]) == ["checkers:convergence"]
    assert selftest.missing_needs(["checkers:no-such-module"]) == ["checkers:no-such-module"]
    assert selftest.need_text("checkers:convergence") == "checker convergence"
    assert [c.labels["scenario"] for c in selftest.plan("dynamo", ["ae-always-in-sync"], seeds=1,
                                                        clean=False).cells] == ["cart-wipe-cold"]
    monkeypatch.setattr(plugins, "load", lambda group, name, what=None: object() if name == "convergence"
                        else todays_plugins(group, name, what))
    defn = selftest.plan("dynamo", ["ae-always-in-sync"], seeds=1, clean=False)
    assert [c.labels["scenario"] for c in defn.cells] == ["cart-wipe-cold", "convergence-after-partition"]


def _camp(tmp_path, defn, outcomes):
    """A finished selftest campaign whose cells ended as ``outcomes[cell id] = (verdict, invalid checkers)``."""
    cells = {}
    for c in defn.cells:
        verdict, checkers = outcomes.get(c.id, ("valid", []))
        run = tmp_path / c.id
        run.mkdir()
        (run / "results.json").write_text(json.dumps({"verdict": verdict, "checkers": {
            name: {"verdict": "invalid" if name in checkers else "valid"} for name in ("perf", "lost-writes", *checkers)}}))
        cells[c.id] = CellResult(state="done", verdict=verdict, run_dir=str(run))
    return CampaignRun(defn, tmp_path, cells, "")


def test_table_says_caught_missed_waiting_and_flagged(tmp_path):
    defn = selftest.plan("dynamo", ["ring-wrap-truncated", "storage-drops-wal", "ae-always-in-sync"], seeds=2)
    caught = {f"ring-wrap-truncated--cart-availability--s{s}": ("invalid", ["perf"]) for s in (1, 2)}
    camp = _camp(tmp_path, defn, {**caught, "storage-drops-wal--cart-crash-all--s1": ("invalid", ["lost-writes"])})
    rows = {(r.bug, r.scenario): r for r in selftest.table(camp, ZOO)}
    ring = rows[("ring-wrap-truncated", "cart-availability")]
    assert ring.ok and ring.outcome() == "caught 2/2" and ring.checkers == {"perf"}
    wal = rows[("storage-drops-wal", "cart-crash-all")]
    assert not wal.ok and wal.outcome() == "MISSED 1/2"
    waits = rows[("ae-always-in-sync", "convergence-after-partition")]
    assert not waits.ok and waits.outcome() == "needs checker convergence"
    assert rows[("ae-always-in-sync", "cart-wipe-cold")].outcome() == "MISSED 0/2"
    assert rows[("clean", "cart-crash-all")].outcome() == "clean 0/2"
    assert selftest.bug_verdicts(list(rows.values())) == {
        "ring-wrap-truncated": True, "storage-drops-wal": False, "ae-always-in-sync": False}
    assert selftest.exit_code(camp, list(rows.values())) == 1
    md = selftest.markdown(list(rows.values()), ZOO)
    assert "| ring-wrap-truncated | ring / preference lists | cart-availability | caught 2/2 | perf |" in md
    assert "1 of 3 bugs caught" in md


def test_all_caught_and_clean_is_exit_0_a_flagged_clean_store_is_not(tmp_path):
    defn = selftest.plan("dynamo", ["ring-wrap-truncated"], seeds=1)
    bug = {"ring-wrap-truncated--cart-availability--s1": ("invalid", ["perf"])}
    (tmp_path / "a").mkdir()
    camp = _camp(tmp_path / "a", defn, bug)
    assert selftest.exit_code(camp, selftest.table(camp, ZOO)) == 0
    (tmp_path / "b").mkdir()
    camp = _camp(tmp_path / "b", defn, {**bug, "clean--cart-availability--s1": ("invalid", ["perf"])})
    rows = selftest.table(camp, ZOO)
    assert rows[-1].outcome() == "FLAGGED 1/1" and selftest.exit_code(camp, rows) == 1
    camp.cells["clean--cart-availability--s1"] = CellResult(state="error", error="boom")
    assert selftest.exit_code(camp, selftest.table(camp, ZOO)) == 3


@pytest.mark.parametrize("argv, message", [
    (["selftest", "--bugs", "nope"], "unknown bug 'nope'"),
    (["selftest", "--target", "etcd"], "the etcd target has no bug zoo"),
    (["run", "--set", "target.bug=nope"], "target.bug: unknown bug 'nope'"),
    (["run", "--target", "etcd", "--workload", "register", "--set", "target.bug=dot-from-context"],
     "unknown etcd setting 'bug'"),
])
def test_bad_bug_input_is_one_line_and_exit_3(argv, message, capsys, tmp_path):
    assert main([*argv, "--histories", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not any(tmp_path.iterdir())                  # refused before anything started
