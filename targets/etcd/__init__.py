"""etcd as a dynharness target: a real, independently written store to point the harness at.

The reference Dynamo store shows what the checkers find in a leaderless, eventually consistent
store; etcd (raft, linearizable by default) is the control: the same workloads and nemeses
against a store that promises linearizability, so a checker that flags it is either right about
etcd or wrong about itself. Nodes are Debian's ``etcd-server`` binary (``/usr/bin/etcd``),
started by the harness's backends from :meth:`EtcdTarget.node_command`; clients speak etcd's
v3 JSON gateway over aiohttp (:mod:`targets.etcd.client`).

Like every target, this package imports only :mod:`targets.adapter`, the standard library and
aiohttp, so it ships into a node image alone.
"""
from targets.etcd.target import EtcdTarget

__all__ = ["EtcdTarget"]
