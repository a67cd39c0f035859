"""Partition topologies, computed as graphs.

A topology is a *grudge*: ``{node: set of nodes it must not hear from}``.
Every partition mechanism (iptables DROP rules, the node's in-process
transport faults) is driven from a grudge, so the same topology means the
same thing on every backend. The shapes are Jepsen's:

* ``random-halves``: shuffled nodes cut in two halves (a majority | the rest for odd n).
* ``split:n1,n2|n3,n4,n5``: a fixed split (``riak`` = ``{n1,n2} | {rest}``,
  the partition of Kingsbury's Riak test).
* ``isolate-one``: one random node cut from every other.
* ``majorities-ring``: every node sees a majority, no two nodes see the same
  majority (a ring of overlapping majorities).
* ``bridge``: two halves that cannot talk, joined by one node that sees both.
* ``grudge:n1>n2,n3;n4>n5``: explicit (n1 does not hear from n2 and n3, ...).

Connectivity graphs use ``networkx``: a symmetric topology is an undirected
graph whose edges are the links that stay up; the grudge is its complement.
"""
from __future__ import annotations

import random
from typing import Iterable, Mapping, Sequence

import networkx as nx

from harness.errors import UserError

Grudge = dict[str, frozenset[str]]

#: Topology names (``split:`` and ``grudge:`` take arguments).
TOPOLOGIES = ("random-halves", "riak", "split:", "isolate-one", "majorities-ring", "bridge", "grudge:")


def majority(n: int) -> int:
    """Smallest number of nodes that is more than half of ``n``."""
    return n // 2 + 1


def grudge_from_graph(graph: nx.Graph) -> Grudge:
    """The grudge of a graph of kept links: every node hates every node it has no edge to."""
    nodes = list(graph.nodes)
    return {a: frozenset(b for b in nodes if b != a and not graph.has_edge(a, b)) for a in nodes}


def complete_grudge(components: Sequence[Sequence[str]]) -> Grudge:
    """Nodes in different components do not hear from each other (Jepsen's complete-grudge)."""
    graph = nx.Graph()
    for comp in components:
        graph.add_nodes_from(comp)
        graph.add_edges_from((a, b) for i, a in enumerate(comp) for b in comp[i + 1:])
    return grudge_from_graph(graph)


def sees(grudge: Mapping[str, frozenset[str]], node: str) -> frozenset[str]:
    """Nodes ``node`` can exchange traffic with, itself included.

    A link carries TCP only when neither end drops the other, so "sees" is
    the symmetric reading of the grudge.
    """
    return frozenset(b for b in grudge if b == node or (b not in grudge[node] and node not in grudge[b]))


def cut_pairs(grudge: Mapping[str, frozenset[str]]) -> list[tuple[str, str]]:
    """(receiver, sender) pairs the grudge cuts, sorted: what a probe must see fail."""
    return sorted((a, b) for a, hated in grudge.items() for b in hated)


def kept_pairs(grudge: Mapping[str, frozenset[str]]) -> list[tuple[str, str]]:
    """(a, b) pairs, a < b, that still see each other: what a probe must see work."""
    names = sorted(grudge)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if b in sees(grudge, a)]


