"""The crash nemesis: ``kill -9`` nodes and start them again; ``wipe``: a node that lost its disk.

* ``kill {"nodes"}``: SIGKILL through the backend. Probe: the process is gone
  (``backend.is_running``) and the node no longer answers ``/admin/health``.
* ``wipe {"nodes"}``: kill as above, then delete the node's data directory
  (``backend.wipe``). Probe: as kill, plus the data directory is gone or
  empty (checked on the node when the backend can run a command there).
* ``start {"nodes"}``: start the node with whatever data it has. Probe: the
  process runs and answers ``/admin/health``.
* heal: start every node this nemesis took down.

Every listed node at once. The outcome's ``effective_ns`` is when the last
node's SIGKILL (and wipe) returned; for ``start``, when the last node was
started, which the backends count from its first health answer (a restarted
node is down until it serves).
"""
from __future__ import annotations

import shlex
import threading
import time
from typing import Any, Callable, Mapping, Sequence

from harness.errors import CapabilityError
from nemeses import probes
from nemeses.base import NemesisContext, NemesisOp, Outcome, Probe
from nemeses.topology import node_order
from nemeses.fanout import each_node

MECHANISM = "SIGKILL"
#: Key of a per-node result holding ``time.monotonic_ns()`` when that node's mechanism returned
#: (taken out of the recorded value by :func:`node_outcome`: it is not on the history's clock).
EFFECTIVE = "effective_ns"


def op_nodes(value: Any, known: Mapping[str, Any], default: Sequence[str] = ()) -> list[str] | None:
    """The ``nodes`` list of an op value (``default`` when absent); None when empty or naming unknown nodes."""
    names = list((value or {}).get("nodes") or default)
    return names if names and all(n in known for n in names) else None


def node_outcome(results: Mapping[str, Any], t0: float, mechanism: str, what: str) -> Outcome:
    """One Outcome from per-node results ({"ok", "probe", "took_s", EFFECTIVE, ...} or an exception).

    Its ``effective_ns`` is the latest node's (the fault is in place on every node from then),
    None when some node's mechanism never returned.
    """
    marks = [r.get(EFFECTIVE) if isinstance(r, dict) else None for r in results.values()]
    effective = max(marks) if marks and None not in marks else None
    done = {n: ({k: v for k, v in r.items() if k != EFFECTIVE} if isinstance(r, dict)
                else {"ok": False, "probe": f"{type(r).__name__}: {r}"})
            for n, r in results.items()}
    meas = {"effect_s": round(time.monotonic() - t0, 4), **{n: d.get("took_s") for n, d in done.items()}}
    bad = [f"{n}: {d['probe']}" for n, d in done.items() if not d.get("ok")]
    probe = Probe(False, "; ".join(bad), meas) if bad else Probe(True, f"{', '.join(sorted(done, key=node_order))} {what}", meas)
    return Outcome(done=done, probe=probe, mechanism=mechanism, effective_ns=effective)


def heal_nodes(label: str, names: Sequence[str], fn: Callable[[str], Any]) -> None:
    """Run a per-node heal step on every node; RuntimeError naming each node that did not recover."""
    if not names:
        return
    results = each_node(sorted(names), fn)
    bad = [f"{n}: {r.get('probe') if isinstance(r, dict) else r}" for n, r in results.items()
           if not (isinstance(r, dict) and r.get("ok"))]
    if bad:
        raise RuntimeError(f"{label} heal: " + "; ".join(bad))


