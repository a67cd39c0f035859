"""The clock nemesis: skew node clocks with libfaketime, probe what each node reports, reset.

Every node of a backend with the ``faketime`` capability runs under
libfaketime with ``FAKETIME_TIMESTAMP_FILE=<node.clock_file>`` and
``FAKETIME_NO_CACHE=1``: whatever offset the file holds ("+30.000s",
"-0.250s"; fractional seconds work, "ms" does not: libfaketime reads "m" as
minutes) applies to the running process at once. Modes:

* ``bump``: one offset (either sign, ms to minutes) on the chosen nodes.
* ``strobe``: a background thread flips the file between +0 and the offset
  every ``period`` seconds (Jepsen's strobe: a clock jumping back and forth).
* ``drift``: a background thread moves the offset by ``rate`` seconds per
  second (a clock running fast or slow).
* ``stop-clock`` / heal: the file back to "+0" on every node, probed.

Probe: each node's ``GET /admin/clock`` minus the harness's clock (at the
request's midpoint, smallest-RTT sample, minus the node's baseline measured
at setup) must equal the offset the file held during that request, within a
tolerance that is recorded; an offset smaller than the probe can resolve is
reported as unverified, not as done. Nodes are sampled side by side. No
libfaketime -> CapabilityError.

The outcome's ``effective_ns`` is when the offset was in every chosen node's
file (libfaketime reads it on every clock call): for strobe and drift, when
their first offset was written, which happens before the background thread
takes over.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Mapping, Sequence

from harness.errors import CapabilityError
from nemeses import probes
from targets.adapter import AdminError
from nemeses.base import NemesisContext, NemesisOp, Outcome, Probe, confirmed
from nemeses.fanout import in_parallel

MECHANISM = "libfaketime"
#: Probe tolerance beyond the request's RTT (seconds): the node reads its clock somewhere inside the RTT.
TOLERANCE = 0.02


def faketime_text(offset_s: float) -> bytes:
    """libfaketime's relative-offset syntax for ``offset_s`` seconds (ms resolution)."""
    if round(offset_s, 3) == 0:
        return b"+0\n"
    return f"{'+' if offset_s > 0 else '-'}{abs(offset_s):.3f}s\n".encode()


