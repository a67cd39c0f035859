"""Single-key registers: unique writes and reads, for linearizability and staleness.

Keys ``r-0`` .. ``r-{keys-1}``. A write stores a unique int
(``counter * concurrency + worker``), reading first for the causal context
so it supersedes what it saw (Dynamo has no other way to overwrite). A read
records the int, ``null`` when absent, or the *list* of sibling values when
the store returned several (which no single-valued register accepts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.generators import FnGen, GenContext, Generator, OpRequest, key_chooser, weighted
from harness.workloads import Completion, WorkloadKind, attempt, sorted_values

if TYPE_CHECKING:
    from harness.spec import WorkloadSpec
    from targets.adapter import TargetClient


def register_key(i: int) -> str:
    return f"r-{i}"


def read_value(values: tuple[Any, ...]) -> Any:
    """The register value a read observed: one value, None when absent, a list for siblings."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return sorted_values(list(values))


@dataclass(frozen=True)
class RegisterWorkload:
    spec: "WorkloadSpec"
    concurrency: int
    name: str = "register"

    @property
    def checkers(self) -> tuple[str, ...]:
        return KIND.checkers

    def final_keys(self) -> list[str]:
        return [register_key(i) for i in range(self.spec.keys)]

    def generator(self) -> Generator:
        keys = key_chooser(self.spec.key_dist, self.spec.keys, self.spec.zipf_s)

        def write(ctx: GenContext) -> OpRequest:
            n = ctx.state.get("register:counter", 0) + 1
            ctx.state["register:counter"] = n
            return OpRequest("write", register_key(keys.choose(ctx.rng)), n * self.concurrency + ctx.worker)

        def read(ctx: GenContext) -> OpRequest:
            return OpRequest("read", register_key(keys.choose(ctx.rng)))

        return weighted(self.spec.mix, {"write": FnGen(write), "read": FnGen(read)})

    async def execute(self, client: "TargetClient", req: OpRequest, session: dict[str, Any]) -> Completion:
        assert req.key is not None
        if req.f == "read":
            return await self.final_read(client, req.key)
        rr, err = await attempt(client.get(req.key), req.value, prefix="read before write: ",
                                indeterminate_is_fail=True)
        if err:
            return err
        _, err = await attempt(client.put(req.key, req.value, rr.context), req.value, len(rr.values))
        return err or Completion.ok(req.value, len(rr.values))

    async def final_read(self, client: "TargetClient", key: str) -> Completion:
        rr, err = await attempt(client.get(key))
        return err or Completion.ok(read_value(rr.values), len(rr.values))


def build(spec: "WorkloadSpec", concurrency: int, node_names: tuple[str, ...]) -> RegisterWorkload:
    """The register workload for this spec."""
    return RegisterWorkload(spec, concurrency)


KIND = WorkloadKind("register", build, {"write": 1.0, "read": 1.0},
                    ("linearizable", "staleness", "siblings", "perf", "convergence"))
