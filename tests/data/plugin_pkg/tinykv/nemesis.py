"""The ``restart`` fault: kill -9 the chosen nodes and start them again (a crash-restart).

A plugin nemesis is one :class:`nemeses.fault_kind.FaultKind` record (registered under
``dynharness.nemeses``): its start and stop ops, how the schedule draws one occurrence (every
choice written into the op, so a stored schedule replays), its ``[nemesis.restart]`` settings, and
the nemesis part that performs it from the backend's primitives, probed through the target's admin.
"""
import time

from harness.errors import CapabilityError
from nemeses.base import NemesisOp, Outcome, Probe
from nemeses.fault_kind import FaultKind
from nemeses.schedule import resolve_targets


class RestartNemesis:
    name = "restart"
    fs = frozenset({"start-restart", "stop-restart"})

    def setup(self, ctx):
        if "signals" not in ctx.backend.capabilities:
            raise CapabilityError(f"backend {ctx.backend.name} cannot kill its nodes: refusing the restart nemesis")
        self.ctx = ctx

    def invoke(self, op):
        if op.f == "stop-restart":
            return Outcome({}, Probe(True, "nothing to undo"), "none")
        nodes = {n.name: n for n in self.ctx.nodes}
        done = {}
        for name in op.value["nodes"]:
            self.ctx.backend.kill(name)
            time.sleep(op.value["down_s"])
            self.ctx.backend.start(name)
            healthy, why = self.ctx.target.admin.health(nodes[name])
            if not (healthy and self.ctx.backend.is_running(name)):
                return Outcome(done, Probe(False, f"{name} did not come back: {why}"), "SIGKILL + start")
            done[name] = "restarted"
        return Outcome(done, Probe(True, f"{len(done)} node(s) killed, started and answering"), "SIGKILL + start")

    def heal(self):
        for node in self.ctx.nodes:
            if not self.ctx.backend.is_running(node.name):
                self.ctx.backend.start(node.name)


def draw(spec, nodes, rng):
    picked = resolve_targets(spec.targets, nodes, rng)
    return (NemesisOp("start-restart", {"nodes": picked, "down_s": spec.options["restart"]["down_s"]}),
            NemesisOp("stop-restart", None))


KIND = FaultKind("restart", "start-restart", "stop-restart", "restart",
                 build=lambda kinds, shared: RestartNemesis(), draw=draw, options={"down_s": 0.0})
