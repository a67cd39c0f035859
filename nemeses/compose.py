"""Several nemeses as one: ops routed by ``f``, heal undoing every fault, errors collected.

Jepsen's ``compose``: each op goes to the nemesis that handles its ``f``.
The ``heal`` op (the last op of every schedule) and :meth:`heal` (called on
every exit path) heal *all* parts, in an order that lets later heals reach
the nodes: paused nodes are resumed first, killed nodes restarted next, then
clocks, links and partitions (each part's ``heal_rank``, lowest first; a part
declaring none, e.g. a plugin's, heals last). A part whose heal fails does not stop the
others; the failures are raised together at the end as :class:`HealError`.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Sequence

from harness.backends.base import Backend
from harness.errors import CapabilityError
from nemeses import fault_kind, firewall, probes
from nemeses.base import Nemesis, NemesisContext, NemesisOp, Outcome, Probe, confirmed
from nemeses.clock import faketime_text
from targets.adapter import AdminError, Target

#: Heal rank of a part that declares none: after every built-in part.
LAST = 100


class HealError(RuntimeError):
    """Some faults could not be undone; the message names each (every part was still tried)."""

    def __init__(self, errors: Sequence[str]):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


class ComposedNemesis:
    """One nemesis made of parts, each owning some op ``f`` names."""

    name = "composed"

    def __init__(self, parts: Sequence[Nemesis], faults: Iterable[str] = ()):
        self.faults = tuple(sorted(faults))   # the fault kinds the parts perform (their records' needs)
        self.parts = sorted(parts, key=lambda p: getattr(p, "heal_rank", LAST))
        self.routes: dict[str, Nemesis] = {}
        for part in self.parts:
            for f in part.fs:
                if f in self.routes:
                    raise ValueError(f"two nemeses handle {f!r}: {self.routes[f].name} and {part.name}")
                self.routes[f] = part
        self.fs = frozenset(self.routes) | {"heal"}
        self.ctx: NemesisContext | None = None
        self._lock = threading.RLock()

    def setup(self, ctx: NemesisContext) -> None:
        """Set up every part; refuse (one CapabilityError naming every reason) if any part cannot run here.

        A fault whose record needs a target capability this target lacks is refused before any part is
        set up, by the function the spec's check uses (``fault_kind.target_refusals``): the guard for a
        spec the harness did not validate (``run_test`` from Python)."""
        refusals = fault_kind.target_refusals(self.faults, ctx.target)
        if refusals:
            raise CapabilityError("; ".join(refusals))
        self.ctx = ctx
        reasons = []
        for part in self.parts:
            try:
                part.setup(ctx)
            except CapabilityError as e:
                reasons.append(str(e))
        if reasons:
            raise CapabilityError("; ".join(reasons))

    def invoke(self, op: NemesisOp) -> Outcome:
        """Route ``op`` to its part; ``heal`` heals every part and verifies the cluster is clean."""
        if op.f == "heal":
            return self._heal_op()
        part = self.routes.get(op.f)
        if part is None:
            return Outcome(done={}, probe=Probe(False, f"no nemesis handles {op.f!r} (handled: {', '.join(sorted(self.fs))})"),
                           mechanism="")
        try:
            return part.invoke(op)
        except Exception as e:  # a backend call that blew up: recorded as a failed fault, never as done
            return Outcome(done={}, probe=Probe(False, f"{part.name} nemesis failed: {type(e).__name__}: {e}"),
                           mechanism=part.name)

    def _heal_op(self) -> Outcome:
        """Heal every part; in effect once every part's heal returned, then verified cluster-wide."""
        t0 = time.monotonic_ns()
        failed = self._heal_all()
        done = {p.name: failed.get(p.name, "healed") for p in self.parts}
        if failed:
            return Outcome(done=done, probe=Probe(False, "; ".join(failed.values())), mechanism="heal")
        effective = time.monotonic_ns()
        probe = probes.verify_healed(self.ctx.backend, self.ctx.target, self.ctx.nodes) if self.ctx else Probe(True, "nothing set up")
        return confirmed(done, probe, "heal", t0, effective)

    def _heal_all(self) -> dict[str, str]:
        """Heal each part in heal-rank order; {part name: what failed}."""
        failed: dict[str, str] = {}
        with self._lock:
            for part in self.parts:
                try:
                    part.heal()
                except BaseException as e:  # noqa: BLE001 - heal must reach every part, even on Ctrl-C
                    msg = str(e)
                    failed[part.name] = msg if msg.startswith(part.name) else f"{part.name}: {type(e).__name__}: {msg}"
        return failed

    def heal(self) -> None:
        """Heal every part (never stopping at the first failure); HealError naming every failure."""
        failed = self._heal_all()
        if failed:
            raise HealError(list(failed.values()))


def heal_cluster(backend: Backend, target: Target, say: Callable[[str], None] = print) -> Probe:
    """Undo every fault on a cluster this process did not fault itself (``dynharness heal``).

    Without the nemesis's memory it undoes everything a nemesis can leave:
    SIGCONT to every node, start every node that is down, flush the
    backend's iptables chain, write "+0" into every libfaketime file, clear
    the in-process transport faults; then verifies. ``say`` gets one line
    per thing done.
    """
    nodes = backend.nodes()
    names = [n.name for n in nodes]
    if "signals" in backend.capabilities:
        resumed = []
        for n in names:
            if backend.is_running(n):
                try:
                    backend.resume(n)
                    resumed.append(n)
                except Exception as e:  # noqa: BLE001 - report and keep healing
                    say(f"{n}: SIGCONT failed: {e}")
        say(f"SIGCONT sent to every running node ({', '.join(resumed) or 'none'})")
    for n in names:
        if not backend.is_running(n):
            try:
                backend.start(n)
                say(f"{n}: was down, started")
            except Exception as e:  # noqa: BLE001
                say(f"{n}: was down, start failed: {e}")
    if "iptables" in backend.capabilities and backend.firewall_chain:
        removed, errors = firewall.flush(backend, names)
        say(f"iptables chain {backend.firewall_chain}: {sum(removed.values())} rule(s) flushed")
        for e in errors:
            say(f"iptables flush failed: {e}")
    if "faketime" in backend.capabilities:
        for node in nodes:
            if node.clock_file:
                try:
                    backend.write_file(node.name, node.clock_file, faketime_text(0.0))
                    say(f"{node.name}: clock file reset to +0")
                except Exception as e:  # noqa: BLE001
                    say(f"{node.name}: clock reset failed: {e}")
    for node in nodes if "transport-faults" in target.capabilities else ():
        try:
            before = target.admin.faults(node)
            target.admin.clear_faults(node)
            had = {k: v for k, v in before.items() if v}
            say(f"{node.name}: in-process faults cleared" + (f" (had {had})" if had else " (none set)"))
        except AdminError as e:
            say(f"{node.name}: clearing in-process faults failed: {e}")
    return probes.verify_healed(backend, target, nodes)
