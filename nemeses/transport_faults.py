"""The in-process transport faults a node holds, shared by the partition and link nemeses.

A node of a target with the ``transport-faults`` capability holds *one* set of in-process
faults (``NodeAdmin.set_faults`` replaces it). The partition and link nemeses both use it, so
they share a :class:`TransportFaultBook` that merges their layers per node and sets the merged
set; healing one layer never clears another's.
"""
from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

from harness.backends.base import Node
from targets.adapter import AdminError, NodeAdmin


#: Fields of a merged in-process fault set, and how layers combine.
LAYERS = ("partition", "loss", "latency")


class TransportFaultBook:
    """The in-process transport faults each nemesis layer wants, merged per node and posted.

    ``drop`` is the union of the partition layer; ``loss`` comes from the
    loss layer, ``delay_ms``/``jitter_ms`` from the latency layer, and
    ``peers`` is the union of both link layers' peers (the node applies loss
    and delay to one peer set, so when both link faults are active on one
    node with different peers, both apply to the union: documented).
    """

    def __init__(self, nodes: Sequence[Node] = (), admin: NodeAdmin | None = None):
        self.nodes = {n.name: n for n in nodes}
        self.admin = admin
        self._layers: dict[str, dict[str, dict[str, Any]]] = {layer: {} for layer in LAYERS}
        self._posted: dict[str, dict[str, Any] | None] = {}
        #: (sender, receiver) links a partition currently cuts, by any mechanism: link probes skip them
        self.cut: set[tuple[str, str]] = set()
        self._lock = threading.RLock()

    def bind(self, nodes: Sequence[Node], admin: NodeAdmin) -> None:
        """Learn the cluster's nodes and the target's admin (each nemesis sharing this book calls
        it from setup)."""
        with self._lock:
            self.nodes = {n.name: n for n in nodes}
            self.admin = admin

    def active(self, layer: str) -> bool:
        """Whether ``layer`` holds any fault."""
        return bool(self._layers[layer])

    def merged(self, node: str) -> dict[str, Any]:
        """The fault body ``node`` should hold now ({} = none)."""
        part = self._layers["partition"].get(node, {})
        loss = self._layers["loss"].get(node, {})
        lat = self._layers["latency"].get(node, {})
        body: dict[str, Any] = {}
        if part.get("drop"):
            body["drop"] = sorted(part["drop"])
        if loss.get("loss"):
            body["loss"] = loss["loss"]
        if lat.get("delay_ms") or lat.get("jitter_ms"):
            body["delay_ms"] = lat.get("delay_ms", 0)
            body["jitter_ms"] = lat.get("jitter_ms", 0)
        if "loss" in body or "delay_ms" in body:
            body["peers"] = sorted(set(loss.get("peers", ())) | set(lat.get("peers", ())))
        return body

    def set_layer(self, layer: str, per_node: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Replace one layer and push every node whose merged set changed; {node: body posted}."""
        with self._lock:
            self._layers[layer] = {k: dict(v) for k, v in per_node.items()}
            return self._push()

    def clear_layer(self, layer: str) -> dict[str, Any]:
        """Remove one layer's faults everywhere (other layers stay)."""
        return self.set_layer(layer, {})

    def _push(self) -> dict[str, Any]:
        pushed: dict[str, Any] = {}
        errors: list[str] = []
        for name, node in self.nodes.items():
            body = self.merged(name)
            if self._posted.get(name, {}) == body:  # never posted = no faults; None = unknown
                continue
            try:
                assert self.admin is not None, "TransportFaultBook.bind was not called"
                if body:
                    self.admin.set_faults(node, body)
                else:
                    self.admin.clear_faults(node)
                self._posted[name] = body
                pushed[name] = body
            except AdminError as e:
                self._posted[name] = None  # unknown state: push again next time
                errors.append(str(e))
        if errors:
            raise AdminError("; ".join(errors))
        return pushed

    def clear_all(self) -> list[str]:
        """Clear the in-process faults of every node (heal); the errors, never raised."""
        with self._lock:
            self._layers = {layer: {} for layer in LAYERS}
            errors = []
            if self.admin is None:
                return errors
            for name, node in self.nodes.items():
                try:
                    self.admin.clear_faults(node)
                    self._posted[name] = {}
                except AdminError as e:
                    errors.append(str(e))
            return errors
