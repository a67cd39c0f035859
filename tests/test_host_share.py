"""Local cells side by side on a host without node cgroups: partition cells run alone, never
beside another local cell, and a waiting one is not starved (harness.backends.local_share)."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from harness.backends import local_share as host_share
from harness.backends.local_share import ALONE, SHARED, HostWaitStopped, hold_host, host_need


@pytest.fixture
def own_locks(tmp_path, monkeypatch):
    """Lock files of this test only (the real ones are shared by every campaign on the host)."""
    monkeypatch.setattr(host_share, "lock_paths", lambda: (tmp_path / "lock", tmp_path / "gate"))
    monkeypatch.setattr(host_share, "POLL", 0.02)


def test_what_a_cell_needs_from_a_host_without_node_cgroups(monkeypatch):
    monkeypatch.setattr(host_share, "isolated", lambda: False)
    assert host_need(SimpleNamespace(backend="local", faults=("partition", "crash"))) == ALONE
    assert host_need(SimpleNamespace(backend="local", faults=("loss",))) == ALONE
    assert host_need(SimpleNamespace(backend="local", faults=("clock",))) == SHARED
    assert host_need(SimpleNamespace(backend="docker", faults=("partition",))) is None
    monkeypatch.setattr(host_share, "isolated", lambda: True)   # node cgroups: every cell keeps to itself
    assert host_need(SimpleNamespace(backend="local", faults=("partition",))) is None


def test_an_alone_cell_waits_for_running_cells_and_new_ones_wait_for_it(own_locks):
    log: list[str] = []
    shared_in, release = threading.Event(), threading.Event()

    def cell(name: str, need: str, hold: float, entered: threading.Event | None = None) -> None:
        with hold_host(need):
            log.append(f"{name}+")
            if entered:
                entered.set()
            if name == "s1":
                release.wait(5)
            time.sleep(hold)
            log.append(f"{name}-")

    s1 = threading.Thread(target=cell, args=("s1", SHARED, 0, shared_in))
    s1.start()
    assert shared_in.wait(5)
    a = threading.Thread(target=cell, args=("a", ALONE, 0.2))
    a.start()
    time.sleep(0.2)                      # a waits for s1, holding the gate
    s2 = threading.Thread(target=cell, args=("s2", SHARED, 0))
    s2.start()
    time.sleep(0.2)
    assert log == ["s1+"]                # neither a nor the newcomer s2 got in beside s1
    release.set()
    for t in (s1, a, s2):
        t.join(5)
    assert log == ["s1+", "s1-", "a+", "a-", "s2+", "s2-"]   # a alone, and before s2: no starvation


def test_shared_cells_run_together(own_locks):
    with hold_host(SHARED), hold_host(SHARED):
        pass


def test_a_stopped_campaign_stops_the_wait(own_locks):
    with hold_host(ALONE):
        with pytest.raises(HostWaitStopped):
            with hold_host(SHARED, stopping=lambda: True):
                pass


def test_the_campaign_says_which_cells_run_alone(monkeypatch):
    from rich.console import Console

    from harness.campaign import parse_campaign
    from harness.cli.campaign import _say_host_sharing

    monkeypatch.setattr(host_share, "isolated", lambda: False)
    defn = parse_campaign({"name": "x", "base": {"duration": 30}, "matrix": {"nemesis": ["none", "split"]},
                           "nemeses": {"split": {"faults": ["partition"]}}})
    console = Console(record=True, width=300)
    _say_host_sharing(defn, None, console, 2, None)
    text = console.export_text()
    assert "cannot keep local runs apart" in text and "the 1 local cell(s) with partition or loss faults" in text


def test_a_run_waits_its_turn_while_another_holds_the_host_and_says_why(own_locks, monkeypatch, tmp_path, capsys):
    """``dynharness run`` itself (not only campaign cells) waits while another local run's
    address-based partition holds the host, says so once, and starts nothing meanwhile; a run
    told the host is held for it (a Dask cell's child) does not wait."""
    import threading
    import time

    from harness.runner import run_test
    from tests.test_runner import FakeBackend, FakeTarget, spec_for

    monkeypatch.setattr(host_share, "isolated", lambda: False)
    spec = spec_for(tmp_path)
    assert host_need(spec) == SHARED
    out = {}
    with hold_host(ALONE):      # another run's partition holds the host
        t = threading.Thread(target=lambda: out.update(
            run=run_test(spec, backend=FakeBackend(), target=FakeTarget(), display="plain")))
        t.start()
        time.sleep(1.0)
        assert t.is_alive() and not list((tmp_path / "h").glob("*/*"))   # waiting: no run folder yet
        held = run_test(spec, backend=FakeBackend(), target=FakeTarget(), take_host=False)   # held for it
        assert held.verdict == "valid"
    t.join(60)
    assert not t.is_alive() and out["run"].verdict == "valid"
    err = capsys.readouterr().err
    assert err.count("this host has no node cgroups") == 1 and "waiting for it to end" in err