class ClockNemesis:
    """Handles ``start-clock`` (``{"mode": bump|strobe|drift, "nodes", ...}``) and ``stop-clock``."""

    name = "clock"
    heal_rank = 30  # heals before higher ranks (nemeses.compose)
    fs = frozenset({"start-clock", "stop-clock"})

    def __init__(self, tick: float = 0.05):
        self.tick = tick
        self.ctx: NemesisContext | None = None
        self.baseline: dict[str, float] = {}
        self.baseline_rtt: dict[str, float] = {}
        # node -> (previous offset, offset the file holds, write version; negative while a write is in progress)
        self._intended: dict[str, tuple[float, float, int]] = {}
        self._touched: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._file_lock = threading.Lock()

    def setup(self, ctx: NemesisContext) -> None:
        """Refuse without libfaketime; reset every clock file to +0 and measure each node's baseline offset."""
        if "faketime" not in ctx.backend.capabilities:
            raise CapabilityError(f"libfaketime is not installed (or the {ctx.backend.name} backend started the nodes "
                                  "without it): refusing the clock nemesis rather than pretending")
        missing = [n.name for n in ctx.nodes if not n.clock_file]
        if missing:
            raise CapabilityError(f"node(s) {', '.join(missing)} run without a libfaketime control file: "
                                  "refusing the clock nemesis")
        self.ctx = ctx
        self.nodes = {n.name: n for n in ctx.nodes}
        for name in self.nodes:
            self._write(name, 0.0)
        self._touched.clear()
        for name, node in self.nodes.items():
            try:
                self.baseline[name], self.baseline_rtt[name] = probes.clock_offset(ctx.target.admin, node, samples=5)
            except AdminError:
                self.baseline[name], self.baseline_rtt[name] = 0.0, 0.0

    # -- file writes -------------------------------------------------------------------------
    def _write(self, name: str, offset_s: float) -> None:
        with self._file_lock:
            self._touched.add(name)
            _, prev, version = self._intended.get(name, (0.0, 0.0, 0))
            version = abs(version) + 1
            self._intended[name] = (prev, offset_s, -version)
            node = self.nodes[name]
            self.ctx.backend.write_file(name, node.clock_file, faketime_text(offset_s))
            self._intended[name] = (offset_s, offset_s, version)

    def _run_background(self, names: Sequence[str], offset_at: Any) -> None:
        """Write ``offset_at(0)`` to the nodes' files now (errors raise), then keep writing
        ``offset_at(elapsed)`` from a thread until stopped."""
        self._stop.clear()
        t0 = time.monotonic()
        first = round(offset_at(0.0), 3)
        for name in names:
            self._write(name, first)

        def loop() -> None:
            last: float | None = first
            while not self._stop.is_set():
                off = round(offset_at(time.monotonic() - t0), 3)
                if off != last:
                    for name in names:
                        if self._stop.is_set():
                            return
                        try:
                            self._write(name, off)
                        except Exception:  # a node that went away: keep the others going
                            pass
                    last = off
                self._stop.wait(self.tick)

        self._thread = threading.Thread(target=loop, name="clock-nemesis", daemon=True)
        self._thread.start()

    def _halt_background(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # -- probes ------------------------------------------------------------------------------
    def _sample(self, name: str, tries: int) -> tuple[float, float, float, float]:
        """(observed offset, rtt, lowest and highest offset the file held during the request)."""
        before = self._intended.get(name, (0.0, 0.0, 0))
        observed, rtt = probes.clock_offset(self.ctx.target.admin, self.nodes[name], samples=tries)
        after = self._intended.get(name, (0.0, 0.0, 0))
        held = (before[0], before[1], after[0], after[1])
        return observed - self.baseline.get(name, 0.0), rtt, min(held), max(held)

    def _probe(self, names: Sequence[str], rounds: int, spacing: float, tries: int = 1) -> Probe:
        """Sample every node ``rounds`` times; each sample must lie within what the file held meanwhile."""
        meas: dict[str, Any] = {}
        bad: list[str] = []
        unresolved: list[str] = []

        def sampled(name: str) -> tuple[list[tuple[float, float, float, float]], str | None]:
            rows = []
            for i in range(rounds):
                if i:
                    time.sleep(spacing)
                try:
                    rows.append(self._sample(name, tries))
                except AdminError as e:
                    return rows, f"{name}: {e}"
            return rows, None

        for name, (rows, error) in zip(names, in_parallel(sampled, list(names))):
            if error:
                bad.append(error)
            meas[name] = [{"observed_ms": round(o * 1000, 1), "expected_ms": [round(lo * 1000, 1), round(hi * 1000, 1)],
                           "rtt_ms": round(r * 1000, 2)} for o, r, lo, hi in rows]
            base_err = self.baseline_rtt.get(name, 0.0) / 2
            tols = [TOLERANCE + r + base_err for _, r, _, _ in rows]
            for (o, _, lo, hi), tol in zip(rows, tols):
                if not lo - tol <= o <= hi + tol:
                    bad.append(f"{name} reports {o * 1000:+.0f} ms, its file held {lo * 1000:+.0f}..{hi * 1000:+.0f} ms "
                               f"(tolerance {tol * 1000:.0f} ms)")
                    break
            skewed = any(lo or hi for _, _, lo, hi in rows)
            # resolved: a sample during which the file held only offsets the probe can tell from zero
            resolved = any(lo > tol or hi < -tol for (_, _, lo, hi), tol in zip(rows, tols))
            if rows and skewed and not resolved and not any(b.startswith(name) for b in bad):
                unresolved.append(f"{name}: the offset never exceeded the probe's resolution "
                                  f"({min(tols) * 1000:.0f} ms), so it is not verified")
        if bad or unresolved:
            return Probe(False, "; ".join(bad + unresolved), meas)
        return Probe(True, f"{len(names)} node clock(s) report the offset their clock file holds", meas)

    # -- ops ---------------------------------------------------------------------------------
    def invoke(self, op: NemesisOp) -> Outcome:
        """Apply or reset a skew, then probe every node it touched."""
        assert self.ctx is not None, "setup() first"
        with self._lock:
            value: Mapping[str, Any] = op.value or {}
            if op.f == "stop-clock":
                return self._reset(sorted(self._touched | set(value.get("nodes") or ())))
            if op.f != "start-clock":
                raise ValueError(f"clock nemesis cannot handle {op.f!r}")
            names = list(value.get("nodes") or [])
            unknown = [n for n in names if n not in self.nodes]
            if not names or unknown:
                return Outcome(done={}, probe=Probe(False, f"bad clock target nodes {names!r}"), mechanism=MECHANISM)
            self._halt_background()
            mode = value.get("mode", "bump")
            t0 = time.monotonic_ns()
            try:
                if mode == "bump":
                    off = float(value["offset_ms"]) / 1000
                    for n in names:
                        self._write(n, off)
                    effective = time.monotonic_ns()
                    done = {n: {"offset_ms": off * 1000} for n in names}
                    probe = self._probe(names, rounds=1, spacing=0, tries=3)
                elif mode == "strobe":
                    off, period = float(value["offset_ms"]) / 1000, float(value["period"])
                    self._run_background(names, lambda el: off if int(el / period) % 2 == 0 else 0.0)
                    effective = time.monotonic_ns()
                    done = {n: {"strobe_ms": [off * 1000, 0.0], "period_s": period} for n in names}
                    probe = self._probe(names, rounds=4, spacing=min(period, 1.0) / 2)
                elif mode == "drift":
                    rate = float(value["rate"])
                    self._run_background(names, lambda el: rate * el)
                    effective = time.monotonic_ns()
                    done = {n: {"drift_rate": rate} for n in names}
                    # sample long enough for the drift to outgrow the probe's resolution (bounded: 5 s)
                    spacing = min(2.5, max(0.5, 0.05 / abs(rate))) if rate else 0.5
                    probe = self._probe(names, rounds=3, spacing=spacing)
                else:
                    return Outcome(done={}, probe=Probe(False, f"unknown clock mode {mode!r}"), mechanism=MECHANISM)
            except (KeyError, TypeError, ValueError) as e:
                return Outcome(done={}, probe=Probe(False, f"bad start-clock value {dict(value)!r}: {e}"),
                               mechanism=MECHANISM)
            except Exception as e:  # the backend could not write a file
                return Outcome(done={}, probe=Probe(False, f"could not write a clock file: {type(e).__name__}: {e}"),
                               mechanism=MECHANISM)
            return confirmed(done, probe, MECHANISM, t0, effective)

    def _reset(self, names: Sequence[str]) -> Outcome:
        self._halt_background()
        t0 = time.monotonic_ns()
        errors = []
        for n in names:
            try:
                self._write(n, 0.0)
            except Exception as e:
                errors.append(f"{n}: {type(e).__name__}: {e}")
        done = {n: {"offset_ms": 0.0} for n in names}
        if errors:
            return Outcome(done=done, probe=Probe(False, "could not reset: " + "; ".join(errors)), mechanism=MECHANISM)
        effective = time.monotonic_ns()
        probe = self._probe(names, rounds=1, spacing=0, tries=3) if names else Probe(True, "no clock was skewed")
        if probe.ok:
            self._touched -= set(names)
        return confirmed(done, probe, MECHANISM, t0, effective)

    def heal(self) -> None:
        """Stop strobe/drift, write +0 into every node's clock file, and check the nodes report it."""
        with self._lock:
            if self.ctx is None:
                return
            outcome = self._reset(sorted(self.nodes))
            if not outcome.probe.ok:
                raise RuntimeError(f"clock heal: {outcome.probe.detail}")
