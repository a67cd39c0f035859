"""The registered fault kinds: loaded once per entry-point table, again when the table changes."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness import plugins
from harness.errors import UserError
from nemeses import fault_kind, registry, room
from nemeses.base import NemesisOp
from nemeses.schedule import NemesisSpec, build_schedule

NODES = ["n1", "n2", "n3", "n4", "n5"]


def _draw_freeze(spec, nodes, rng):
    return NemesisOp("freeze", {"nodes": [nodes[0]]}), NemesisOp("thaw", {"nodes": [nodes[0]]})


#: A plug-in kind that restarts its nodes: held for crash.restart_delay, not the interval.
FREEZE = fault_kind.FaultKind("freeze", "freeze", "thaw", "freeze", lambda kinds, shared: None, _draw_freeze,
                              restarts=True)


def test_kinds_load_once_however_often_a_spec_asks_for_their_holds(monkeypatch) -> None:
    spec = NemesisSpec.from_mapping({"faults": list(fault_kind.names()), "interval": 10})
    fault_kind.registered()
    loads = []
    load = plugins.load
    monkeypatch.setattr(plugins, "load", lambda group, name, what=None: loads.append(name) or load(group, name, what))
    with pytest.raises(UserError, match="has no room"):
        room.check_room(spec, NODES, 1, 60.0)    # bisects the interval: ~60 needed_duration calls
    build_schedule(spec, NODES, 1, 600.0)
    assert loads == []


def test_a_changed_entry_point_table_loads_the_kinds_again(monkeypatch) -> None:
    assert "freeze" not in fault_kind.registered()
    with monkeypatch.context() as m:
        m.setitem(plugins._entry_points("nemeses"), "freeze", "tests.test_fault_kind_registry:FREEZE")
        assert fault_kind.registered()["freeze"] is FREEZE
        spec = NemesisSpec.from_mapping({"faults": ["freeze", "pause"], "interval": 5, "crash": {"restart_delay": 2}})
        assert spec.holds() == {"freeze": 2.0, "pause": 5.0}
        alone = NemesisSpec.from_mapping({"faults": ["freeze"], "interval": 5, "crash": {"restart_delay": 2}})
        ops = [(a.at, a.op.f) for a in build_schedule(alone, NODES, 1, 20)]
        assert ops == [(5.0, "freeze"), (7.0, "thaw"), (12.0, "freeze"), (14.0, "thaw"), (14.0, "heal")]
    assert "freeze" not in fault_kind.registered()


#: Registered under "thaw" but a record of another name, and an object that is no record at all.
MISNAMED = FREEZE
NOT_A_KIND = object()


@pytest.mark.parametrize("value, why", [
    ("no_such_module:KIND", "ModuleNotFoundError: No module named 'no_such_module'"),
    ("tests.test_fault_kind_registry:NOT_A_KIND", "it is not a nemeses.fault_kind.FaultKind called 'meteor' "
                                                  "(got <object object at "),
    ("tests.test_fault_kind_registry:MISNAMED", "it is not a nemeses.fault_kind.FaultKind called 'meteor' "
                                                "(got FaultKind(name='freeze'"),
])
def test_an_unloadable_plugin_fails_only_the_specs_that_name_it(monkeypatch, value: str, why: str) -> None:
    monkeypatch.setitem(plugins._entry_points("nemeses"), "meteor", value)
    assert "meteor" in fault_kind.names() and "meteor" not in fault_kind.registered()
    line = f"nemesis plugin 'meteor' ({value}) cannot be loaded: {why}"
    assert fault_kind.broken()["meteor"].startswith(line)
    spec = NemesisSpec.from_mapping({"faults": ["partition", "crash"], "interval": 5})
    assert [a.op.f for a in build_schedule(spec, NODES, 1, 30)][-1] == "heal"
    for asked in ({"faults": ["partition", "meteor"]}, {"faults": ["partition"], "meteor": {"size": 3}}):
        with pytest.raises(UserError) as e:
            NemesisSpec.from_mapping(asked)
        assert str(e.value).startswith(line) and "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"^nemesis plugin 'meteor' \("):
        registry.build_for(["meteor"])


def test_the_cli_runs_without_a_broken_plugin_and_refuses_a_spec_naming_it(monkeypatch, tmp_path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import harness.runner
    from harness.cli import main

    monkeypatch.setitem(plugins._entry_points("nemeses"), "meteor", "no_such_module:KIND")
    ran = []
    monkeypatch.setattr(harness.runner, "run_test", lambda spec, **kw: ran.append(spec) or SimpleNamespace(
        error="stopped by the test", exit_code=7, run_dir=tmp_path))
    common = ["run", "--duration", "60", "--histories", str(tmp_path)]
    assert main([*common, "--nemesis", "partition,crash"]) == 7
    assert ran and ran[0].nemesis["faults"] == ["partition", "crash"]
    capsys.readouterr()
    assert main([*common, "--nemesis", "partition,meteor"]) == 3
    assert capsys.readouterr().err == ("dynharness: error: nemesis plugin 'meteor' (no_such_module:KIND) cannot be "
                                       "loaded: ModuleNotFoundError: No module named 'no_such_module'\n")
    assert len(ran) == 1
