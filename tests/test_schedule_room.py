"""A run too short for a requested fault is refused before anything starts, or runs saying so.

Measured: ``--duration 20`` with the default 10 s interval planned only the final heal while the
banner said ``faults=partition``. The refusal names the shortest duration and the longest
interval that work, and both really work; whether every kind fits does not depend on the seed.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.errors import UserError
from harness.spec import load_spec, unscheduled_faults
from nemeses.room import longest_interval, needed_duration, unscheduled
from nemeses.schedule import NemesisSpec

FAULTS = ("partition", "clock", "crash", "wipe", "pause", "loss", "latency")  # the built-in kinds

NODES = ["n1", "n2", "n3", "n4", "n5"]


def test_default_interval_in_a_20_s_run_is_refused_naming_what_works() -> None:
    with pytest.raises(UserError) as e:
        load_spec(None, {"duration": 20})
    msg = str(e.value)
    assert "no room for partition" in msg and "a duration above 20 s (e.g. 21)" in msg, msg
    assert "nemesis.interval <= 9.9" in msg and "--allow-unscheduled" in msg and "\n" not in msg
    assert load_spec(None, {"duration": 21}).faults == ("partition",)
    assert load_spec(None, {"duration": 20, "nemesis.interval": 9.9}).faults == ("partition",)


def test_allowed_it_builds_and_names_the_faults_that_will_not_happen() -> None:
    spec = load_spec(None, {"duration": 20, "nemesis.allow_unscheduled": True})
    assert unscheduled_faults(spec) == ("partition",)
    mixed = load_spec(None, {"duration": 25, "nemesis.faults": ["partition", "crash", "pause"],
                             "nemesis.interval": 5, "nemesis.allow_unscheduled": True, "seed": 3})
    assert len(unscheduled_faults(mixed)) == 1      # room for two of three kinds
    assert unscheduled_faults(load_spec(None, {})) == ()


def test_every_kind_needs_its_own_slot() -> None:
    """Three kinds at interval 5 from 5 s: 5-10, 15-20, 25-30 -> a run must be longer than 30 s."""
    spec = NemesisSpec.from_mapping({"faults": ["partition", "crash", "pause"], "interval": 5})
    assert needed_duration(spec) == 30
    assert unscheduled(spec, NODES, 1, 30.001) == ()
    assert len(unscheduled(spec, NODES, 1, 30)) == 1
    assert longest_interval(spec, 25) == 4.1        # 6 x 4.1 = 24.6 < 25
    crash = NemesisSpec.from_mapping({"faults": ["crash"], "interval": 10, "crash": {"restart_delay": 2},
                                      "start_at": 1})
    assert needed_duration(crash) == 3              # held restart_delay, not interval


def test_a_replay_is_not_checked_its_schedule_is_the_stored_one(tmp_path: Path) -> None:
    spec = load_spec(None, {"duration": 5, "replay_schedule": str(tmp_path)})
    assert spec.faults == ("partition",) and unscheduled_faults(spec) == ()


@settings(max_examples=80, deadline=None)
@given(faults=st.lists(st.sampled_from(FAULTS), min_size=1, max_size=7, unique=True),
       interval=st.floats(0.5, 20), duration=st.floats(1, 200), seed=st.integers(0, 10**6),
       overlap=st.booleans(), restart=st.one_of(st.none(), st.floats(0, 10)),
       start_at=st.one_of(st.none(), st.floats(0, 30)))
def test_every_kind_happens_exactly_when_the_timing_has_room(faults, interval, duration, seed, overlap, restart,
                                                             start_at) -> None:
    spec = NemesisSpec.from_mapping({"faults": faults, "interval": interval, "overlap": overlap,
                                     "crash": {"restart_delay": restart}, "start_at": start_at})
    missing = unscheduled(spec, NODES, seed, duration)
    assert (missing == ()) == (duration > needed_duration(spec)), (missing, needed_duration(spec))
    best = longest_interval(spec, duration)
    if best is not None:   # the suggested interval really fits
        import dataclasses
        assert needed_duration(dataclasses.replace(spec, interval=best)) < duration


def test_cli_refuses_in_one_line_and_the_flag_runs_with_a_warning(tmp_path: Path, monkeypatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--duration", "20", "--histories", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no room for partition" in err and not any(tmp_path.iterdir())

    import harness.runner
    ran = []
    monkeypatch.setattr(harness.runner, "run_test", lambda spec, **kw: ran.append(spec) or SimpleNamespace(
        error="stopped by the test", exit_code=3, run_dir=tmp_path))
    assert main(["run", "--duration", "20", "--allow-unscheduled", "--histories", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "faults=partition" in err and "no room in the schedule for partition: it will not happen" in err
    assert ran and ran[0].nemesis["allow_unscheduled"] is True


@pytest.mark.parametrize("name", ["ci-smoke", "nrw-matrix", "riak-2013", "etcd"])
def test_builtin_campaign_cells_have_room_for_their_faults(name: str) -> None:
    from harness.campaign import load_campaign

    defn = load_campaign(builtin=name)
    for cell in defn.cells:
        assert unscheduled_faults(load_spec(defn.spec_path, dict(cell.overrides))) == (), cell.id
