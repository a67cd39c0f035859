"""Slow and lossy links between chosen nodes: random loss and added latency, measured.

``start-link {"kind": "loss", "nodes", "probability"}`` drops that share of
packets on every link between a chosen node and any other node (both
directions): with ``iptables``, ``-m statistic --mode random --probability P
-j DROP`` rules in the backend chain; otherwise the node's in-process
transport loss. ``start-link {"kind": "latency", "nodes", "delay_ms",
"jitter_ms"}`` adds delay with the node's in-process transport on every
backend (this kernel has no ``tc netem``): set on the chosen nodes for all
their peers, it delays each peer request a chosen node sends or receives,
so a round trip between a chosen and another node gains ``delay`` and one
between two chosen nodes ``2 x delay``, as netem on the chosen nodes'
egress would.

Probes measure; nothing is reported without a measurement:

* loss (iptables): many TCP connections across sampled lossy links; a
  connection fails when its SYN or SYN-ACK is dropped, so the expected
  failure share is ``1 - (1 - P)^2`` (``P`` where rules match the sender's
  cgroup: a SYN-ACK is sent from the listener's request socket, which the
  cgroup match does not see); the measured share must lie within a 5-sigma
  binomial band of it (and the rules must be listed in the chain).
* loss (in-process): many peer requests; the expected rejected share is P.
* latency: peer requests across sampled links timed before and after; the
  added median must be within ``jitter + 30 ms`` of ``delay``.

Sampled links are probed side by side (each link's own samples one after
another, so they time one request at a time). The outcome's
``effective_ns`` is when the rules or the in-process faults were in place.
"""
from __future__ import annotations

import math
import statistics
import threading
import time
from typing import Any, Mapping, Sequence

from nemeses import firewall, probes
from nemeses.transport_faults import TransportFaultBook
from targets.adapter import AdminError
from nemeses.base import NemesisContext, NemesisOp, Outcome, Probe, confirmed
from nemeses.fanout import in_parallel
from nemeses.firewall import IN_PROCESS, IPTABLES

#: How many links a probe samples, and attempts per link.
SAMPLE_LINKS, LOSS_ATTEMPTS, LATENCY_SAMPLES = 4, 40, 5
LATENCY_SLACK_MS = 30.0


def link_pairs(chosen: Sequence[str], nodes: Sequence[str]) -> list[tuple[str, str]]:
    """Directed (src, dst) links between each chosen node and every other node, both ways, sorted."""
    pairs = {(a, b) for a in chosen for b in nodes if b != a} | {(b, a) for a in chosen for b in nodes if b != a}
    return sorted(pairs)


