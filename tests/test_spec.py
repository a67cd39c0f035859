"""Specs: defaults are the demo, files and flags merge, bad input is one UserError line."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UserError
from harness.spec import TestSpec, load_spec, parse_value


def test_defaults_are_the_demo() -> None:
    s = load_spec(None, {})
    assert (s.backend, s.nodes, s.duration, s.workload.name) == ("local", 5, 30.0, "cart")
    assert (s.target["n"], s.target["r"], s.target["w"]) == (3, 2, 2)
    assert s.faults == ("partition",)
    assert isinstance(s.seed, int)


def test_file_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text('name = "lww"\nnodes = 4\nseed = 9\n[target]\nmode = "lww"\nr = 1\n'
                 '[workload]\nname = "register"\nkeys = 3\n[workload.mix]\nread = 5\n'
                 '[nemesis]\nfaults = []\n[checkers]\nresurrections_invalid = true\n')
    s = load_spec(f, {"target.w": 1, "nodes": 3, "seed": None})
    assert (s.name, s.nodes, s.seed, s.target["mode"], s.target["r"], s.target["w"]) == ("lww", 3, 9, "lww", 1, 1)
    assert s.workload.name == "register" and s.workload.mix == {"write": 1.0, "read": 5}
    assert s.faults == () and s.checkers["resurrections_invalid"] is True
    again = TestSpec.from_json(s.to_json())
    assert again == s


@pytest.mark.parametrize("over, needle", [
    ({"target.r": 4}, "target.r = 4"),
    ({"target.w": 0}, "target.w = 0"),
    ({"nodes": 2}, "nodes = 2"),
    ({"workload.name": "bank"}, "unknown workload 'bank'"),
    ({"colour": "blue"}, "unknown spec field 'colour'"),
    ({"target.colour": 1}, "unknown [target] setting 'colour'"),
    ({"target.mode": "x"}, "target.mode"),
    ({"nodes": "five"}, "nodes must be an integer"),
    ({"duration": 0}, "duration must be positive"),
    ({"workload.blind": True, "workload.name": "register"}, "blind"),
    ({"workload.mix": {"add": 0, "remove": 0, "read": 0}}, "at least one weight"),
    ({"checkers.foo": 1}, "unknown [checkers] option"),
    ({"docker.image": "x"}, "[docker] options given but backend is 'local'"),
    ({"backend": "cloud"}, "unknown backend"),
    ({"workload.name": "cas-register"}, "the cas-register workload needs a target with cas; the dynamo target has no cas"),
    ({"target.kind": "etcd", "nemesis.faults": ["crash", "clock"]},
     "the etcd target cannot report its nodes' own clocks, so a skew could not be verified: refusing the clock"),
    ({"target.kind": "etcd", "nemesis.faults": ["wipe"]}, "the etcd target has no way for a node restarted with an "
                                                         "empty disk to rejoin by itself: refusing the wipe nemesis"),
    ({"target.kind": "etcd", "nemesis.faults": ["latency"]}, "refusing the latency nemesis"),
    ({"nemesis.faults": ["partition"], "nemesis.clock": {"modes": ["bump"]}, "nemesis.restart": {"x": 1}},
     "unknown setting 'restart'"),
])
def test_bad_specs_are_one_line_user_errors(over: dict, needle: str) -> None:
    with pytest.raises(UserError) as e:
        load_spec(None, over)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read spec"):
        load_spec(tmp_path / "missing.toml", {})
    bad = tmp_path / "bad.toml"
    bad.write_text("nodes = [")
    with pytest.raises(UserError, match="not valid TOML"):
        load_spec(bad, {})


def test_set_values_parse_as_toml() -> None:
    assert parse_value("3") == 3 and parse_value("true") is True and parse_value('["a", "b"]') == ["a", "b"]
    assert parse_value("random-halves") == "random-halves"


def test_a_stored_spec_json_reruns_the_same_test(tmp_path: Path) -> None:
    import json

    from harness.spec import spec_json

    s = load_spec(None, {"seed": 77, "target.mode": "lww", "workload.name": "session"})
    f = tmp_path / "spec.json"
    f.write_text(spec_json(s, run_dir="/x", versions={"python": "3"}, started="now"))
    again = load_spec(f, {})
    assert again == s
    f.write_text(json.dumps([1]))
    with pytest.raises(UserError, match="JSON object"):
        load_spec(f, {})


def test_a_run_without_a_name_is_named_after_what_it_is() -> None:
    assert load_spec(None, {}).name == "cart-vclock-partition"
    assert load_spec(None, {"target.mode": "dvv", "nemesis.faults": ["crash"]}).name == "cart-dvv-crash"
    assert load_spec(None, {"nemesis.faults": []}).name == "cart-vclock-nofaults"
    assert load_spec(None, {"target.kind": "etcd", "workload.name": "register",
                            "nemesis.faults": ["crash"]}).name == "register-etcd-crash"
    assert load_spec(None, {"name": "mine"}).name == "mine"
