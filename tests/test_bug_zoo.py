"""The bug zoo of the reference store, without a cluster: one hook per bug, the setting, a few bugs' effects.

The real proof that each bug is caught is ``dynharness selftest`` (``tests/test_selftest_cells.py``
runs one cell per kind); here: the registry and the hooks agree, a bug is only ever on when asked
for, and the versioning and ring bugs do what their summaries say.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from targets.adapter import TargetError
from targets.dynamo import bugs, config
from targets.dynamo.ring import Ring
from targets.dynamo.target import DynamoTarget
from targets.dynamo.versioning import for_mode
from targets.dynamo.zoo import EXPOSED_BY, SCENARIOS, ZOO

DYNAMO = Path(__file__).resolve().parents[1] / "targets" / "dynamo"
HOOK = re.compile(r'bugs\.active\("([^"]+)"\)')
PEERS = {"n1": "127.0.0.11:7000", "n2": "127.0.0.12:7000", "n3": "127.0.0.13:7000"}


@pytest.fixture
def bug(monkeypatch):
    """Turn one bug on for this test only."""
    return lambda name: monkeypatch.setattr(bugs, "ACTIVE", name)


def hooks() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in DYNAMO.rglob("*.py"):
        if path.name == "bugs.py":              # the registry itself (its docstring shows a hook)
            continue
        for name in HOOK.findall(path.read_text()):
            found.setdefault(name, []).append(path)
    return found


def test_every_bug_has_exactly_one_hook_in_the_module_it_names():
    found = hooks()
    assert set(found) == set(bugs.BUGS), "a hook names an unknown bug, or a bug has no hook"
    for name, paths in found.items():
        assert len(paths) == 1, (name, paths)
        module = bugs.BUGS[name].hook.split(".")
        file = next(i for i in range(len(module), 0, -1) if (DYNAMO / Path(*module[:i])).with_suffix(".py").exists())
        assert paths[0] == (DYNAMO / Path(*module[:file])).with_suffix(".py"), name
        assert f"def {module[-1]}" in paths[0].read_text(), name


def test_zoo_maps_every_bug_to_defined_scenarios():
    assert set(EXPOSED_BY) == set(bugs.BUGS) == set(ZOO.bugs) and len(bugs.BUGS) >= 12
    used = {s for names in EXPOSED_BY.values() for s in names}
    assert used == set(SCENARIOS)
    assert len({b.area for b in bugs.BUGS.values()}) >= 13
    for sc in SCENARIOS.values():
        assert "target.bug" not in sc.overrides and "seed" not in sc.overrides
        assert sc.overrides["duration"] <= 25


def test_no_bug_unless_asked_and_an_unknown_one_is_one_line():
    assert config.DEFAULTS["bug"] == "" and bugs.ACTIVE is None
    argv = DynamoTarget().node_command("n1", "127.0.0.11", 7000, "/d", PEERS, dict(config.DEFAULTS), python="py")
    assert "--bug" not in argv
    argv = DynamoTarget().node_command("n1", "127.0.0.11", 7000, "/d", PEERS,
                                       {**config.DEFAULTS, "bug": "ring-wrap-truncated"}, python="py")
    assert argv[argv.index("--bug") + 1] == "ring-wrap-truncated" and config.load(argv[3:]).bug == "ring-wrap-truncated"
    settings = DynamoTarget().resolve_settings({"bug": "storage-drops-wal"}, 3)
    assert DynamoTarget().summary(settings).endswith("BUG=storage-drops-wal")
    with pytest.raises(TargetError, match=r"^target\.bug: unknown bug 'nope' \(known: "):
        DynamoTarget().resolve_settings({"bug": "nope"}, 3)
    proc = subprocess.run([sys.executable, "-m", "targets.dynamo", "--name", "n1", "--data", "/tmp/x", "--peers",
                           "n1=127.0.0.11:7000", "--n", "1", "--r", "1", "--w", "1", "--bug", "nope"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1 and "--bug: unknown bug 'nope'" in proc.stderr


def test_activate_says_so_and_refuses_unknown_names(monkeypatch, caplog):
    monkeypatch.setattr(bugs, "ACTIVE", None)
    with caplog.at_level("WARNING", logger="dynamo.bugs"):
        bugs.activate("dot-from-context")
    assert bugs.active("dot-from-context") and not bugs.active("merge-by-clock-size")
    assert "BUG ZOO" in caplog.text
    bugs.activate("")
    assert bugs.ACTIVE is None
    with pytest.raises(TargetError):
        bugs.activate("nope")


def _two_concurrent(v):
    base = v.write(v.empty(), None, [1], "n1", 100.0)
    a = v.write(base, v.context(base), [1, 2], "n1", 101.0)
    b = v.write(base, v.context(base), [1, 3], "n2", 101.5)
    return a, b


def test_merge_by_clock_size_drops_a_concurrent_sibling(bug):
    v = for_mode("dvv")
    a, b = _two_concurrent(v)
    assert sorted(map(tuple, v.values(v.merge(a, b)))) == [(1, 2), (1, 3)]
    bug("merge-by-clock-size")
    assert len(v.values(v.merge(a, b))) == 1


def test_dot_from_context_reissues_a_dot_and_a_later_write_drops_the_unseen_sibling(bug):
    bug("dot-from-context")
    v = for_mode("dvv")
    base = v.write(v.empty(), None, [1], "n1", 100.0)
    a = v.write(base, v.context(base), [1, 2], "n1", 101.0)     # both get dot (n1, 2)
    b = v.write(base, v.context(base), [1, 3], "n1", 101.5)
    later = v.write(a, v.context(a), [1, 2, 4], "n2", 102.0)    # saw only a
    assert v.values(v.merge(later, b)) == [[1, 2, 4]]           # [1, 3] is gone


def test_siblings_keyed_by_node_collapse_one_nodes_concurrent_writes(bug):
    v = for_mode("vclock")
    base = v.write(v.empty(), None, [1], "n1", 100.0)
    a = v.write(base, v.context(base), [2], "n1", 101.0)
    both = v.write(a, v.context(base), [3], "n1", 102.0)
    assert v.sibling_count(both) == 2
    bug("siblings-keyed-by-node")
    assert v.sibling_count(v.write(a, v.context(base), [3], "n1", 102.0)) == 1


def test_write_supersedes_local_replaces_what_the_client_never_saw(bug):
    bug("write-supersedes-local")
    v = for_mode("dvv")
    base = v.write(v.empty(), None, [1], "n1", 100.0)
    a = v.write(base, v.context(base), [1, 2], "n1", 101.0)
    assert v.values(v.write(a, v.context(base), [1, 3], "n1", 102.0)) == [[1, 3]]


def test_lww_second_timestamps_let_an_earlier_write_win(bug):
    v = for_mode("lww")
    first = v.write(v.empty(), None, "old", "n3", 1000.2)
    assert v.values(v.write(first, None, "new", "n1", 1000.7)) == ["new"]
    bug("lww-second-timestamps")
    first = v.write(v.empty(), None, "old", "n3", 1000.2)
    assert v.values(v.write(first, None, "new", "n1", 1000.7)) == ["old"]


def test_ring_wrap_truncated_gives_the_last_partitions_fewer_replicas(bug):
    assert Ring(["n1", "n2", "n3"], 8).replicas_of_partition(7, 3) == ["n2", "n1", "n3"]
    bug("ring-wrap-truncated")
    ring = Ring(["n1", "n2", "n3"], 8)
    assert [len(ring.replicas_of_partition(p, 3)) for p in range(8)] == [3] * 6 + [2, 1]
