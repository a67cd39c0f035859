"""A forwarded write whose requester goes away still reaches every replica.

Found by the ``cart-partition-until-heal`` zoo scenario on the clean store (the convergence
checker flagged 2 runs of 9): a client write forwarded to a key's coordinator
(``/internal/coordinate``) just as a partition began stayed in the sender's kernel (an aborted
asyncio link still flushes its unacknowledged bytes) and reached the coordinator after the heal,
followed at once by the connection's end. The coordinator committed its own copy, then the
serving side cancelled every task of the closed peer connection, the write among them, before it
sent the write to the other replicas: a version on one replica only, with no hint anywhere, that
only anti-entropy could spread, long after the harness's convergence bound.

Real node processes; the late, orphaned request is a raw peer connection that sends one
``/internal/coordinate`` frame and closes at once. Anti-entropy is off (600 s) so that only the
coordinated write itself can put the key on the other replicas.
"""
from __future__ import annotations

import socket

import pytest

from targets.dynamo.launcher import local_cluster
from targets.dynamo.transport import MAGIC, encode_frame
from tests.test_store_replication import eventually, local

pytestmark = pytest.mark.cluster

KEYS = 12


def orphaned_coordinate(node, key: str, value: int) -> None:
    """Ask ``node`` (host, port) to coordinate a write of ``key`` as peer n2 would, and hang up
    without waiting for the answer (data and FIN leave together)."""
    body = {"key": key, "value": value, "context": None, "w": 2, "pw": 0, "timeout": 2.0}
    with socket.create_connection(node, timeout=5) as sock:
        sock.sendall(MAGIC + encode_frame({"from": "n2"}) + encode_frame([1, "/internal/coordinate", body]))


def test_a_forwarded_write_reaches_every_replica_after_its_requester_hung_up(tmp_path):
    with local_cluster(3, tmp_path, n=3, r=2, w=2, fsync="never", ae_interval=600, request_timeout=2.0) as c:
        n1 = c.nodes["n1"]
        keys = [f"orphan-{i}" for i in range(KEYS)]
        for i, key in enumerate(keys):
            orphaned_coordinate((n1.host, n1.port), key, i)
        # every key is on n1 once its (cancelled or not) local commit is done
        stored = eventually(lambda: [k for k in keys if local(c, "n1", k)["found"]] or None, timeout=10)
        assert stored, "no orphaned write was committed by its coordinator: the test shows nothing"
        for key in stored:
            on = eventually(lambda key=key: all(local(c, n, key)["found"] for n in ("n2", "n3")), timeout=5)
            assert on, (f"{key}: committed by its coordinator n1 but never sent to n2/n3 "
                        f"({ {n: local(c, n, key)['found'] for n in ('n2', 'n3')} })")
