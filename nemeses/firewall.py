"""iptables DROP rules between nodes, in the backend's own chain.

Rules are always ``-A <chain> SENDER -d DST [-m statistic ...] -j DROP`` and
are added *on the receiving node* (``backend.run(dst, ...)``). SENDER is
``-s SRC`` (the sending node's address) on Docker/SSH, where it is the node's
own network namespace; on the local backend it is the sending node's cgroup
(``-m cgroup --path ...``, the chain hooked from OUTPUT: any store, this run's
nodes only) or, on a host without cgroup2, its loopback address (the chain
hooked from INPUT: only stores that dial from their own address). Only
node-to-node traffic matches, so clients (the harness's own sockets) keep
reaching every node.

Each rule carries the comment ``dynharness-nemesis`` so a rule is ours
beyond doubt, and is deleted by its exact spec when healed; the ``heal``
command flushes the whole chain.

Every node's rules go in at once (one shell per receiving node, side by
side): the partition is in place when the slowest node's call returns, not
after the sum of them. On a shared host (the local backend) every node's
rules land in the one host chain, so the calls stay one after another there
rather than contend for the host's ruleset.
"""
from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

from harness.backends.base import Backend, Node
from harness.errors import CapabilityError
from nemeses.fanout import MAX_PARALLEL, in_parallel
from targets.adapter import Target

TAG = "dynharness-nemesis"
IPTABLES, IN_PROCESS = "iptables", "in-process transport"


def drop_mechanism(backend: Backend, target: Target, fault: str) -> str:
    """How packets can be dropped here: iptables when the backend has it, else the target's
    in-process transport faults; CapabilityError naming ``fault`` when neither exists."""
    shared = ("shared-host" in backend.capabilities and "node-cgroups" not in backend.capabilities
              and "peer-source-address" not in target.capabilities)
    if "iptables" in backend.capabilities and not shared:
        return IPTABLES
    if "transport-faults" in target.capabilities:
        return IN_PROCESS
    if shared and "iptables" in backend.capabilities:
        raise CapabilityError(f"{target.name}'s peer connections do not leave from each node's own address, so "
                              f"iptables rules between nodes sharing this host cannot cut them, and {target.name} has "
                              f"no in-process transport faults: refusing the {fault} nemesis (nodes with a network "
                              f"of their own, --backend docker or ssh, can be partitioned)")
    raise CapabilityError(f"the {backend.name} backend has no iptables here (needs root and the iptables "
                          f"package) and the {target.name} target has no in-process transport faults: "
                          f"refusing the {fault} nemesis")


@dataclass(frozen=True)
class DropRule:
    """Drop packets from node ``src`` to node ``dst`` (all of them, or with ``probability``)."""

    src: str
    dst: str
    probability: float | None = None

    def spec(self, backend: Backend, nodes: Mapping[str, Node]) -> list[str]:
        """The iptables match+target arguments of this rule: what the sender sends (its address,
        or on the local backend its processes' cgroup: ``backend.source_match``) to dst's address."""
        source = getattr(backend, "source_match", None)
        args = [*(source(self.src) if source else ["-s", nodes[self.src].host]), "-d", nodes[self.dst].host]
        if self.probability is not None:
            args += ["-m", "statistic", "--mode", "random", "--probability", f"{self.probability:.6f}"]
        return args + ["-m", "comment", "--comment", TAG, "-j", "DROP"]

    def to_json(self) -> dict:
        out: dict = {"from": self.src, "to": self.dst}
        if self.probability is not None:
            out["probability"] = self.probability
        return out


def _run_script(backend: Backend, node: str, commands: Sequence[list[str]], *, stop_on_error: bool) -> str | None:
    """Run iptables commands on ``node`` in one shell; an error line, or None."""
    joiner = " && " if stop_on_error else "; "
    script = joiner.join(" ".join(shlex.quote(a) for a in cmd) for cmd in commands)
    if not stop_on_error:
        script += "; true"
    try:
        res = backend.run(node, ["sh", "-c", script], timeout=20.0)
    except Exception as e:  # a backend that cannot reach the node at all
        return f"{node}: {type(e).__name__}: {e}"
    if res.returncode != 0:
        return f"{node}: iptables exited {res.returncode}: {res.stderr.strip()[:300]}"
    return None


