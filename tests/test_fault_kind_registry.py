"""The registered fault kinds: loaded once per entry-point table, again when the table changes."""
from __future__ import annotations

import pytest

from harness import plugins
from harness.errors import UserError
from nemeses import fault_kind, room
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
