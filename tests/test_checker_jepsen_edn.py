"""Jepsen history.edn import: the field mapping, refusals with line numbers, and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from checkers.base import CheckContext, Verdict
from checkers.fault_windows import fault_windows
from checkers.jepsen_edn import import_edn, read_edn_history
from checkers.lost_writes import LostWritesChecker
from harness.cli import main
from harness.errors import UserError
from harness.history import read_history

DATA = Path(__file__).parent / "data"


def test_register_history_maps_fields_nemesis_and_cas():
    h = read_edn_history(DATA / "jepsen-register.edn")
    assert len(h) == 14 and [o.index for o in h] == list(range(14))
    first = h.op(0)
    assert (first.type, first.f, first.value, first.process, first.time) == ("invoke", "write", 1, 0, 1_000_000)
    assert first.extra["jepsen_index"] == 0
    nem = h.nemesis_ops()
    assert [(o.type, o.f) for o in nem] == [("invoke", "start-fault"), ("info", "start-fault"),
                                           ("invoke", "stop-fault"), ("info", "stop-fault")]
    assert nem[1].value == ["isolated", {"n1": ["n2", "n3"]}]
    cas = h.op(6)
    assert cas.f == "cas" and cas.value == [1, 2] and h.op(7).error == "timeout-or-whatever"
    assert h.op(9).type == "info" and h.op(9).error == "indeterminate: timed out"
    assert h.op(1).value is None and h.op(13).value == 3
    (w,) = fault_windows(h)
    assert (w.kind, w.start, w.end) == ("start-fault", 2_500_000, 6_100_000)


def test_set_history_in_a_vector_with_set_reads():
    h = read_edn_history(DATA / "jepsen-set.edn")
    assert h.op(7).value == [1, 2]
    r = LostWritesChecker().check(h, CheckContext())   # no final marks: the last ok read is final
    assert r.verdict == Verdict.INVALID and r.counts["lost_writes"] == 1
    assert r.counts["unacknowledged_present"] == 1


def test_independent_tuples_become_keys(tmp_path):
    p = tmp_path / "h.edn"
    p.write_text('{:type :invoke, :f :write, :value [7 3], :process 0, :time 1}\n'
                 '{:type :ok, :f :write, :value [7 3], :process 0, :time 2}\n')
    h = read_edn_history(p, independent=True)
    assert (h.op(0).key, h.op(0).value) == ("7", 3)


def test_independent_tuples_are_recognised_and_info_completions_keep_the_key(tmp_path):
    p = tmp_path / "h.edn"
    p.write_text('{:type :invoke, :f :write, :value [:a 3], :process 0}\n'
                 '{:type :invoke, :f :read, :value [:b nil], :process 1}\n'
                 '{:type :info, :f :write, :value :timed-out, :process 0}\n'
                 '{:type :ok, :f :read, :value [:b 4], :process 1}\n')
    imp = import_edn(p)
    assert imp.independent and imp.times == "position"
    assert [(o.key, o.value, o.time) for o in imp.history] == [("a", 3, 0), ("b", None, 1), ("a", "timed-out", 2),
                                                               ("b", 4, 3)]
    assert any("position" in n for n in imp.notes()) and any("independent" in n for n in imp.notes())


def test_cas_values_alone_are_not_taken_for_tuples(tmp_path):
    p = tmp_path / "h.edn"
    p.write_text('[{:process 0, :type :invoke, :f :cas, :value [1 2]}\n {:process 0, :type :fail, :f :cas, :value [1 2]}\n'
                 ' {:process 1, :type :invoke, :f :read, :value nil}\n {:process 1, :type :ok, :f :read, :value nil}]\n')
    imp = import_edn(p)
    assert not imp.independent and imp.history.op(0).value == [1, 2] and imp.history.op(0).key is None


def test_knossos_vector_without_time_and_kv_keys(tmp_path):
    p = tmp_path / "kv.edn"
    p.write_text('{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}\n'
                 '{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}\n'
                 '#jepsen.history.Op{:process 1, :type :invoke, :f :get, :key "0", :value nil}\n'
                 '{:process 1, :type :ok, :f :get, :key "0", :value "x 0 0 y"}\n')
    imp = import_edn(p)
    assert imp.keyed and imp.times == "position" and [o.key for o in imp.history] == ["0"] * 4
    assert [o.time for o in imp.history] == [0, 1, 2, 3]


@pytest.mark.parametrize("name, text, msg", [
    ("tagged", None, r"jepsen-bad-tagged.edn:2 \(op 1\): cannot map to a dynharness op: cannot map EDN value #inst"),
    ("orphan", None, r"op 1 completes nothing .*jepsen-bad-orphan.edn:2"),
    ("notype", '{:f :read, :process 0, :time 1}\n', r":1 \(op 0\): cannot map to a dynharness op: op has no :type"),
    ("mixed", '{:type :invoke, :f :read, :process 0, :time 1}\n{:type :ok, :f :read, :process 0}\n',
     r":2 \(op 1\): .*op has no :time, but the file's first op has one"),
    ("notmap", '[1 2]\n', r"op 0: cannot map to a dynharness op: an op must be a map"),
    ("badtime", '{:type :invoke, :f :read, :process 0, :time 1.5}\n', r"non-negative integer nanoseconds"),
    ("badtype", '{:type :done, :f :read, :process 0, :time 1}\n', r":type must be"),
    ("garbage", '{:type :invoke, :f :read, :process 0, :time 1}\n{:type :ok, :f ]\n', r"garbage.edn:2: not valid EDN"),
])
def test_refuses_what_cannot_be_mapped_naming_the_line(tmp_path, name, text, msg):
    p = DATA / f"jepsen-bad-{name}.edn" if text is None else tmp_path / f"{name}.edn"
    if text is not None:
        p.write_text(text)
    with pytest.raises(UserError, match=msg):
        read_edn_history(p)


def test_cli_import_writes_a_history_our_reader_accepts(tmp_path, capsys):
    out = tmp_path / "imported"
    assert main(["import-edn", str(DATA / "jepsen-register.edn"), str(out)]) == 0
    h = read_history(out)
    assert len(h) == 14 and json.loads((out / "history.jsonl").read_text().splitlines()[0])["f"] == "write"
    assert main(["import-edn", str(DATA / "jepsen-register.edn"), str(out)]) == 3   # exists, no --force
    assert "exists" in capsys.readouterr().err
    assert main(["import-edn", str(DATA / "jepsen-bad-orphan.edn"), str(tmp_path / "x")]) == 3