def add_rules(backend: Backend, nodes: Mapping[str, Node], rules: Sequence[DropRule]) -> list[str]:
    """Append ``rules`` (each on its receiving node); the errors, one per node that failed."""
    by_dst: dict[str, list[list[str]]] = defaultdict(list)
    for r in rules:
        by_dst[r.dst].append(["iptables", "-w", "5", "-A", backend.firewall_chain, *r.spec(backend, nodes)])
    return _on_each(backend, by_dst, stop_on_error=True)


def delete_rules(backend: Backend, nodes: Mapping[str, Node], rules: Sequence[DropRule]) -> list[str]:
    """Delete ``rules`` by exact spec (a rule already gone is fine); the errors."""
    by_dst: dict[str, list[list[str]]] = defaultdict(list)
    for r in rules:
        by_dst[r.dst].append(["iptables", "-w", "5", "-D", backend.firewall_chain, *r.spec(backend, nodes)])
    errors = _on_each(backend, by_dst, stop_on_error=False)
    dsts = list(by_dst)
    # verify: none of *our* rules is still listed (other nemeses' rules may be)
    for dst, listed in zip(dsts, in_parallel(lambda d: list_rules(backend, d), dsts, limit=_width(backend))):
        still = [r for r in rules if r.dst == dst
                 and any(_same_rule(line, " ".join(r.spec(backend, nodes))) for line in listed)]
        if still:
            errors.append(f"{dst}: {len(still)} rule(s) still in {backend.firewall_chain} after delete")
    return errors


def _on_each(backend: Backend, by_dst: Mapping[str, Sequence[list[str]]], *, stop_on_error: bool) -> list[str]:
    """Each node's iptables commands, every node at once; the errors, in node order."""
    dsts = list(by_dst)
    done = in_parallel(lambda d: _run_script(backend, d, by_dst[d], stop_on_error=stop_on_error), dsts,
                       limit=_width(backend))
    return [e for e in done if e]


def _width(backend: Backend) -> int:
    """How many nodes' iptables calls at once: one on a shared host (one ruleset), else all."""
    return 1 if "shared-host" in backend.capabilities else MAX_PARALLEL


def _same_rule(listed: str, spec: str) -> bool:
    """Whether an ``iptables -S`` line is the rule ``spec`` (iptables prints /32 and long floats)."""
    norm = listed.replace("/32", "") + " "
    parts = spec.split()
    matches = [f"{flag} {value} " for flag, value in zip(parts, parts[1:]) if flag in ("-s", "-d", "--path")]
    prob = parts[parts.index("--probability") + 1][:6] if "--probability" in parts else None
    return (all(m in norm for m in matches) and TAG in norm
            and ((prob is None and "statistic" not in norm) or (prob is not None and f"--probability {prob}" in norm)))


def list_rules(backend: Backend, node: str) -> list[str]:
    """The ``-A`` lines of the backend chain on ``node`` (empty when the chain cannot be listed)."""
    try:
        res = backend.run(node, ["iptables", "-w", "5", "-S", backend.firewall_chain], timeout=10.0)
    except Exception:
        return []
    if res.returncode != 0:
        return []
    return [line for line in res.stdout.splitlines() if line.startswith("-A ")]


def count_rules(backend: Backend, node: str) -> int:
    """How many rules the backend chain holds on ``node``."""
    return len(list_rules(backend, node))


def flush(backend: Backend, node_names: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Flush the backend chain on every node (heal): ({node: rules removed}, errors)."""
    removed: dict[str, int] = {}
    errors: list[str] = []
    for name in node_names:
        before = count_rules(backend, name)
        err = _run_script(backend, name, [["iptables", "-w", "5", "-F", backend.firewall_chain]], stop_on_error=True)
        if err:
            errors.append(err)
        else:
            removed[name] = before
    return removed, errors
