"""Jepsen history.edn import: the field mapping, refusals with line numbers, and the CLI."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from checkers.base import CheckContext, Verdict
from checkers.fault_windows import fault_windows
from checkers.jepsen_edn import import_edn, read_edn_history
from checkers.lost_writes import LostWritesChecker
from harness import plugins
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



KV_EDN = ('{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}\n'
          '{:process 1, :type :invoke, :f :get, :key "0", :value nil}\n'
          '{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}\n'
          '{:process 1, :type :ok, :f :get, :key "0", :value "VALUE"}\n'
          '{:process 2, :type :invoke, :f :put, :key "1", :value "a"}\n'
          '{:process 2, :type :fail, :f :put, :key "1", :value "a"}\n')


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dynharness: error: ") and "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("seen, code", [("x 0 0 y", 0), ("", 0), ("y", 1)])
def test_check_takes_a_kv_edn_directly(tmp_path, capsys, monkeypatch, seen, code):
    p = tmp_path / "kv.edn"
    p.write_text(KV_EDN.replace("VALUE", seen))
    assert main(["check", str(p)]) == code
    out = capsys.readouterr().out
    assert "linearizable" in out and "siblings" not in out and "perf" not in out and "ordered by their position" in out
    table = plugins._entry_points("models")
    monkeypatch.setitem(table, "kv", plugins.BUILTIN["models"]["kv"])   # an install older than kv
    assert main(["check", str(p), "--model", "kv"]) == code
    assert main(["check", str(p), "--model", "kv", "--set", "model.initial=y"]) == (0 if seen == "y" else 1)
    assert not (tmp_path / "results.json").exists()


def test_imported_register_history_gets_linearizable_and_staleness_only(tmp_path, capsys):
    out = tmp_path / "imported"
    assert main(["import-edn", str(DATA / "jepsen-register.edn"), str(out)]) == 0
    meta = json.loads((out / "import.json").read_text())
    assert meta["times"] == "edn :time" and meta["format"] == "jepsen-edn"
    capsys.readouterr()
    code = main(["check", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["checkers"]) == ["linearizable", "staleness"] and code == 0
    assert main(["check", str(out), "--checkers", "perf"]) in (0, 2)
    assert list(json.loads((out / "results.json").read_text())["checkers"]) == ["perf"]


def test_a_user_model_from_the_cli(tmp_path, capsys, monkeypatch):
    (tmp_path / "usermodel.py").write_text(
        "class Reg:\n"
        "    name, fs, pure_fs = 'reg', frozenset({'read', 'write'}), frozenset({'read'})\n"
        "    def __init__(self, initial=None): self.initial = initial\n"
        "    def init(self): return self.initial\n"
        "    def step(self, s, i, o): return (True, i[1]) if i[0] == 'write' else (o == s, s)\n"
        "    def describe_op(self, i, o): return i[0]\n"
        "    def describe_state(self, s): return str(s)\n"
        "class Boom(Reg):\n"
        "    def step(self, s, i, o): raise ValueError('no')\n")
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "knossos.edn"
    p.write_text("[{:process 0, :type :invoke, :f :read, :value nil}\n {:process 0, :type :ok, :f :read, :value 0}]\n")
    try:
        assert main(["check", str(p), "--model", "usermodel:Reg"]) == 1
        assert main(["check", str(p), "--model", "usermodel:Reg", "--set", "model.initial=0"]) == 0
        assert main(["check", str(p), "--model", "cas-register", "--set", "model.initial=0"]) == 0
        capsys.readouterr()
        assert main(["check", str(p), "--model", "usermodel:Boom"]) == 3
        assert "model 'reg' raised ValueError: no at usermodel.py:9" in one_line_error(capsys)
    finally:
        sys.modules.pop("usermodel", None)


@pytest.mark.parametrize("args, message", [
    (["--model", "nosuch"], "unknown linearizable_model 'nosuch'"),
    (["--model", "nosuch_pkg.mod:Cls"], "cannot be loaded: ModuleNotFoundError"),
    (["--set", "target.n=3"], "--set expects model.initial=VALUE or checkers.OPTION=VALUE"),
    (["--model", "register", "--set", "model.initial=1"], None),
])
def test_check_mistakes_are_one_line_exit_3(tmp_path, capsys, args, message):
    p = tmp_path / "h.edn"
    p.write_text(KV_EDN.replace("VALUE", ""))
    code = main(["check", str(p), *args])
    if message is None:
        assert code == 2   # the register model knows no get/put/append: nothing checked
        return
    assert code == 3 and message in one_line_error(capsys)


def test_bad_edn_is_one_line_exit_3(tmp_path, capsys):
    p = tmp_path / "bad.edn"
    p.write_text('{:type :invoke, :f :read, :process 0}\n{:type :ok, :f :read, :value "x}\n')
    assert main(["check", str(p)]) == 3
    assert one_line_error(capsys).endswith("bad.edn:2: not valid EDN: a string is not closed")


def test_the_report_draws_the_counterexample_of_an_invalid_import(tmp_path, capsys):
    edn = tmp_path / "stale.edn"
    edn.write_text('{:process 0, :type :invoke, :f :write, :value 1}\n{:process 0, :type :ok, :f :write, :value 1}\n'
                   '{:process 1, :type :invoke, :f :write, :value 2}\n{:process 1, :type :ok, :f :write, :value 2}\n'
                   '{:process 2, :type :invoke, :f :read, :value nil}\n{:process 2, :type :ok, :f :read, :value 1}\n')
    out = tmp_path / "imported"
    assert main(["import-edn", str(edn), str(out)]) == 0
    assert main(["check", str(out)]) == 1
    page = (out / "report.html").read_text()
    assert 'id="counterexample"' in page and "read -&gt; 1 [4..5]</b> cannot follow" in page
    assert "After 2 op(s) linearized" in page and "the state is <code>2</code>" in page
    views = __import__("harness.reports.linear_view", fromlist=["linear_views"]).linear_views(
        json.loads((out / "results.json").read_text()))
    assert [(r["role"], r["order"], r["proof"], r["process"]) for r in views[0]["bars"]] == [
        ("prefix", 1, True, 0), ("prefix", 2, True, 1), ("blocked", None, True, 2)]
    assert views[0]["processes"] == ["0", "1", "2"]   # one row per process
    assert views[0]["unit"] == "position" and 'class="cx-op blocked in-proof"' in page   # no :time: file positions
