"""The power-loss nemesis: a node loses power, and with it whatever its disk never fsynced.

Why: ``kill -9`` (the crash nemesis) loses nothing that reached the page cache, so a store's
``fsync`` setting is invisible to it. Here each node's data dir is a lazy disk
(:mod:`harness.backends.lazyfs`, set up by the backend when this fault is asked for), which
keeps track of every write and name change since the last fsync and can drop them all.

* ``power-off {"nodes", "torn"}``: every listed node at once: SIGKILL (as crash), then
  ``backend.power_loss(node, torn)``: the lazy disk drops what was never fsynced (with ``torn``,
  the last unsynced write is half-applied again), is unmounted with the kernel's caches of it
  and mounted anew on what is left. The node stays down. Probe: the process is gone and does
  not answer; a marker written without fsync into the data dir after the kill is gone after
  the drop, and the marker fsynced when the disk was first mounted is there. The done value
  says what was dropped (``bytes`` written since the files' last syncs, ``files``, ``names``:
  creates, renames and unlinks undone).
* ``power-on {"nodes"}``: start the node on what survived (as crash's ``start``).
* heal: power every node this nemesis turned off back on.

The outcome's ``effective_ns`` is when the last node's unsynced data was gone.
"""
from __future__ import annotations

import os
import shlex
import time
from typing import Any

from harness.backends.lazy_disks import SYNCED_MARKER, UNSYNCED_MARKER
from harness.errors import CapabilityError
from nemeses.base import NemesisContext, NemesisOp
from nemeses.crash import EFFECTIVE, CrashNemesis

MECHANISM = "SIGKILL + lazy disk power loss"


class PowerLossNemesis(CrashNemesis):
    """Handles ``power-off`` and ``power-on`` (value ``{"nodes": [...]}``); restarts as crash does."""

    name = "power"
    fs = frozenset({"power-off", "power-on"})

    def setup(self, ctx: NemesisContext) -> None:
        """Refuse unless the backend can signal its nodes and put their data on lazy disks."""
        if "power-loss" not in ctx.backend.capabilities:
            raise CapabilityError(f"backend {ctx.backend.name} did not put the nodes' data dirs on lazy disks: "
                                  "refusing the power-loss nemesis")
        super().setup(ctx)

    OUTCOMES = {"power-off": (MECHANISM, "lost power: process gone, unsynced writes dropped"),
                "power-on": ("start", "powered on: process runs and answers health")}

    def _act(self, op: NemesisOp, name: str) -> dict[str, Any]:
        if op.f == "power-on":
            return self._start(name)
        return self._power_off(name, torn=bool((op.value or {}).get("torn")))

    def _power_off(self, name: str, torn: bool) -> dict[str, Any]:
        backend, node = self.ctx.backend, self.nodes[name]
        t0 = time.monotonic()
        self._down.add(name)
        backend.kill(name)
        gone = not backend.is_running(name)
        answers, why = self.ctx.target.admin.health(node, timeout=1.0)
        unsynced = os.path.join(node.data_dir, UNSYNCED_MARKER)
        backend.write_file(name, unsynced, b"written without fsync: a power loss must drop it\n")
        dropped = backend.power_loss(name, torn=torn)
        out: dict[str, Any] = {EFFECTIVE: time.monotonic_ns(), "signal": "KILL", "process_gone": gone,
                               "health": why, "dropped": {k: dropped.get(k) for k in
                                                          ("bytes", "files", "pages", "names", "torn_bytes")}}
        markers = self._markers(name, unsynced, os.path.join(node.data_dir, SYNCED_MARKER))
        problems = [p for p, bad in (("process still running after SIGKILL", not gone),
                                     ("node still answers /admin/health", answers),
                                     (f"lazy disk: {'; '.join(dropped.get('errors') or [])}", dropped.get("errors")),
                                     (f"markers after the power loss: {markers}", markers != "ok")) if bad]
        out.update(took_s=round(time.monotonic() - t0, 4), ok=not problems)
        if problems:
            out["probe"] = ", ".join(problems)
        return out

    def _markers(self, name: str, unsynced: str, synced: str) -> str:
        """"ok" when the unsynced marker is gone and the synced one is there, else what is wrong."""
        script = (f"test -e {shlex.quote(unsynced)} && echo 'unsynced marker survived'; "
                  f"test -s {shlex.quote(synced)} || echo 'synced marker lost'; true")
        res = self.ctx.backend.run(name, ["sh", "-c", script], timeout=10)
        said = "; ".join(ln for ln in res.stdout.splitlines() if ln.strip())
        return said or ("ok" if res.returncode == 0 else f"probe failed: {res.stderr.strip()[:200]}")
