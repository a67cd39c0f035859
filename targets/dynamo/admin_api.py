"""The node's ``/admin`` endpoints: health, clock, ring, hints, stats, a key's local copy, faults.

Split from :mod:`targets.dynamo.server` (which routes them, every one behind the cluster's
secret) to keep each module to one concern: these only read the node's state, except
``/admin/faults``, which sets the in-process transport faults the nemeses use.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from targets.dynamo import eventloop
from targets.dynamo.httpserver import Request, Response, loads_body
from targets.dynamo.peer_api import reply
from targets.dynamo.server import NodeState, bad, parse_key
from targets.dynamo.faults import Faults
from targets.dynamo.transport import FrameWriter

log = logging.getLogger("dynamo.server")

async def admin_health(state: NodeState, request: Request) -> Response:
    return reply(200, {"ok": True, "node": state.name})


async def admin_clock(state: NodeState, request: Request) -> Response:
    return reply(200, {"node": state.name, "time": time.time(), "loop_time": asyncio.get_running_loop().time()})


async def admin_ring(state: NodeState, request: Request) -> Response:
    return reply(200, state.ring.to_json())


async def admin_preflist(state: NodeState, request: Request) -> Response:
    key = parse_key(request)
    walk, plan = state.coordinator.plan(key)
    return reply(200, {"key": key, "partition": state.ring.partition_of(key),
                       "primaries": state.ring.preference_list(key, state.cfg.n), "walk": walk,
                       "replicas_now": [{"node": r.node, "hint_for": r.hint_for} for r in plan]})


async def admin_hints(state: NodeState, request: Request) -> Response:
    return reply(200, await state.handoff.queues())


async def admin_antientropy(state: NodeState, request: Request) -> Response:
    return reply(200, state.ae.status())


async def admin_members(state: NodeState, request: Request) -> Response:
    return reply(200, state.members.view())


async def admin_stats(state: NodeState, request: Request) -> Response:
    cfg = state.cfg
    return reply(200, {"node": state.name, "counters": dict(state.stats),
                       "storage": {"commits": state.storage.commits, "jobs": state.storage.jobs_run,
                                   "fsyncs": state.storage.fsyncs,
                                   "checkpoints": state.storage.checkpoints,
                                   "fsync": cfg.fsync, "path": state.storage.path},
                       "transport": {"sent": state.transport.sent, "failed": state.transport.failed,
                                     "connects": state.transport.connects,
                                     "frames": FrameWriter.frames, "frame_writes": FrameWriter.writes},
                       "event_loop": eventloop.LOOP_KIND,
                       "settings": dict(cfg.settings), "uptime_s": round(time.time() - state.started_at, 3)})


async def admin_local(state: NodeState, request: Request) -> Response:
    """This node's own stored copy of a key (no coordination): for tests and debugging."""
    key = parse_key(request)
    obj = await state.storage.get(key)
    v = state.versioning
    if obj is None:
        return reply(404, {"node": state.name, "key": key, "found": False})
    return reply(200, {"node": state.name, "key": key, "found": True, "siblings": v.values(obj),
                       "sibling_count": v.sibling_count(obj), "deleted": v.is_deleted(obj),
                       "context": v.context(obj)})


async def admin_faults(state: NodeState, request: Request) -> Response:
    if request.method == "POST":
        try:
            body = loads_body(await request.read() or b"{}")
            state.transport.faults = Faults.parse(body, state.cfg.peers)
        except ValueError as exc:
            raise bad(f"bad faults: {str(exc).splitlines()[0]}") from None
        log.warning("transport faults set: %s", state.transport.faults.to_json())
    elif request.method == "DELETE":
        state.transport.faults = Faults()
        log.warning("transport faults cleared")
    return reply(200, state.transport.faults.to_json())


ADMIN_ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("GET", "/admin/health", admin_health), ("GET", "/admin/clock", admin_clock),
    ("GET", "/admin/ring", admin_ring), ("GET", "/admin/preflist/{key}", admin_preflist),
    ("GET", "/admin/hints", admin_hints), ("GET", "/admin/antientropy", admin_antientropy),
    ("GET", "/admin/members", admin_members), ("GET", "/admin/stats", admin_stats),
    ("GET", "/admin/local/{key}", admin_local),
    ("GET", "/admin/faults", admin_faults), ("POST", "/admin/faults", admin_faults),
    ("DELETE", "/admin/faults", admin_faults),
)
