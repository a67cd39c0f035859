"""The ``durable`` workload: every write goes to a fresh key, once; the final reads read them all back.

A plugin workload is one :class:`harness.workloads.WorkloadKind` (registered under
``dynharness.workloads``): its op mix, the checkers that judge it, and how to build it.
"""
from dataclasses import dataclass, field

from harness.generators import FnGen, OpRequest
from harness.workloads import Completion, WorkloadKind, attempt


@dataclass
class DurableWorkload:
    spec: object
    name: str = "durable"
    written: set = field(default_factory=set)   # keys some write was sent to (final reads cover these)

    @property
    def checkers(self):
        return KIND.checkers

    def generator(self):
        def write(ctx):
            n = ctx.state["durable:n"] = ctx.state.get("durable:n", 0) + 1
            key = f"d-{ctx.worker}-{n}"
            self.written.add(key)
            return OpRequest("write", key, n)
        return FnGen(write)

    def final_keys(self):
        return sorted(self.written)

    async def execute(self, client, req, session):
        _, err = await attempt(client.put(req.key, req.value), req.value)
        return err or Completion.ok(req.value)

    async def final_read(self, client, key):
        rr, err = await attempt(client.get(key))
        return err or Completion.ok(rr.values[0] if rr.values else None)


KIND = WorkloadKind("durable", lambda spec, concurrency, nodes: DurableWorkload(spec), {"write": 1.0},
                    ("durable", "perf"))
