"""Nemesis specs and schedules: validation, determinism, alternation, final heal, replay."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import UserError
from nemeses import fault_kind, registry
from nemeses.schedule import (
    NemesisSpec,
    build_schedule,
    dump_schedule,
    load_schedule,
)

NODES = ["n1", "n2", "n3", "n4", "n5"]
KINDS = fault_kind.registered()
FAULTS = ("partition", "clock", "crash", "wipe", "pause", "loss", "latency")  # the built-in kinds


def test_empty_spec_means_no_nemesis() -> None:
    assert not NemesisSpec.from_mapping({}).enabled
    assert not NemesisSpec.from_mapping({"faults": []}).enabled
    assert build_schedule(NemesisSpec.from_mapping({}), NODES, 1, 60) == []


def test_nested_and_flat_settings_agree_and_round_trip() -> None:
    nested = NemesisSpec.from_mapping({"faults": ["clock", "latency"], "clock": {"offsets_ms": [250, -90000],
                                       "strobe_period": 0.2}, "latency": {"ms": 50, "jitter_ms": 5}})
    flat = NemesisSpec.from_mapping({"faults": "clock,latency", "clock_offsets_ms": [250, -90000],
                                     "clock_strobe_period": 0.2, "latency_ms": 50, "latency_jitter_ms": 5})
    assert nested == flat
    again = NemesisSpec.from_mapping(nested.to_json())   # to_json resolves defaults (start_at, restart delay)
    assert again.to_json() == nested.to_json()
    assert build_schedule(again, NODES, 3, 100) == build_schedule(nested, NODES, 3, 100)
    assert json.loads(json.dumps(nested.to_json()))["latency"] == {"ms": 50.0, "jitter_ms": 5.0}


@pytest.mark.parametrize("bad, msg", [
    ({"faults": ["partition", "meteor"]}, "unknown fault"),
    ({"faults": ["partition"], "interval": 0}, "interval must be"),
    ({"faults": ["partition"], "interval": "10"}, "interval must be a number"),
    ({"faults": ["partition"], "partition": "halves"}, "unknown partition topology"),
    ({"faults": ["clock"], "clock": {"offsets_ms": [0]}}, "offset of 0"),
    ({"faults": ["clock"], "clock": {"modes": ["warp"]}}, "clock.modes"),
    ({"faults": ["clock"], "clock": {"speed": 1}}, "unknown setting"),
    ({"faults": ["loss"], "loss": {"probability": 1.5}}, "loss.probability"),
    ({"faults": ["loss"], "colour": "red"}, "unknown setting"),
    ({"faults": ["pause"], "overlap": "yes"}, "overlap must be"),
])
def test_bad_specs_are_one_line_user_errors(bad: dict, msg: str) -> None:
    with pytest.raises(UserError, match=msg) as e:
        NemesisSpec.from_mapping(bad)
    assert "\n" not in str(e.value)


def test_unknown_target_node_is_a_user_error() -> None:
    spec = NemesisSpec.from_mapping({"faults": ["pause"], "targets": "n1,n9", "interval": 1})
    with pytest.raises(UserError, match="unknown node"):
        build_schedule(spec, NODES, 0, 30)


def test_schedule_is_deterministic_from_the_seed() -> None:
    spec = NemesisSpec.from_mapping({"faults": list(FAULTS), "interval": 2, "targets": "minority"})
    a = build_schedule(spec, NODES, 7, 120)
    assert a == build_schedule(spec, NODES, 7, 120)
    assert a != build_schedule(spec, NODES, 8, 120)


def _check_alternation(actions, duration: float, spec: NemesisSpec) -> None:
    assert actions[-1].op.f == "heal"
    assert all(a.at <= b.at for a, b in zip(actions, actions[1:]))
    assert all(a.at < duration for a in actions)
    open_: dict[str, str] = {}   # stream key -> start f
    starts = {k.start for k in KINDS.values()}
    stops = {k.stop for k in KINDS.values()}
    for a in actions[:-1]:
        if a.op.f in ("start-link", "stop-link"):
            key = a.op.value["kind"]
        elif a.op.f in ("kill", "wipe", "start", "pause", "resume"):
            key = "process"
        else:
            key = a.op.f.split("-", 1)[1]
        if a.op.f in starts and a.op.f != "start":
            assert key not in open_, f"{a.op.f} at {a.at} while {open_[key]} is still active"
            open_[key] = a.op.f
        else:
            assert a.op.f in stops
            assert key in open_, f"{a.op.f} at {a.at} stops nothing"
            del open_[key]
    assert not open_, f"faults still active at the end: {open_}"
    if not spec.overlap:
        assert not any(a.op.f in starts and a.op.f != "start" and b.op.f in starts and b.op.f != "start"
                       for a, b in zip(actions, actions[1:-1]))


@settings(max_examples=60, deadline=None)
@given(faults=st.lists(st.sampled_from(FAULTS), min_size=1, max_size=7, unique=True),
       interval=st.floats(0.5, 20), duration=st.floats(0, 200), seed=st.integers(0, 10**6),
       overlap=st.booleans(), restart=st.one_of(st.none(), st.floats(0, 10)))
def test_start_stop_alternate_and_everything_stops_before_the_end(faults, interval, duration, seed, overlap,
                                                                   restart) -> None:
    spec = NemesisSpec.from_mapping({"faults": faults, "interval": interval, "overlap": overlap,
                                     "crash": {"restart_delay": restart}, "targets": "majority"})
    actions = build_schedule(spec, NODES, seed, duration)
    _check_alternation(actions, max(duration, spec.first_at) + 1e-9, spec)


def test_first_fault_at_interval_and_changes_interval_apart() -> None:
    spec = NemesisSpec.from_mapping({"faults": ["partition"], "interval": 5, "partition": "riak"})
    actions = build_schedule(spec, NODES, 0, 31)
    assert [(a.at, a.op.f) for a in actions] == [
        (5, "start-partition"), (10, "stop-partition"), (15, "start-partition"), (20, "stop-partition"),
        (25, "start-partition"), (30, "stop-partition"), (30, "heal")]
    assert actions[0].op.value["grudge"]["n1"] == ["n3", "n4", "n5"]


def test_crash_restart_delay_sets_how_long_a_node_stays_down() -> None:
    spec = NemesisSpec.from_mapping({"faults": ["crash"], "interval": 10, "crash": {"restart_delay": 2},
                                     "start_at": 1})
    actions = build_schedule(spec, NODES, 3, 40)
    kill, start = actions[0], actions[1]
    assert (kill.op.f, start.op.f) == ("kill", "start")
    assert start.at - kill.at == 2 and kill.op.value == start.op.value
    assert actions[2].at - start.at == 10


def test_targets_pick_the_right_number_of_nodes() -> None:
    for targets, size in (("one", 1), ("minority", 2), ("majority", 3), ("all", 5), ("n2,n4", 2)):
        spec = NemesisSpec.from_mapping({"faults": ["pause"], "interval": 1, "targets": targets})
        for a in build_schedule(spec, NODES, 11, 30)[:-1]:
            assert len(a.op.value["nodes"]) == size
    spec = NemesisSpec.from_mapping({"faults": ["pause"], "interval": 1, "targets": "n2,n4"})
    assert build_schedule(spec, NODES, 0, 5)[0].op.value["nodes"] == ["n2", "n4"]


def test_clock_ops_carry_every_choice() -> None:
    spec = NemesisSpec.from_mapping({"faults": ["clock"], "interval": 1, "clock": {"offsets_ms": [-1500]}})
    starts = [a.op.value for a in build_schedule(spec, NODES, 5, 200) if a.op.f == "start-clock"]
    modes = {v["mode"] for v in starts}
    assert modes == {"bump", "strobe", "drift"}
    for v in starts:
        if v["mode"] in ("bump", "strobe"):
            assert v["offset_ms"] == -1500
        if v["mode"] == "strobe":
            assert v["period"] == 0.5
        if v["mode"] == "drift":
            assert abs(v["rate"]) == 0.1


def test_dump_and_load_replay_exactly(tmp_path) -> None:
    spec = NemesisSpec.from_mapping({"faults": list(FAULTS), "interval": 1.5, "overlap": True})
    actions = build_schedule(spec, NODES, 99, 60)
    path = tmp_path / "nemesis-schedule.json"
    dump_schedule(path, actions)
    assert load_schedule(path) == actions
    assert load_schedule(tmp_path) == actions
    assert registry.faults_of(actions) == set(FAULTS)


@pytest.mark.parametrize("text, msg", [
    ("{", "JSON error"),
    ('{"actions": 3}', "expected"),
    ('{"actions": [{"at": -1, "f": "heal"}]}', "at must be"),
    ('{"actions": [{"at": 2, "f": "heal"}, {"at": 1, "f": "heal"}]}', "time order"),
])
def test_bad_schedule_files_are_user_errors(tmp_path, text: str, msg: str) -> None:
    p = tmp_path / "s.json"
    p.write_text(text)
    with pytest.raises(UserError, match=msg):
        load_schedule(p)


def test_registry_builds_one_nemesis_for_every_op_of_the_schedule() -> None:
    spec = NemesisSpec.from_mapping({"faults": list(FAULTS), "interval": 1})
    nemesis = registry.build(spec)
    fs = {a.op.f for a in build_schedule(spec, NODES, 1, 300)}
    assert fs <= nemesis.fs


def test_an_unknown_fault_is_one_line_in_the_same_words_from_a_spec_and_from_the_registry() -> None:
    with pytest.raises(UserError) as from_spec:
        NemesisSpec.from_mapping({"faults": ["meteor", "partition", "comet", "meteor"]})
    with pytest.raises(UserError) as from_registry:
        registry.build_for(["partition", "comet", "meteor"])
    known = ", ".join(fault_kind.names())
    assert str(from_spec.value) == f"nemesis: unknown fault(s) meteor, comet (known: {known})"
    assert str(from_registry.value) == f"nemesis: unknown fault(s) comet, meteor (known: {known})"
