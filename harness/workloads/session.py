"""Sessions: each client writes its own keys and reads them back through varying coordinators.

Session ``s`` (the worker id, recorded as the ``session`` field) owns keys
``s{s}-k0`` .. ``s{s}-k{keys-1}``; a write stores the next int of that key
(1, 2, 3, ...) with the context the session last received for the key
(chained contexts, as a session-guarantee client would); a read goes to its
own keys or, with probability ``foreign_reads``, to another session's. Every
op picks its coordinator at random, so read-your-writes and monotonic reads
are tested across nodes. A read records the sorted sibling values.

With ``read_after_write`` (the default) every write is followed by a read of
the same key ``think_time`` seconds (default 0) after the write completed,
through another random coordinator: the read races the write's replication,
so a coordinator that acknowledges before W replicas stored the write, or a
read that returns one replica's reply instead of the merge, breaks
read-your-writes without any fault. (With the stagger alone the next op came
~50 ms later, after replication on loopback had finished, and such bugs
passed.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.generators import FnGen, GenContext, Generator, OpRequest, key_chooser, weighted
from harness.workloads import Completion, WorkloadKind, attempt, sorted_values

if TYPE_CHECKING:
    from harness.spec import WorkloadSpec
    from targets.adapter import TargetClient


def session_key(session: int, i: int) -> str:
    return f"s{session}-k{i}"


@dataclass(frozen=True)
class SessionWorkload:
    spec: "WorkloadSpec"
    concurrency: int
    node_names: tuple[str, ...]
    name: str = "session"

    @property
    def checkers(self) -> tuple[str, ...]:
        return KIND.checkers

    def final_keys(self) -> list[str]:
        return [session_key(s, i) for s in range(self.concurrency) for i in range(self.spec.keys)]

    def generator(self) -> Generator:
        keys = key_chooser(self.spec.key_dist, self.spec.keys, self.spec.zipf_s)
        nodes = self.node_names

        def write(ctx: GenContext) -> OpRequest:
            key = session_key(ctx.worker, keys.choose(ctx.rng))
            counters = ctx.state.setdefault("session:counters", {})
            counters[key] = counters.get(key, 0) + 1
            return OpRequest("write", key, counters[key], node=ctx.rng.choice(nodes))

        def read(ctx: GenContext) -> OpRequest:
            owner = ctx.worker
            if self.concurrency > 1 and ctx.rng.random() < self.spec.foreign_reads:
                owner = ctx.rng.choice([s for s in range(self.concurrency) if s != ctx.worker])
            return OpRequest("read", session_key(owner, keys.choose(ctx.rng)), node=ctx.rng.choice(nodes))

        mix = weighted(self.spec.mix, {"write": FnGen(write), "read": FnGen(read)})
        if not self.spec.read_after_write:
            return mix

        def next_op(ctx: GenContext) -> OpRequest | None:
            written = ctx.state.pop("session:follow", None)
            if written is not None:
                return OpRequest("read", written, node=ctx.rng.choice(nodes), delay=self.spec.think_time,
                                 follows=True)
            op = mix.next(ctx)
            if op is not None and op.f == "write":
                ctx.state["session:follow"] = op.key
            return op

        return FnGen(next_op)

    async def execute(self, client: "TargetClient", req: OpRequest, session: dict[str, Any]) -> Completion:
        assert req.key is not None
        contexts: dict[str, str | None] = session.setdefault("contexts", {})
        if req.f == "read":
            rr, err = await attempt(client.get(req.key))
            if err:
                return err
            if req.key.startswith(f"s{session.get('id')}-"):
                contexts[req.key] = rr.context
            return Completion.ok(sorted_values(list(rr.values)), len(rr.values))
        wr, err = await attempt(client.put(req.key, req.value, contexts.get(req.key)), req.value)
        if err:
            return err
        contexts[req.key] = wr.context
        return Completion.ok(req.value)

    async def final_read(self, client: "TargetClient", key: str) -> Completion:
        rr, err = await attempt(client.get(key))
        return err or Completion.ok(sorted_values(list(rr.values)), len(rr.values))


def build(spec: "WorkloadSpec", concurrency: int, node_names: tuple[str, ...]) -> SessionWorkload:
    """The session workload for this spec."""
    return SessionWorkload(spec, concurrency, node_names)


KIND = WorkloadKind("session", build, {"write": 1.0, "read": 2.0},
                    ("session", "staleness", "siblings", "perf", "convergence"))
