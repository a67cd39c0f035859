"""The runner's waits around the main phase: converge before it, settle and read-all after it.

Both guard against anomalies the harness would otherwise invent: start-up
mistaken for a fault (converge) and writes in transit mistaken for lost
writes (settle + final reads of every replica).
"""
from __future__ import annotations

import asyncio
from typing import Any

from harness.workers import ReadAllReplicas, converge, settle
from targets.adapter import OpFailed, ReadResult


class FakeNode:
    """A client whose answers change over time: down peers / pending hints drain after some polls."""

    def __init__(self, node: str, down_polls: int = 0, pending_polls: int = 0, broken: bool = False,
                 all_replicas: bool = False) -> None:
        self.node = node
        self.down_polls, self.pending_polls, self.broken = down_polls, pending_polls, broken
        self.all_replicas = all_replicas              # r = N succeeds (every replica answers)
        self.gets: list[int | None] = []

    async def health(self) -> bool:
        return True

    async def peers_down(self) -> list[str]:
        if self.broken:
            raise OSError("no answer")
        self.down_polls -= 1
        return ["n9"] if self.down_polls >= 0 else []

    async def pending_handoffs(self) -> int:
        if self.broken:
            raise OSError("no answer")
        self.pending_polls -= 1
        return 3 if self.pending_polls >= 0 else 0

    async def get(self, key: str, *, r: int | None = None, pr: int | None = None,
                  timeout: float | None = None) -> ReadResult:
        self.gets.append(r)
        if r == 3 and not self.all_replicas:
            raise OpFailed("read quorum not reached: needed 3, replied 2")
        return ReadResult((1,), "ctx", True)


def test_converge_waits_until_every_node_sees_every_peer() -> None:
    nodes = {"n1": FakeNode("n1", down_polls=3), "n2": FakeNode("n2")}
    out = asyncio.run(converge(nodes, timeout=10, poll=0.01))
    assert out["converged"] is True and out["down"] == {}
    assert nodes["n1"].down_polls < 0          # it really polled until n1's view cleared


def test_converge_gives_up_at_the_timeout_and_says_who_is_down() -> None:
    nodes = {"n1": FakeNode("n1", down_polls=10**6), "n2": FakeNode("n2", broken=True)}
    out = asyncio.run(converge(nodes, timeout=0.1, poll=0.01))
    assert out["converged"] is False
    assert out["down"] == {"n1": ["n9"], "n2": None}   # None: the node could not say


def test_settle_waits_for_pending_handoffs_to_drain() -> None:
    nodes = {"n1": FakeNode("n1", pending_polls=4), "n2": FakeNode("n2")}
    out = asyncio.run(settle(nodes, timeout=10, poll=0.01))
    assert out["settled"] is True and out["pending"] == {"n1": 0, "n2": 0}
    out = asyncio.run(settle({"n1": FakeNode("n1", pending_polls=10**6)}, timeout=0.1, poll=0.01))
    assert out["settled"] is False and out["pending"] == {"n1": 3}


def test_final_reads_ask_every_replica_then_fall_back_to_the_default_r() -> None:
    node = FakeNode("n1")
    client: Any = ReadAllReplicas(node, 3)
    rr = asyncio.run(client.get("k"))
    assert rr.values == (1,)
    assert node.gets == [3, None]              # r = N first; the default R only after it failed
    assert client.node == "n1"


def test_a_final_read_that_fell_back_from_r_n_is_journaled_partial(tmp_path) -> None:
    """The lost-writes checker must know when a final read could not ask every replica (it
    then says "maybe lost", not "lost"), so the journal marks such reads ``partial``."""
    from harness.history import HistoryJournal, read_history
    from harness.workers import final_reads
    from harness.workloads import Completion

    class ReadValues:
        async def final_read(self, client, key):
            rr = await client.get(key)
            return Completion.ok(list(rr.values), len(rr.values))

    path = tmp_path / "history.jsonl"
    with HistoryJournal(path) as journal:
        for key, node in (("k1", FakeNode("n1")), ("k2", FakeNode("n2", all_replicas=True))):
            missing = asyncio.run(final_reads(journal, ReadValues(), {node.node: node}, [key], 100,
                                              timeout=5, client_timeout=1, read_all=3))
            assert missing == []
    reads = {op.key: op for op in read_history(path) if op.type == "ok"}
    assert reads["k1"].extra.get("partial") is True and reads["k1"].extra.get("final") is True
    assert "partial" not in reads["k2"].extra and reads["k2"].value == [1]
