"""The partition nemesis: cut node-to-node links along a topology's grudge, probe, heal.

Mechanism: with the backend's ``iptables`` capability, one DROP rule per
(sender, receiver) pair of the grudge in the backend's chain
(:mod:`nemeses.firewall`); only node-to-node traffic matches, so a client
pinned to a minority node keeps talking to it. Without it, the node's
in-process transport faults (``NodeAdmin.set_faults({"drop": [...]})``), which
cut the listed peers both ways inside the node. The outcome's ``mechanism``
says which was used.

Probe: every cut link really carries nothing and every kept link still
carries traffic. For iptables that is a TCP connection from the sender's
address (timeout = cut); for the in-process fallback it is a peer request
the receiver must reject (``NodeAdmin.peer_probe``). Every link is probed at
once, so a cut is confirmed about one connect timeout after the rules are in;
the outcome's ``effective_ns`` is when the rules (or the in-process drops)
were in place.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Mapping

from nemeses import firewall, probes, topology
from nemeses.fanout import in_parallel
from nemeses.transport_faults import TransportFaultBook
from targets.adapter import AdminError
from nemeses.base import NemesisContext, NemesisOp, Outcome, Probe, confirmed
from nemeses.firewall import IPTABLES

#: Extra probes of a link that should carry traffic but dropped the first (it may also be lossy).
FLOW_RETRIES = 8
#: In-process probe of a receiver that does not answer at all (killed or paused by another fault).
SILENT = "silent"


class PartitionNemesis:
    """Handles ``start-partition`` (value: ``{"topology", "grudge"}``) and ``stop-partition``."""

    name = "partition"
    heal_rank = 50  # heals before higher ranks (nemeses.compose)
    fs = frozenset({"start-partition", "stop-partition"})

    def __init__(self, transport: TransportFaultBook | None = None, probe_timeout: float = 0.75):
        self.transport = transport or TransportFaultBook()
        self.probe_timeout = probe_timeout
        self.ctx: NemesisContext | None = None
        self.mechanism = ""
        self._rules: list[firewall.DropRule] = []
        self._grudge: topology.Grudge = {}
        self._lock = threading.RLock()

    def setup(self, ctx: NemesisContext) -> None:
        """Pick iptables when the backend can, else the in-process fallback; refuse when neither."""
        self.ctx = ctx
        self.nodes = {n.name: n for n in ctx.nodes}
        self.transport.bind(ctx.nodes, ctx.target.admin)
        self.mechanism = firewall.drop_mechanism(ctx.backend, ctx.target, "partition")

    def invoke(self, op: NemesisOp) -> Outcome:
        """Start or stop a partition, then probe every affected link."""
        assert self.ctx is not None, "setup() first"
        with self._lock:
            if op.f == "start-partition":
                return self._start(op.value or {})
            if op.f == "stop-partition":
                return self._stop()
            raise ValueError(f"partition nemesis cannot handle {op.f!r}")

    def _start(self, value: Mapping[str, Any]) -> Outcome:
        grudge = topology.grudge_from_json(value.get("grudge", {}))
        unknown = sorted(set(grudge) - set(self.nodes) | {b for v in grudge.values() for b in v} - set(self.nodes))
        if unknown:
            return _refused(f"grudge names unknown node(s) {', '.join(unknown)}", self.mechanism)
        if self._grudge or self._rules:
            errors = self._undo()
            if errors:  # never lose track of rules still in place
                return _refused("could not remove the previous partition first: " + "; ".join(errors), self.mechanism)
        grudge = {n: grudge.get(n, frozenset()) for n in self.nodes}
        self._grudge = grudge
        self.transport.cut = {(b, a) for a, hated in grudge.items() for b in hated}
        t0 = time.monotonic_ns()
        errors = self._apply(grudge)
        done = {n: {"cut_from": sorted(grudge[n]), "sees": sorted(topology.sees(grudge, n))} for n in sorted(grudge)}
        if errors:
            return Outcome(done=done, probe=Probe(False, "could not install the partition: " + "; ".join(errors)),
                           mechanism=self.mechanism)
        effective = time.monotonic_ns()
        return confirmed(done, self._probe(grudge, expect_cut=True), self.mechanism, t0, effective)

    def _apply(self, grudge: topology.Grudge) -> list[str]:
        if self.mechanism == IPTABLES:
            self._rules = [firewall.DropRule(src=b, dst=a) for a, hated in sorted(grudge.items()) for b in sorted(hated)]
            return firewall.add_rules(self.ctx.backend, self.nodes, self._rules)
        try:
            self.transport.set_layer("partition", {a: {"drop": sorted(h)} for a, h in grudge.items() if h})
            return []
        except AdminError as e:
            return [str(e)]

    def _undo(self) -> list[str]:
        if self.mechanism == IPTABLES:
            errors = firewall.delete_rules(self.ctx.backend, self.nodes, self._rules) if self._rules else []
            if not errors:
                self._rules = []
        else:
            try:
                self.transport.clear_layer("partition")
                errors = []
            except AdminError as e:
                errors = [str(e)]
        if not errors:
            self._grudge = {}
            self.transport.cut = set()
        return errors

    def _stop(self) -> Outcome:
        grudge = self._grudge
        t0 = time.monotonic_ns()
        errors = self._undo()
        done = {n: {"cut_from": []} for n in sorted(grudge)} if grudge else {}
        if errors:
            return Outcome(done=done, probe=Probe(False, "could not heal the partition: " + "; ".join(errors)),
                           mechanism=self.mechanism)
        if not grudge:
            return Outcome(done={}, probe=Probe(True, "no partition was active"), mechanism=self.mechanism,
                           effective_ns=time.monotonic_ns())
        effective = time.monotonic_ns()
        return confirmed(done, self._probe(grudge, expect_cut=False), self.mechanism, t0, effective)

    def _status(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
        """(sender, receiver) -> (CUT | FLOWS | other, raw result) for each pair, measured now."""
        if self.mechanism == IPTABLES:
            raw = probes.link_status(self.ctx.backend, self.nodes, pairs, timeout=self.probe_timeout)
            return {p: (probes.classify(r), r) for p, r in raw.items()}
        raw = in_parallel(lambda p: self.ctx.target.admin.peer_probe(self.nodes[p[1]], p[0], timeout=5.0)[0], pairs)
        # a receiver that is down or paused (another fault) cannot tell: skipped, not judged
        return {p: (probes.CUT if r == "rejected" else probes.FLOWS if r == "admitted" else SILENT, r)
                for p, r in zip(pairs, raw)}

    def _probe(self, grudge: topology.Grudge, *, expect_cut: bool) -> Probe:
        """Cut links carry nothing (or, after a stop, carry traffic again); kept links carry traffic."""
        cut = [(b, a) for a, b in topology.cut_pairs(grudge)]          # (sender, receiver)
        kept = [(a, b) for a, b in topology.kept_pairs(grudge)]
        want = {p: probes.FLOWS for p in kept} | {p: probes.CUT if expect_cut else probes.FLOWS for p in cut}
        got = self._status(list(want))
        rounds = 1
        for _ in range(FLOW_RETRIES):  # a lossy link (the link nemesis) may drop one probe of a link that flows
            again = [p for p, w in want.items() if w == probes.FLOWS and got[p][0] != probes.FLOWS]
            if not again:
                break
            rounds += 1
            got.update(self._status(again))
        silent = sorted(f"{s}->{r}" for (s, r), (st, _) in got.items() if st == SILENT)
        wrong_cut = [f"{s}->{r}: {got[(s, r)][1]}" for s, r in cut if got[(s, r)][0] not in (want[(s, r)], SILENT)]
        wrong_kept = [f"{a}->{b}: {got[(a, b)][1]}" for a, b in kept if got[(a, b)][0] not in (probes.FLOWS, SILENT)]
        meas = {"cut_links": len(cut), "kept_links": len(kept), "probe_rounds": rounds,
                "how": "tcp-connect" if self.mechanism == IPTABLES else "peer-request"}
        if silent:
            meas["not_probed_receiver_silent"] = silent
            if len(silent) == len(got):
                return Probe(False, "no receiver answered a peer request (all down or paused): nothing verified", meas)
        if wrong_cut or wrong_kept:
            parts = []
            if wrong_cut:
                parts.append(f"links that should be {'cut' if expect_cut else 'restored'} are not: {', '.join(wrong_cut)}")
            if wrong_kept:
                parts.append(f"kept links do not carry traffic: {', '.join(wrong_kept)}")
            return Probe(False, "; ".join(parts), meas)
        verb = "dropped" if expect_cut else "carry traffic again"
        note = f" ({len(silent)} link(s) into a silent node not probed)" if silent else ""
        return Probe(True, f"{topology.describe_grudge(grudge)}: {len(cut)} cut link(s) {verb}, {len(kept)} kept link(s) carry traffic{note}", meas)

    def heal(self) -> None:
        """Remove every rule / in-process drop this nemesis installed (idempotent)."""
        with self._lock:
            if self.ctx is None:
                return
            errors = self._undo()
            if errors:
                raise RuntimeError("partition heal: " + "; ".join(errors))


def _refused(why: str, mechanism: str) -> Outcome:
    return Outcome(done={}, probe=Probe(False, why), mechanism=mechanism)
