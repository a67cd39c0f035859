"""The runner's lifecycle against an in-process fake store (no node processes).

The fake keeps siblings like a vector-clock store (a write supersedes the
versions its context covers; a blind write adds a sibling), and can be told
to time out or refuse requests, so the runner's bookkeeping (invoke/complete
pairing, new process ids after ``info``, final reads, results) is tested
without the real store. Real clusters: ``tests/test_runner_cluster.py``.
"""
from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import ClusterConfig, Node
from harness.history import read_history
from targets.dynamo.target import DynamoTarget
from harness.runner import run_test
from harness.spec import load_spec
from targets.adapter import OpFailed, OpIndeterminate, ReadResult, WriteResult


@dataclass
class FakeStore:
    """Siblings per key: list of (version, value); context = comma list of versions seen."""

    data: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    version: int = 0
    faults: float = 0.0           # share of requests that fail or time out
    rng: random.Random = field(default_factory=lambda: random.Random(1))

    def maybe_fault(self) -> None:
        if self.faults and self.rng.random() < self.faults:
            raise (OpFailed("fake refusal") if self.rng.random() < 0.5 else OpIndeterminate("fake timeout"))


@dataclass
class FakeClient:
    node: str
    store: FakeStore

    async def get(self, key: str, **_: Any) -> ReadResult:
        await asyncio.sleep(0)
        self.store.maybe_fault()
        sibs = self.store.data.get(key, [])
        ctx = ",".join(str(v) for v, _ in sibs) or None
        return ReadResult(tuple(v for _, v in sibs), ctx, bool(sibs))

    async def put(self, key: str, value: Any, context: str | None = None, **_: Any) -> WriteResult:
        await asyncio.sleep(0)
        self.store.maybe_fault()
        seen = {int(x) for x in context.split(",")} if context else set()
        self.store.version += 1
        sibs = [(v, x) for v, x in self.store.data.get(key, []) if v not in seen]
        sibs.append((self.store.version, value))
        self.store.data[key] = sibs
        return WriteResult(str(self.store.version))

    async def delete(self, key: str, context: str | None = None, **_: Any) -> None:
        self.store.data.pop(key, None)

    async def clock(self) -> float:
        return 0.0

    async def health(self) -> bool:
        return True

    async def close(self) -> None:
        return None


@dataclass
class FakeTarget:
    """An in-process store with Dynamo's settings (the checkers read its N/R/W), not registered
    as a plugin: the Python API's ``load_spec(..., target=...)`` + ``run_test(target=...)`` path."""

    store: FakeStore = field(default_factory=FakeStore)
    name: str = "fake"
    capabilities: frozenset = frozenset({"siblings"})
    ports_per_node: int = 1

    def resolve_settings(self, given, nodes):
        return DynamoTarget().resolve_settings(given, nodes)

    def client(self, node: str, url: str, *, timeout: float, settings) -> FakeClient:
        return FakeClient(node, self.store)


class FakeBackend:
    """A backend with nothing behind it: every node 'runs' until teardown."""

    name = "fake"
    capabilities = frozenset({"signals"})
    firewall_chain = ""

    def __init__(self) -> None:
        self.torn_down = False
        self._nodes: list[Node] = []

    def setup(self, config: ClusterConfig) -> list[Node]:
        self._nodes = [Node(n, f"127.0.0.{10 + i}", 1, str(config.run_dir / n)) for i, n in enumerate(config.nodes, 1)]
        return self._nodes

    def teardown(self) -> None:
        self.torn_down = True

    def nodes(self) -> list[Node]:
        return self._nodes

    def is_running(self, node: str) -> bool:
        return not self.torn_down

    def fetch_logs(self, dest: Path) -> None:
        return None


def spec_for(tmp_path: Path, **over: Any):
    base = {"histories": str(tmp_path / "h"), "duration": 1.0, "rate": 400, "concurrency": 4, "recovery": 0,
            "nodes": 3, "nemesis.faults": [], "seed": 7, "final_read_timeout": 5}
    base.update(over)
    return load_spec(None, base, target=FakeTarget())


