"""Talking to a node's admin API from a nemesis, and the in-process transport faults it holds.

Nemeses are synchronous (the runner calls them from a worker thread and
from exit paths), so this uses ``http.client`` with a hard timeout on every
request rather than the async client.

A node holds *one* set of in-process transport faults (``POST /admin/faults``
replaces it). The partition and link nemeses both use it, so they share a
:class:`TransportFaultBook` that merges their layers per node and posts the
merged set; healing one layer never clears another's.
"""
from __future__ import annotations

import http.client
import json
import threading
from typing import Any, Mapping, Sequence

from harness.backends.base import Node


class AdminError(Exception):
    """An admin request that got no usable answer (refused, timed out, non-2xx)."""


def request(node: Node, method: str, path: str, body: Any = None, *, timeout: float = 2.0,
            headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request to ``node``; (status, decoded JSON or text). OSError/TimeoutError on transport failure."""
    conn = http.client.HTTPConnection(node.host, node.port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


def call(node: Node, method: str, path: str, body: Any = None, *, timeout: float = 2.0) -> Any:
    """An admin request that must succeed: its JSON answer, or AdminError with a one-line reason."""
    try:
        status, answer = request(node, method, path, body, timeout=timeout)
    except (OSError, http.client.HTTPException) as e:
        raise AdminError(f"{node.name} {method} {path}: {type(e).__name__}: {e}") from None
    if not 200 <= status < 300:
        raise AdminError(f"{node.name} {method} {path}: HTTP {status}: {str(answer)[:200]}")
    return answer


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

    def __init__(self, nodes: Sequence[Node] = ()):
        self.nodes = {n.name: n for n in nodes}
        self._layers: dict[str, dict[str, dict[str, Any]]] = {layer: {} for layer in LAYERS}
        self._posted: dict[str, dict[str, Any] | None] = {}
        #: (sender, receiver) links a partition currently cuts, by any mechanism: link probes skip them
        self.cut: set[tuple[str, str]] = set()
        self._lock = threading.RLock()

    def bind(self, nodes: Sequence[Node]) -> None:
        """Learn the cluster's nodes (each nemesis sharing this book calls it from setup)."""
        with self._lock:
            self.nodes = {n.name: n for n in nodes}

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
                if body:
                    call(node, "POST", "/admin/faults", body)
                else:
                    call(node, "DELETE", "/admin/faults")
                self._posted[name] = body
                pushed[name] = body
            except AdminError as e:
                self._posted[name] = None  # unknown state: push again next time
                errors.append(str(e))
        if errors:
            raise AdminError("; ".join(errors))
        return pushed

    def clear_all(self) -> list[str]:
        """DELETE /admin/faults on every node (heal); the errors, never raised."""
        with self._lock:
            self._layers = {layer: {} for layer in LAYERS}
            errors = []
            for name, node in self.nodes.items():
                try:
                    call(node, "DELETE", "/admin/faults")
                    self._posted[name] = {}
                except AdminError as e:
                    errors.append(str(e))
            return errors
