"""``EtcdAdmin``: the synchronous node admin for etcd (``targets.adapter.NodeAdmin``).

etcd declares no capability, so the only call the harness makes is :meth:`EtcdAdmin.health`.
It asks ``GET /version``, not ``/health``: ``/health`` answers false whenever the member has
no leader, so a node restarted inside a minority partition (alive, serving, correctly refusing
linearizable requests) would look dead and the backend would report a failed restart. A process
that serves HTTP on its client port is up; whether the cluster has a quorum is what the
workload measures, not a health question.
"""
from __future__ import annotations

import http.client
import json
from typing import Any, Mapping

from targets.adapter import AdminError, Node


class EtcdAdmin:
    """Health over etcd's client port; every capability-only call refuses in one line."""

    def health(self, node: Node, timeout: float = 1.0) -> tuple[bool, str]:
        """(True, "") when ``node`` answers ``GET /version`` as etcd within ``timeout``."""
        conn = http.client.HTTPConnection(node.host, node.port, timeout=timeout)
        try:
            conn.request("GET", "/version")
            resp = conn.getresponse()
            body = resp.read(4096)
        except TimeoutError:
            return False, f"no answer from {node.host}:{node.port} within {timeout:.3g}s"
        except (OSError, http.client.HTTPException) as exc:
            return False, f"{type(exc).__name__}: {exc}".strip()
        finally:
            conn.close()
        if resp.status != 200:
            return False, f"GET /version answered HTTP {resp.status}"
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not (isinstance(data, dict) and "etcdserver" in data):
            return False, f"GET /version answered {body[:80]!r}, not etcd's version"
        return True, ""

    # -- capabilities etcd does not have: the harness never calls these (capabilities is empty);
    # -- a caller that does gets a one-line AdminError instead of an AttributeError.

    def clock(self, node: Node, timeout: float = 2.0) -> float:
        raise AdminError("etcd has no clock endpoint (the target declares no 'clock' capability)")

    def faults(self, node: Node, timeout: float = 2.0) -> Mapping[str, Any]:
        raise AdminError("etcd has no in-process fault endpoint (no 'transport-faults' capability)")

    def set_faults(self, node: Node, faults: Mapping[str, Any], timeout: float = 2.0) -> None:
        raise AdminError("etcd has no in-process fault endpoint (no 'transport-faults' capability)")

    def clear_faults(self, node: Node, timeout: float = 2.0) -> None:
        raise AdminError("etcd has no in-process fault endpoint (no 'transport-faults' capability)")

    def peer_probe(self, node: Node, sender: str, timeout: float = 2.0) -> tuple[str, float]:
        raise AdminError("etcd has no peer-probe endpoint (no 'transport-faults' capability)")