@pytest.mark.parametrize("workload", ["cart", "register", "session"])
def test_run_produces_complete_history_and_results(tmp_path: Path, workload: str) -> None:
    store = FakeStore(faults=0.1)
    backend = FakeBackend()
    out = run_test(spec_for(tmp_path, **{"workload.name": workload}), backend=backend, target=FakeTarget(store))
    assert backend.torn_down
    h = read_history(out.run_dir / "history.jsonl")
    pairs = h.pairs()
    assert len(pairs) > 50
    assert all(c is not None for _, c in pairs), "every invoke of a finished run is completed"
    client = [o for o in h.client_ops() if o.get("final") is None]
    assert {o.get("session") for o in client} == {0, 1, 2, 3}
    # after every info the worker's next op uses a new process id
    infos = [o for o in client if o.type == "info"]
    assert infos, "the fake's timeouts produce info ops"
    for o in infos:
        later = [x for x in client if x.index > o.index and x.get("session") == o.get("session")]
        assert all(x.process != o.process for x in later)
    finals = [o for o in h if o.get("final") and o.type == "ok"]
    keys = {o.key for o in finals}
    expected = {"cart": 10, "register": 10, "session": 40}[workload]
    assert len(keys) == expected
    results = json.loads((out.run_dir / "results.json").read_text())
    assert results["verdict"] in ("valid", "invalid", "unknown")
    assert set(results["checkers"])  # each named checker has a result (unknown when not built)
    spec = json.loads((out.run_dir / "spec.json").read_text())
    assert spec["seed"] == 7 and spec["versions"]["python"]
    assert (tmp_path / "h" / "latest").resolve() == out.run_dir


def test_cart_ops_follow_the_contract(tmp_path: Path) -> None:
    store = FakeStore()
    out = run_test(spec_for(tmp_path), backend=FakeBackend(), target=FakeTarget(store))
    h = read_history(out.run_dir)
    adds = [o for o in h if o.f == "add" and o.type == "ok"]
    assert adds and all(isinstance(o.value, int) and o.siblings is not None for o in adds)
    assert len({o.value for o in h if o.f == "add" and o.type == "invoke"}) == \
        len([o for o in h if o.f == "add" and o.type == "invoke"]), "items are unique"
    final = {o.key: o.value for o in h if o.get("final") and o.type == "ok"}
    removed = {o.value for o in h if o.f == "remove" and o.type == "ok"}
    for o in adds:  # no faults, one store: every acknowledged, never-removed add is in the final read
        if o.value not in removed:
            assert o.value in final[o.key]


def test_blind_cart_makes_siblings(tmp_path: Path) -> None:
    out = run_test(spec_for(tmp_path, **{"workload.blind": True, "workload.mix": {"add": 1, "read": 1, "remove": 0}}),
                   backend=FakeBackend(), target=FakeTarget())
    h = read_history(out.run_dir)
    assert all(o.get("blind") for o in h if o.f == "add")
    assert max(o.siblings or 0 for o in h if o.f == "read" and o.type == "ok") > 1


def test_failed_setup_is_a_failed_run_and_still_tears_down(tmp_path: Path) -> None:
    class Broken(FakeBackend):
        def setup(self, config: ClusterConfig) -> list[Node]:
            raise RuntimeError("no nodes today")

    b = Broken()
    out = run_test(spec_for(tmp_path), backend=b, target=FakeTarget())
    assert out.exit_code == 3 and "no nodes today" in (out.error or "")
    assert b.torn_down
    assert json.loads((out.run_dir / "results.json").read_text())["run_error"]


def invoked_by_session(run_dir: Path) -> dict[int, list[tuple]]:
    out: dict[int, list[tuple]] = {}
    for o in read_history(run_dir):
        if o.type == "invoke" and o.get("session") is not None and not o.get("final"):
            out.setdefault(o.get("session"), []).append((o.f, o.key, json.dumps(o.value)))
    return out