def binomial_band(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    """[lo, hi] failures out of ``n`` consistent with probability ``p``."""
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return max(0.0, mean - sigmas * sd - 0.5), min(float(n), mean + sigmas * sd + 0.5)


class LinkNemesis:
    """Handles ``start-link`` / ``stop-link`` for both kinds (loss, latency)."""

    name = "link"
    heal_rank = 40  # heals before higher ranks (nemeses.compose)
    fs = frozenset({"start-link", "stop-link"})

    def __init__(self, transport: TransportFaultBook | None = None, kinds: Sequence[str] = ("loss", "latency")):
        self.transport = transport or TransportFaultBook()
        self.kinds = tuple(kinds)
        self.ctx: NemesisContext | None = None
        self.loss_mechanism = ""
        self._active: dict[str, dict[str, Any]] = {}      # kind -> {"pairs", "value", "rules"}
        self._lock = threading.RLock()

    def setup(self, ctx: NemesisContext) -> None:
        """Loss: iptables when possible, else in-process; latency: in-process only (a target without it is
        refused from the kind's ``target_needs`` by the composed nemesis). Refuse what cannot run."""
        self.ctx = ctx
        self.nodes = {n.name: n for n in ctx.nodes}
        self.transport.bind(ctx.nodes, ctx.target.admin)
        if "loss" in self.kinds:
            self.loss_mechanism = firewall.drop_mechanism(ctx.backend, ctx.target, "loss")

    def invoke(self, op: NemesisOp) -> Outcome:
        """Start or stop one kind of link fault, then measure it."""
        assert self.ctx is not None, "setup() first"
        with self._lock:
            value: Mapping[str, Any] = op.value or {}
            kind = value.get("kind")
            if kind not in ("loss", "latency"):
                return Outcome(done={}, probe=Probe(False, f"link fault kind must be loss or latency, got {kind!r}"),
                               mechanism="")
            mech = self.loss_mechanism if kind == "loss" else IN_PROCESS
            if op.f == "stop-link":
                return self._stop(kind, mech)
            if op.f != "start-link":
                raise ValueError(f"link nemesis cannot handle {op.f!r}")
            chosen = list(value.get("nodes") or [])
            if not chosen or any(n not in self.nodes for n in chosen):
                return Outcome(done={}, probe=Probe(False, f"bad link target nodes {chosen!r}"), mechanism=mech)
            if kind in self._active:
                errors = self._undo(kind)
                if errors:  # never lose track of a fault still in place
                    return Outcome(done={}, probe=Probe(False, f"could not remove the previous {kind} first: "
                                                        + "; ".join(errors)), mechanism=mech)
            pairs = link_pairs(chosen, list(self.nodes))
            # the in-process probe exercises the receiving node's transport: sample links into chosen nodes
            inbound = [(a, b) for a, b in pairs if b in chosen]
            sample = _spread(pairs if mech == IPTABLES else inbound, SAMPLE_LINKS)
            try:
                if kind == "loss":
                    p = float(value["probability"])
                    if not 0 < p <= 1:
                        raise ValueError("probability must be in (0, 1]")
                    return self._start_loss(chosen, pairs, sample, p)
                delay, jitter = float(value["delay_ms"]), float(value.get("jitter_ms", 0))
                if delay <= 0 or jitter < 0:
                    raise ValueError("delay_ms must be > 0 and jitter_ms >= 0")
                return self._start_latency(chosen, pairs, sample, delay, jitter)
            except (KeyError, TypeError, ValueError) as e:
                return Outcome(done={}, probe=Probe(False, f"bad start-link value {dict(value)!r}: {e}"), mechanism=mech)

    # -- loss --------------------------------------------------------------------------------
    def _start_loss(self, chosen: list[str], pairs: list[tuple[str, str]], sample: list[tuple[str, str]],
                    p: float) -> Outcome:
        t0 = time.monotonic_ns()
        done = {n: {"loss": p, "peers": sorted({b for a, b in pairs if a == n})} for n in chosen}
        if self.loss_mechanism == IPTABLES:
            rules = [firewall.DropRule(src=a, dst=b, probability=p) for a, b in pairs]
            self._active["loss"] = {"pairs": pairs, "rules": rules, "p": p, "sample": sample}
            errors = firewall.add_rules(self.ctx.backend, self.nodes, rules)
        else:
            self._active["loss"] = {"pairs": pairs, "p": p, "sample": sample}
            errors = self._set_layer("loss", chosen, {"loss": p})
        if errors:
            return Outcome(done=done, probe=Probe(False, "could not install loss: " + "; ".join(errors)),
                           mechanism=self.loss_mechanism)
        effective = time.monotonic_ns()
        return confirmed(done, self._probe_loss(sample, p), self.loss_mechanism, t0, effective)

    def _probe_loss(self, sample: list[tuple[str, str]], p: float) -> Probe:
        """Measured failure share across the sampled links vs what P predicts."""
        sample = [pr for pr in sample if pr not in self.transport.cut and pr[::-1] not in self.transport.cut]
        if not sample:
            return Probe(False, "every sampled lossy link is also partitioned: loss cannot be measured now")
        if self.loss_mechanism == IPTABLES:
            # a SYN-ACK leaves from the listener's request socket, which iptables' cgroup match does
            # not see: where rules match the sender's cgroup (local nodes), only the SYN can drop
            one_way = "node-cgroups" in self.ctx.backend.capabilities
            expected = p if one_way else 1 - (1 - p) ** 2 if p > 0 else 0.0
            raw = probes.connect_all(self.ctx.backend, self.nodes,
                                     [pair for pair in sample for _ in range(LOSS_ATTEMPTS)], timeout=0.3)
            lost = sum(1 for r in raw if r == "timeout")
            how = "tcp-connect (SYN or SYN-ACK dropped)"
        else:
            expected = p
            sample = self._answering(sample)
            if not sample:
                return Probe(False, "no sampled receiver answers (down or paused): loss cannot be measured now")
            attempts = [pair for pair in sample for _ in range(LOSS_ATTEMPTS)]
            raw = in_parallel(lambda pr: self.ctx.target.admin.peer_probe(self.nodes[pr[1]], pr[0], timeout=2.0)[0],
                              attempts, limit=16)
            lost = sum(1 for r in raw if r == "rejected")
            how = "peer-request"
        n = len(raw)
        errors = [r for r in raw if r.startswith("error")]
        lo, hi = binomial_band(n, expected)
        meas = {"attempts": n, "lost": lost, "measured_loss": round(lost / n, 4) if n else None,
                "expected_loss": round(expected, 4), "links": [f"{a}->{b}" for a, b in sample], "how": how}
        if errors:
            return Probe(False, f"probe errors: {errors[:3]}", meas)
        if p > 0 and not lo <= lost <= hi:
            return Probe(False, f"measured loss {lost}/{n} is not consistent with P={p} "
                                f"(expected {expected:.2f}, band {lo:.0f}..{hi:.0f})", meas)
        if p == 0 and lost:
            return Probe(False, f"{lost}/{n} attempts still lost after the loss was removed", meas)
        what = f"measured loss {lost}/{n} = {lost / max(n, 1):.2f}, expected {expected:.2f}"
        return Probe(True, what, meas)

    def _answering(self, sample: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The sampled links whose receiver answers health (not killed or paused by another fault)."""
        receivers = sorted({b for _, b in sample})
        answers = in_parallel(lambda b: self.ctx.target.admin.health(self.nodes[b], timeout=1.0)[0], receivers)
        up = {b for b, ok in zip(receivers, answers) if ok}
        return [(a, b) for a, b in sample if b in up]

    # -- latency -----------------------------------------------------------------------------
    def _latency_ms(self, sample: list[tuple[str, str]]) -> dict[str, float]:
        """Median time (ms) of peer requests across each sampled link (sender -> receiver), links at once."""
        links = [(a, b) for a, b in self._answering(sample)
                 if (a, b) not in self.transport.cut and (b, a) not in self.transport.cut]  # partitioned: nothing to time
        out = dict(zip((f"{a}->{b}" for a, b in links), in_parallel(self._median_ms, links)))
        if not out:
            raise AdminError("every sampled delayed link is partitioned or leads to a silent node: "
                             "latency cannot be measured now")
        return out

    def _median_ms(self, link: tuple[str, str]) -> float:
        """Median of LATENCY_SAMPLES admitted peer requests a -> b, one at a time (AdminError when none)."""
        a, b = link
        times: list[float] = []
        for _ in range(LATENCY_SAMPLES * 4):   # rejected requests (a lossy link) are not timed
            res, took = self.ctx.target.admin.peer_probe(self.nodes[b], a, timeout=5.0)
            if res == "admitted":
                times.append(took * 1000)
            elif res != "rejected":
                raise AdminError(f"peer request {a}->{b}: {res}")
            if len(times) == LATENCY_SAMPLES:
                break
        if not times:
            raise AdminError(f"peer request {a}->{b}: every request was rejected")
        return statistics.median(times)

    def _start_latency(self, chosen: list[str], pairs: list[tuple[str, str]], sample: list[tuple[str, str]],
                       delay: float, jitter: float) -> Outcome:
        done = {n: {"delay_ms": delay, "jitter_ms": jitter, "peers": sorted({b for a, b in pairs if a == n})}
                for n in chosen}
        try:
            before = self._latency_ms(sample)
        except AdminError as e:
            return Outcome(done={}, probe=Probe(False, f"cannot measure baseline latency: {e}"), mechanism=IN_PROCESS)
        t0 = time.monotonic_ns()
        self._active["latency"] = {"pairs": pairs, "before": before, "sample": sample}
        errors = self._set_layer("latency", chosen, {"delay_ms": delay, "jitter_ms": jitter})
        if errors:
            return Outcome(done=done, probe=Probe(False, "could not install latency: " + "; ".join(errors)),
                           mechanism=IN_PROCESS)
        effective = time.monotonic_ns()
        # the probe's request enters the delayed node's transport once: it gains delay +/- jitter
        probe = self._probe_latency(sample, before, {f"{a}->{b}": delay for a, b in sample}, jitter)
        return confirmed(done, probe, IN_PROCESS, t0, effective)

    def _probe_latency(self, sample: list[tuple[str, str]], before: Mapping[str, float],
                       expect: Mapping[str, float], jitter: float) -> Probe:
        try:
            after = self._latency_ms(sample)
        except AdminError as e:
            return Probe(False, f"cannot measure latency: {e}")
        added = {k: round(after[k] - before[k], 1) for k in after if k in before}
        if not added:
            return Probe(False, "no sampled link could be timed both before and after")
        meas = {"baseline_ms": {k: round(v, 2) for k, v in before.items()},
                "measured_ms": {k: round(v, 2) for k, v in after.items()}, "added_ms": added,
                "expected_added_ms": dict(expect), "how": "peer-request round trip, median of "
                f"{LATENCY_SAMPLES}"}
        bad = [f"{k}: +{added[k]:.0f} ms, expected +{expect[k]:.0f}" for k in added
               if abs(added[k] - expect[k]) > jitter + LATENCY_SLACK_MS]
        if bad:
            return Probe(False, "latency not as asked: " + ", ".join(bad), meas)
        return Probe(True, "added latency measured: " + ", ".join(f"{k} +{v:.0f} ms" for k, v in added.items()), meas)

    # -- stop / heal -------------------------------------------------------------------------
    def _set_layer(self, layer: str, chosen: Sequence[str], fields: Mapping[str, Any]) -> list[str]:
        """Set the fault on each chosen node for all its peers (it then acts on that node's traffic both ways)."""
        per_node = {n: {**fields, "peers": [m for m in self.nodes if m != n]} for n in chosen}
        try:
            self.transport.set_layer(layer, per_node)
            return []
        except AdminError as e:
            return [str(e)]

    def _undo(self, kind: str) -> list[str]:
        state = self._active.get(kind)
        if state is None:
            return []
        if kind == "loss" and self.loss_mechanism == IPTABLES:
            errors = firewall.delete_rules(self.ctx.backend, self.nodes, state["rules"])
        else:
            try:
                self.transport.clear_layer(kind)
                errors = []
            except AdminError as e:
                errors = [str(e)]
        if not errors:
            del self._active[kind]
        return errors

    def _stop(self, kind: str, mech: str) -> Outcome:
        state = self._active.get(kind)
        if state is None:
            return Outcome(done={}, probe=Probe(True, f"no {kind} was active"), mechanism=mech)
        t0 = time.monotonic_ns()
        errors = self._undo(kind)
        done = {n: {kind: "removed"} for n in sorted({a for a, _ in state["pairs"]})}
        if errors:
            return Outcome(done=done, probe=Probe(False, f"could not remove {kind}: " + "; ".join(errors)),
                           mechanism=mech)
        effective = time.monotonic_ns()
        sample = state["sample"]
        if kind == "loss":
            probe = self._probe_loss(sample, 0.0)
        else:
            probe = self._probe_latency(sample, state["before"], {f"{a}->{b}": 0.0 for a, b in sample}, 0.0)
        return confirmed(done, probe, mech, t0, effective)

    def heal(self) -> None:
        """Remove loss rules / in-process loss and delay this nemesis installed (idempotent)."""
        with self._lock:
            if self.ctx is None:
                return
            errors = [e for kind in list(self._active) for e in self._undo(kind)]
            if errors:
                raise RuntimeError("link heal: " + "; ".join(errors))


def _spread(pairs: Sequence[tuple[str, str]], k: int) -> list[tuple[str, str]]:
    """Up to ``k`` links spread evenly over ``pairs`` (deterministic)."""
    if len(pairs) <= k:
        return list(pairs)
    step = len(pairs) / k
    return [pairs[int(i * step)] for i in range(k)]
