"""The pause nemesis: SIGSTOP nodes, SIGCONT them.

Probe for ``pause``: the process still exists but ``/admin/health`` gets no
answer within the timeout (the kernel still completes the TCP handshake of a
stopped process, so only a real request tells). Only that silence confirms a
pause, so the probe returns ``health_timeout`` (1 s) after the SIGSTOP at the
earliest; the outcome's ``effective_ns`` is still when SIGSTOP returned, and
the fault window opens there. Probe for ``resume``: the node answers again.
Heal resumes every node this nemesis stopped.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from harness.errors import CapabilityError
from nemeses import probes
from nemeses.base import NemesisContext, NemesisOp, Outcome, Probe
from nemeses.crash import EFFECTIVE, heal_nodes, node_outcome, op_nodes
from nemeses.fanout import each_node


class PauseNemesis:
    """Handles ``pause`` and ``resume`` (value ``{"nodes": [...]}``)."""

    name = "pause"
    heal_rank = 10  # heals before higher ranks (nemeses.compose)
    fs = frozenset({"pause", "resume"})

    def __init__(self, health_timeout: float = 1.0, resume_timeout: float = 10.0):
        self.health_timeout = health_timeout
        self.resume_timeout = resume_timeout
        self.ctx: NemesisContext | None = None
        self._paused: set[str] = set()
        self._lock = threading.RLock()

    def setup(self, ctx: NemesisContext) -> None:
        """Refuse when the backend cannot signal its nodes."""
        if "signals" not in ctx.backend.capabilities:
            raise CapabilityError(f"backend {ctx.backend.name} cannot signal its nodes: refusing the pause nemesis")
        self.ctx = ctx
        self.nodes = {n.name: n for n in ctx.nodes}

    def invoke(self, op: NemesisOp) -> Outcome:
        """Stop or continue the listed nodes and probe each."""
        assert self.ctx is not None, "setup() first"
        with self._lock:
            names = op_nodes(op.value, self.nodes, sorted(self._paused) if op.f == "resume" else ())
            if names is None:
                return Outcome(done={}, probe=Probe(False, f"bad target nodes in {op.value!r}"), mechanism="SIGSTOP")
            t0 = time.monotonic()
            if op.f == "pause":
                return node_outcome(each_node(names, self._pause), t0, "SIGSTOP",
                                    f"paused: process exists, no answer to /admin/health for {self.health_timeout:g} s "
                                    "(only that silence confirms a pause; in effect since SIGSTOP)")
            if op.f == "resume":
                return node_outcome(each_node(names, self._resume), t0, "SIGCONT", "resumed: answering again")
            raise ValueError(f"pause nemesis cannot handle {op.f!r}")

    def _pause(self, name: str) -> dict[str, Any]:
        t0 = time.monotonic()
        self._paused.add(name)
        self.ctx.backend.pause(name)
        effective = time.monotonic_ns()
        running = self.ctx.backend.is_running(name)
        answers, why = self.ctx.target.admin.health(self.nodes[name], timeout=self.health_timeout)
        out: dict[str, Any] = {EFFECTIVE: effective, "signal": "STOP", "process_exists": running, "health": why,
                               "took_s": round(time.monotonic() - t0, 4), "ok": running and not answers}
        if not out["ok"]:
            out["probe"] = "process is gone" if not running else "node still answers /admin/health"
        return out

    def _resume(self, name: str) -> dict[str, Any]:
        t0 = time.monotonic()
        self.ctx.backend.resume(name)
        effective = time.monotonic_ns()
        up, why, _ = probes.wait_health(self.ctx.target.admin, self.nodes[name], True, time.monotonic() + self.resume_timeout)
        out: dict[str, Any] = {EFFECTIVE: effective, "signal": "CONT", "health": why,
                               "took_s": round(time.monotonic() - t0, 4), "ok": up}
        if up:
            self._paused.discard(name)
        else:
            out["probe"] = f"no health answer after SIGCONT: {why}"
        return out

    def heal(self) -> None:
        """SIGCONT every node this nemesis stopped (idempotent); raise naming the ones that stay silent."""
        with self._lock:
            if self.ctx is not None:
                heal_nodes("pause", self._paused, self._resume)