def random_halves(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """Shuffled nodes cut in two: the bigger half (ceil(n/2)) from the smaller (Jepsen's bisect)."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    cut = len(shuffled) - len(shuffled) // 2
    return complete_grudge([shuffled[:cut], shuffled[cut:]])


def isolate_one(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """One random node that hears from nobody and nobody hears from."""
    lone = rng.choice(list(nodes))
    return complete_grudge([[lone], [n for n in nodes if n != lone]])


def bridge(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """Two halves that cannot talk to each other, plus one node that talks to both."""
    if len(nodes) < 3:
        raise UserError(f"bridge partition needs at least 3 nodes, got {len(nodes)}")
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    mid = shuffled[0]
    rest = shuffled[1:]
    left, right = rest[: len(rest) // 2], rest[len(rest) // 2:]
    graph = nx.Graph()
    graph.add_nodes_from(shuffled)
    for half in (left, right):
        graph.add_edges_from((a, b) for i, a in enumerate(half) for b in half[i + 1:])
        graph.add_edges_from((mid, b) for b in half)
    return grudge_from_graph(graph)


def majorities_ring(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """Every node sees a majority (itself included), and no two nodes see the same one.

    Nodes sit on a shuffled ring; each keeps links to its ``k`` nearest
    neighbours either side (a circulant graph), with ``2k + 1 >= majority``.
    With 3 nodes that graph is complete, so one link is dropped (a path:
    the ends see 2 of 3, the middle sees all, three different majorities).
    """
    n = len(nodes)
    if n < 3:
        raise UserError(f"majorities-ring needs at least 3 nodes, got {n}")
    ring = list(nodes)
    rng.shuffle(ring)
    k = (majority(n) - 1 + 1) // 2  # ceil((m - 1) / 2)
    graph = nx.circulant_graph(n, range(1, k + 1))
    graph = nx.relabel_nodes(graph, dict(enumerate(ring)))
    if graph.number_of_edges() == n * (n - 1) // 2:  # complete: everyone would see the same set
        graph.remove_edge(ring[0], ring[-1])
    grudge = grudge_from_graph(graph)
    seen = [sees(grudge, a) for a in ring]
    assert all(len(s) >= majority(n) for s in seen) and len(set(seen)) == n, "majorities-ring construction broke"
    return grudge


def parse_split(nodes: Sequence[str], text: str) -> Grudge:
    """``n1,n2|n3,n4,n5`` -> a complete grudge between the listed groups (unlisted nodes: own group)."""
    groups = [[x.strip() for x in part.split(",") if x.strip()] for part in text.split("|")]
    if len(groups) < 2 or any(not g for g in groups):
        raise UserError(f"partition split {text!r}: expected groups like 'n1,n2|n3,n4,n5'")
    listed = [x for g in groups for x in g]
    _check_known(nodes, listed, f"split:{text}")
    if len(set(listed)) != len(listed):
        raise UserError(f"partition split {text!r} names a node twice")
    rest = [n for n in nodes if n not in listed]
    return complete_grudge(groups + ([rest] if rest else []))


def parse_grudge(nodes: Sequence[str], text: str) -> Grudge:
    """``n1>n2,n3;n4>n5`` -> n1 does not hear from n2, n3; n4 not from n5 (directed, as written)."""
    grudge: dict[str, set[str]] = {n: set() for n in nodes}
    for clause in filter(None, (c.strip() for c in text.split(";"))):
        if ">" not in clause:
            raise UserError(f"partition grudge clause {clause!r}: expected 'node>peer,peer'")
        node, hated = clause.split(">", 1)
        node = node.strip()
        peers = [p.strip() for p in hated.split(",") if p.strip()]
        _check_known(nodes, [node, *peers], f"grudge:{text}")
        if node in peers:
            raise UserError(f"partition grudge {clause!r}: a node cannot hold a grudge against itself")
        grudge[node].update(peers)
    if not any(grudge.values()):
        raise UserError(f"partition grudge {text!r} cuts nothing")
    return {k: frozenset(v) for k, v in grudge.items()}


def _check_known(nodes: Sequence[str], names: Sequence[str], what: str) -> None:
    unknown = [x for x in names if x not in nodes]
    if unknown:
        raise UserError(f"partition {what}: unknown node(s) {', '.join(unknown)} (nodes: {', '.join(nodes)})")


def validate_topology(name: str) -> None:
    """Refuse an unknown topology name early (UserError), before any node list is known."""
    if name in ("random-halves", "riak", "isolate-one", "majorities-ring", "bridge"):
        return
    if name.startswith("split:") or name.startswith("grudge:"):
        return
    raise UserError(f"unknown partition topology {name!r} (one of: random-halves, riak, split:n1,n2|n3,..., "
                    "isolate-one, majorities-ring, bridge, grudge:n1>n2,n3;...)")


def compute(name: str, nodes: Sequence[str], rng: random.Random) -> Grudge:
    """The grudge of topology ``name`` over ``nodes`` (random choices drawn from ``rng``)."""
    validate_topology(name)
    if len(nodes) < 2:
        raise UserError(f"a partition needs at least 2 nodes, got {len(nodes)}")
    if name == "random-halves":
        return random_halves(nodes, rng)
    if name == "riak":
        if len(nodes) < 3:
            raise UserError(f"the riak partition ({{n1,n2}} | rest) needs at least 3 nodes, got {len(nodes)}")
        return complete_grudge([list(nodes[:2]), list(nodes[2:])])
    if name == "isolate-one":
        return isolate_one(nodes, rng)
    if name == "majorities-ring":
        return majorities_ring(nodes, rng)
    if name == "bridge":
        return bridge(nodes, rng)
    if name.startswith("split:"):
        return parse_split(nodes, name[len("split:"):])
    return parse_grudge(nodes, name[len("grudge:"):])


def node_order(name: str) -> tuple[int, str]:
    """Sort key that puts n2 before n10."""
    return len(name), name


def node_set(names: Iterable[str]) -> str:
    """``{n1,n2,n3}``: how outputs write a group of nodes."""
    return "{" + ",".join(sorted(names, key=node_order)) + "}"


def describe_grudge(grudge: Mapping[str, Iterable[str]]) -> str:
    """A grudge as a person reads it: its sides when it splits the nodes into groups that see
    only each other (``{n1,n2} | {n3,n4,n5}``), else who is cut from whom (a bridge or a ring
    has no sides: ``n1 cut from {n4,n5}; ...``)."""
    hated = {str(a): frozenset(map(str, b)) for a, b in grudge.items()}
    groups = {n: sees(hated, n) for n in hated}
    if all(groups[m] == g for g in groups.values() for m in g):
        ordered = sorted(set(groups.values()), key=lambda g: min(map(node_order, g)))
        return " | ".join(node_set(g) for g in ordered)
    return "; ".join(f"{n} cut from {node_set(hated[n])}" for n in sorted(hated, key=node_order) if hated[n])


def grudge_to_json(grudge: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
    """JSON form (sorted lists) for ops and schedule files."""
    return {a: sorted(b) for a, b in sorted(grudge.items())}


def grudge_from_json(obj: Mapping[str, Sequence[str]]) -> Grudge:
    """Inverse of :func:`grudge_to_json` (UserError on a malformed value)."""
    if not isinstance(obj, Mapping) or not all(isinstance(v, (list, tuple)) for v in obj.values()):
        raise UserError(f"partition grudge must map node -> list of nodes, got {obj!r}")
    return {str(a): frozenset(str(x) for x in b) for a, b in obj.items()}