class CrashNemesis:
    """Handles ``kill``, ``wipe`` and ``start`` (value ``{"nodes": [...]}``)."""

    name = "crash"
    heal_rank = 20  # heals before higher ranks (nemeses.compose)
    fs = frozenset({"kill", "start", "wipe"})

    def __init__(self, wipe: bool = False, start_timeout: float = 30.0):
        self.needs_wipe = wipe
        self.start_timeout = start_timeout
        self.ctx: NemesisContext | None = None
        self._down: set[str] = set()
        self._lock = threading.RLock()

    def setup(self, ctx: NemesisContext) -> None:
        """Refuse when the backend cannot signal (or, for wipe, wipe) its nodes."""
        caps = ctx.backend.capabilities
        if "signals" not in caps:
            raise CapabilityError(f"backend {ctx.backend.name} cannot signal its nodes: refusing the crash nemesis")
        if self.needs_wipe and "wipe" not in caps:
            raise CapabilityError(f"backend {ctx.backend.name} cannot wipe a node's data: refusing the wipe nemesis")
        self.ctx = ctx
        self.nodes = {n.name: n for n in ctx.nodes}

    #: op f -> (mechanism, what a good probe confirmed), for the op's outcome
    OUTCOMES: Mapping[str, tuple[str, str]] = {
        "kill": (MECHANISM, "killed: process gone, no answer"),
        "wipe": (MECHANISM, "killed and wiped: process gone, data dir empty"),
        "start": ("start", "started: process runs and answers health")}

    def invoke(self, op: NemesisOp) -> Outcome:
        """Act on every listed node at once (:meth:`_act`) and probe each."""
        assert self.ctx is not None, "setup() first"
        with self._lock:
            mechanism, what = self.OUTCOMES.get(op.f, (MECHANISM, ""))
            names = op_nodes(op.value, self.nodes)
            if names is None:
                return Outcome(done={}, probe=Probe(False, f"bad target nodes in {op.value!r}"), mechanism=mechanism)
            if op.f not in self.fs:
                raise ValueError(f"{self.name} nemesis cannot handle {op.f!r}")
            t0 = time.monotonic()
            return node_outcome(each_node(names, lambda n: self._act(op, n)), t0, mechanism, what)

    def _act(self, op: NemesisOp, name: str) -> dict[str, Any]:
        """One node's part of ``op``: its result for :func:`node_outcome`."""
        return self._start(name) if op.f == "start" else self._kill(name, wipe=op.f == "wipe")

    def _kill(self, name: str, *, wipe: bool) -> dict[str, Any]:
        backend, node = self.ctx.backend, self.nodes[name]
        t0 = time.monotonic()
        self._down.add(name)
        backend.kill(name)
        if wipe:
            backend.wipe(name)
        out: dict[str, Any] = {EFFECTIVE: time.monotonic_ns(), "signal": "KILL"}
        gone = not backend.is_running(name)
        answers, why = self.ctx.target.admin.health(node, timeout=1.0)
        out.update(process_gone=gone, health=why)
        problems = []
        if not gone:
            problems.append("process still running after SIGKILL")
        if answers:
            problems.append("node still answers /admin/health")
        if wipe:
            empty = self._data_dir_empty(name)
            out["wiped"] = True
            out["data_dir_empty"] = empty
            if empty is False:
                problems.append(f"data dir {node.data_dir} still has files")
        out["took_s"] = round(time.monotonic() - t0, 4)
        out["ok"] = not problems
        if problems:
            out["probe"] = ", ".join(problems)
        return out

    def _data_dir_empty(self, name: str) -> bool | None:
        """Whether the node's data dir is gone or empty; None when the backend cannot look (node down)."""
        d = shlex.quote(self.nodes[name].data_dir)
        try:
            res = self.ctx.backend.run(name, ["sh", "-c", f'test ! -e {d} || test -z "$(ls -A {d})"'], timeout=10)
        except Exception:
            return None
        if res.returncode in (0, 1):
            return res.returncode == 0
        return None

    def _start(self, name: str) -> dict[str, Any]:
        backend, node = self.ctx.backend, self.nodes[name]
        t0 = time.monotonic()
        was_running = backend.is_running(name)
        if not was_running:
            backend.start(name)       # returns once the node answers (a restarted node is down until then)
        effective = time.monotonic_ns()
        up, why, _ = probes.wait_health(self.ctx.target.admin, node, True, time.monotonic() + self.start_timeout)
        running = backend.is_running(name)
        out: dict[str, Any] = {EFFECTIVE: effective, "started": not was_running, "running": running, "health": why,
                               "took_s": round(time.monotonic() - t0, 4), "ok": up and running}
        if out["ok"]:
            self._down.discard(name)
        else:
            out["probe"] = "process not running" if not running else f"no health answer: {why}"
        return out

    def heal(self) -> None:
        """Start every node this nemesis killed (idempotent); raise naming the ones that did not come back."""
        with self._lock:
            if self.ctx is not None:
                heal_nodes(self.name, self._down, self._start)
