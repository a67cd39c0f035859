"""Compare-and-set registers (Jepsen's cas-register): reads, unique writes, and cas on what was seen.

Keys ``c-0`` .. ``c-{keys-1}``. A write stores a unique int (``counter * concurrency + worker``),
unconditionally. A cas ``[expected, new]`` expects the value this worker last saw on the key (read,
written or cas'd; ``null``: the key absent) and sets a unique int: ``ok`` when the store wrote,
``fail`` with ``compared: true`` when the compare failed (definite: nothing changed; the store
answered, so availability counts it served). A read records the int or ``null``.
Judged against the ``cas-register`` model, so a stale read or a cas that succeeded against a value
no longer there is a linearizability violation.

Needs a target whose client has ``cas`` (capability ``cas``: etcd's transactions; the reference
Dynamo has none, so the spec refuses the pairing before anything starts).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.generators import FnGen, GenContext, Generator, OpRequest, key_chooser, weighted
from harness.workloads import Completion, WorkloadKind, attempt
from harness.workloads.register import read_value

if TYPE_CHECKING:
    from harness.spec import WorkloadSpec
    from targets.adapter import TargetClient


def cas_key(i: int) -> str:
    return f"c-{i}"


@dataclass
class CasRegisterWorkload:
    spec: "WorkloadSpec"
    concurrency: int
    name: str = "cas-register"
    #: (worker, key) -> the value that worker last saw there: what its next cas expects
    seen: dict[tuple[int, str], Any] = field(default_factory=dict)

    @property
    def checkers(self) -> tuple[str, ...]:
        return KIND.checkers

    def final_keys(self) -> list[str]:
        return [cas_key(i) for i in range(self.spec.keys)]

    def generator(self) -> Generator:
        keys = key_chooser(self.spec.key_dist, self.spec.keys, self.spec.zipf_s)

        def unique(ctx: GenContext) -> int:
            n = ctx.state["cas:counter"] = ctx.state.get("cas:counter", 0) + 1
            return n * self.concurrency + ctx.worker

        def write(ctx: GenContext) -> OpRequest:
            return OpRequest("write", cas_key(keys.choose(ctx.rng)), unique(ctx))

        def cas(ctx: GenContext) -> OpRequest:
            key = cas_key(keys.choose(ctx.rng))
            return OpRequest("cas", key, [self.seen.get((ctx.worker, key)), unique(ctx)])

        def read(ctx: GenContext) -> OpRequest:
            return OpRequest("read", cas_key(keys.choose(ctx.rng)))

        return weighted(self.spec.mix, {"write": FnGen(write), "cas": FnGen(cas), "read": FnGen(read)})

    async def execute(self, client: "TargetClient", req: OpRequest, session: dict[str, Any]) -> Completion:
        assert req.key is not None
        worker = session["id"]
        if req.f == "read":
            comp = await self.final_read(client, req.key)
            if comp.type == "ok":
                self.seen[(worker, req.key)] = comp.value
            return comp
        if req.f == "write":
            _, err = await attempt(client.put(req.key, req.value), req.value)
            if err:
                return err
            self.seen[(worker, req.key)] = req.value
            return Completion.ok(req.value)
        expected, new = req.value
        wrote, err = await attempt(client.cas(req.key, expected, new), req.value)  # type: ignore[attr-defined]
        if err:
            return err
        if not wrote:
            return Completion.fail("compare failed", req.value, compared=True)  # answered: perf counts it served
        self.seen[(worker, req.key)] = new
        return Completion.ok(req.value)

    async def final_read(self, client: "TargetClient", key: str) -> Completion:
        rr, err = await attempt(client.get(key))
        return err or Completion.ok(read_value(rr.values), len(rr.values))


def build(spec: "WorkloadSpec", concurrency: int, node_names: tuple[str, ...]) -> CasRegisterWorkload:
    """The cas-register workload for this spec."""
    return CasRegisterWorkload(spec, concurrency)


KIND = WorkloadKind("cas-register", build, {"read": 2.0, "write": 1.0, "cas": 2.0},
                    ("linearizable", "perf"), needs=("cas",))