def test_same_seed_same_op_sequence_per_worker(tmp_path: Path) -> None:
    runs = [run_test(spec_for(tmp_path, seed=s), backend=FakeBackend(), target=FakeTarget()).run_dir
            for s in (11, 11, 12)]
    a, b, c = (invoked_by_session(r) for r in runs)
    for w in a:
        n = min(len(a[w]), len(b[w]))
        assert n > 20 and a[w][:n] == b[w][:n], "timing may cut a run short, never change its ops"
        m = min(len(a[w]), len(c[w]))
        assert a[w][:m] != c[w][:m]


def test_replay_plan_loads_the_stored_schedule(tmp_path: Path) -> None:
    from harness.runner import plan_nemesis
    from nemeses.schedule import dump_schedule

    spec = load_spec(None, {"histories": str(tmp_path), "seed": 5, "nemesis.faults": ["partition", "clock"],
                            "nemesis.interval": 2, "duration": 20})
    plan = plan_nemesis(spec)
    assert plan.schedule and plan.schedule == plan_nemesis(spec).schedule
    run = tmp_path / "old"
    run.mkdir()
    dump_schedule(run / "nemesis-schedule.json", plan.schedule)
    (run / "spec.json").write_text(json.dumps(spec.to_json()))
    other = load_spec(None, {"histories": str(tmp_path), "seed": 99, "nemesis.faults": [],
                             "replay_schedule": str(run)})
    replay = plan_nemesis(other)
    assert [(a.at, a.op) for a in replay.schedule] == [(a.at, a.op) for a in plan.schedule]
    assert replay.nspec.faults == ("partition", "clock")


def test_plain_progress_line_counts_outcomes_faults_and_nodes(tmp_path: Path) -> None:
    import io

    from harness.history import HistoryJournal
    from harness.live import LiveDisplay

    with HistoryJournal(tmp_path / "h.jsonl") as j:
        for t in ("ok", "ok", "fail", "info"):
            j.record(0, "invoke", "read", key="k")
            j.record(0, t, "read", key="k")
        j.record("nemesis", "invoke", "start-partition")
        out = io.StringIO()
        d = LiveDisplay(j, duration=10, node_names=["n1", "n2"], is_running=lambda n: n == "n1",
                        active_faults=lambda: {"partition": {}}, rich_panel=True, stream=out)
        assert not d.rich_panel, "no terminal: plain lines"
        d.set_phase("main")
        d._update()
        line = d.line()
    assert "[main]" in line and "total ok 2 fail 1 info 1" in line
    assert "faults: partition" in line and "n1:up n2:DOWN" in line


def test_hung_or_crashing_requests_are_info_and_the_worker_goes_on(tmp_path: Path) -> None:
    from harness.history import HistoryJournal
    from harness.workers import ClientPhase, run_clients
    from harness.workloads import build

    class Odd(FakeClient):
        calls = 0

        async def get(self, key: str, **kw: Any) -> ReadResult:
            Odd.calls += 1
            if Odd.calls == 1:
                await asyncio.sleep(3600)  # never answers: the harness's guard must end it
            if Odd.calls == 2:
                raise RuntimeError("client bug")
            return await super().get(key, **kw)

    spec = spec_for(tmp_path, **{"workload.name": "register", "concurrency": 1})
    wl = build(spec.workload, 1, ["n1"])
    with HistoryJournal(tmp_path / "h.jsonl") as j:
        asyncio.run(run_clients(j, wl, {"n1": Odd("n1", FakeStore())}, ["n1"],
                                ClientPhase(1, 1, 50, 3.0, client_timeout=0.1)))
    h = read_history(tmp_path / "h.jsonl")
    done = [c for _, c in h.pairs()]
    assert all(c is not None for c in done)
    assert done[0].type == "info" and "no answer" in done[0].error
    assert done[1].type == "info" and "client bug" in done[1].error
    assert [c.process for c in done[:3]] == [0, 1, 2], "a new process after each info"
    assert len(done) > 3
