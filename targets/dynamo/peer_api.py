"""The node-to-node HTTP endpoints (``/internal/...``), served by every node.

Peers call them through :class:`targets.dynamo.transport.Transport`, which sends
``POST /internal/batch`` requests carrying several calls; each single endpoint
also exists on its own (handy with curl). Incoming injected faults are applied
here, per request, before anything runs. Every endpoint answers JSON; a
malformed call gets 400 and changes nothing.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from targets.dynamo.coordinator import QuorumFailed, TooManySiblings
from targets.dynamo.transport import SENDER_HEADER

Handler = Callable[[web.Request], Awaitable[web.Response]]
NodeState = Any   # targets.dynamo.server.NodeState (not imported: server imports this module)


def reply(status: int, body: Any) -> web.Response:
    """A compact JSON response."""
    return web.Response(status=status, text=json.dumps(body, separators=(",", ":")),
                        content_type="application/json")


InternalFn = Callable[[NodeState, dict], Awaitable[Any]]


async def run_internal(state: NodeState, fn: InternalFn, body: Any) -> tuple[int, Any]:
    """Run one node-to-node call: (200, reply) or (400, error) for a malformed one."""
    try:
        if not isinstance(body, dict):
            raise ValueError("body must be an object")  # noqa: TRY004 - answered as 400
        return 200, await fn(state, body)
    except (ValueError, KeyError, TypeError) as exc:
        return 400, {"error": f"bad internal request: {exc}"}


async def admit_peer(state: NodeState, request: web.Request) -> bool:
    """Apply injected faults to an incoming peer request (False: reject it)."""
    sender = request.headers.get(SENDER_HEADER)
    if not await state.transport.admit(sender):
        return False
    if sender in state.cfg.peers and sender != state.name:
        state.members.heard_from(sender)
    return True


def internal(fn: InternalFn) -> Handler:
    """One /internal endpoint: faults, JSON body in, JSON reply out."""
    async def wrapper(request: web.Request) -> web.Response:
        state: NodeState = request.app["state"]
        if not await admit_peer(state, request):
            return reply(503, {"error": "dropped by injected fault"})
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            return reply(400, {"error": f"bad internal request: {exc}"})
        status, answer = await run_internal(state, fn, body)
        return reply(status, answer)
    return wrapper


async def internal_batch(request: web.Request) -> web.Response:
    """``POST /internal/batch`` ``{"items": [[path, body], ...]}``: run them concurrently, reply in order."""
    state: NodeState = request.app["state"]
    if not await admit_peer(state, request):
        return reply(503, {"error": "dropped by injected fault"})
    try:
        items = json.loads(await request.read())["items"]
        calls = [(INTERNAL_ROUTES[path], body) for path, body in items]
    except (ValueError, KeyError, TypeError) as exc:
        return reply(400, {"error": f"bad internal batch: {exc}"})
    replies = await asyncio.gather(*(run_internal(state, fn, body) for fn, body in calls))
    return reply(200, {"replies": replies})


async def internal_put(state: NodeState, body: dict) -> Any:
    obj = state.versioning.from_json(body["obj"])
    hint_for = body.get("hint_for")
    if hint_for is not None and hint_for not in state.cfg.peers:
        raise ValueError(f"unknown hint target {hint_for!r}")
    await state.storage.merge_in(body["key"], obj, hint_for)
    return {"ok": True}


async def internal_get(state: NodeState, body: dict) -> Any:
    obj = await state.storage.get(body["key"])
    return {"obj": None if obj is None else state.versioning.to_json(obj)}


async def internal_handoff(state: NodeState, body: dict) -> Any:
    v = state.versioning
    objects = {k: v.from_json(d) for k, d in body["objects"].items()}
    await state.storage.merge_many(objects)
    state.stats["hints_received"] += len(objects)
    return {"ok": True, "count": len(objects)}


async def internal_gossip(state: NodeState, body: dict) -> Any:
    table = body.get("table")
    if isinstance(table, dict):
        state.members.merge(table, sender=None)
    return {"table": state.members.table()}


async def internal_coordinate(state: NodeState, body: dict) -> Any:
    value = state.versioning_module.TOMBSTONE if body.get("delete") else body.get("value")
    try:
        answer = await state.coordinator.write(body["key"], value, body.get("context"), w=int(body["w"]),
                                               pw=int(body["pw"]), timeout=float(body["timeout"]),
                                               forwarded=True)
        return {"status": 200, "body": answer}
    except QuorumFailed as exc:
        return {"status": 503, "body": exc.to_json()}
    except TooManySiblings as exc:
        return {"status": 507, "body": {"error": str(exc)}}
    except state.versioning_module.ContextError as exc:
        return {"status": 400, "body": {"error": f"malformed context: {exc}"}}


async def internal_ae_tree(state: NodeState, body: dict) -> Any:
    return state.ae.tree_reply(body)


async def internal_ae_exchange(state: NodeState, body: dict) -> Any:
    return await state.ae.exchange_reply(body)


INTERNAL_ROUTES: dict[str, InternalFn] = {
    "/internal/put": internal_put, "/internal/get": internal_get, "/internal/handoff": internal_handoff,
    "/internal/gossip": internal_gossip, "/internal/coordinate": internal_coordinate,
    "/internal/ae/tree": internal_ae_tree, "/internal/ae/exchange": internal_ae_exchange,
}
