"""The node process: state, HTTP handlers (client, admin, internal) and start-up.

The HTTP API is the one in ``docs/contracts.md`` section 1 and ``docs/store.md``.
Every handler answers JSON; every client error is a 4xx with a one-line
``{"error": ...}`` and nothing stored.

Who may call what: the client API (``/kv``) is the store's public interface and stays open.
Every ``/admin`` endpoint (faults above all, but also health, the membership view and pending
hints: the harness's client presents the secret for those), ``/internal/*`` and the peer
handshake need the cluster's secret, which the harness hands each node in
:data:`targets.adapter.NODE_SECRET_ENV`: on Docker and SSH a node listens on a network
address, and without it anyone who could reach it could inject faults, pose as a peer or map
the cluster. A node
started without a secret (by hand, ``targets.dynamo.launcher``) is open, and says so in its log.
"""
from __future__ import annotations

import asyncio
import collections
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from targets.adapter import NODE_SECRET_ENV
from targets.dynamo import bugs, eventloop
from targets.dynamo.antientropy import AntiEntropy, antientropy_loop, reaper_loop
from targets.dynamo.config import NodeConfig
from targets.dynamo.coordinator import (
    BadRequest,
    Coordinator,
    QuorumFailed,
    TooManySiblings,
)
from targets.dynamo.gossip import Membership, gossip_loop
from targets.dynamo.handoff import Handoff, handoff_loop
from targets.dynamo.httpserver import (
    Handler,
    HttpProtocol,
    Request,
    Response,
    Router,
    check_secret,
    compact_json,
    loads_body,
)
from targets.dynamo.peer_api import (
    INTERNAL_ROUTES,
    ConnectionSniffer,
    internal,
    reply,
)
from targets.dynamo.replicas import admin_replicas
from targets.dynamo.storage import Storage
from targets.dynamo.transport import Transport

log = logging.getLogger("dynamo.server")

MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 1 << 20
READ_PARAMS = frozenset({"r", "pr", "timeout"})
WRITE_PARAMS = frozenset({"w", "pw", "timeout"})


class NodeState:
    """Everything one running node holds; handlers and loops share it."""

    def __init__(self, cfg: NodeConfig, secret: str | None = None) -> None:
        from targets.dynamo import versioning
        from targets.dynamo.ring import Ring
        bugs.activate(cfg.settings.get("bug", ""))      # before anything a bug may touch (storage)
        self.cfg = cfg
        self.name = cfg.name
        self.versioning_module = versioning
        self.versioning = versioning.for_mode(cfg.mode, vclock_max=cfg.vclock_max)
        self.ring = Ring(list(cfg.peers), partitions=cfg.partitions)
        self.storage = Storage(cfg.data_dir, self.versioning, self.ring.partition_of, cfg.fsync)
        self.secret = secret            # the cluster's secret (None: an open node)
        self.transport = Transport(cfg.name, cfg.host, cfg.peers, secret=secret)
        self.members = Membership(cfg.name, list(cfg.peers), cfg.gossip_interval,
                                  now=lambda: asyncio.get_running_loop().time())
        self.stats: collections.Counter[str] = collections.Counter()
        self.coordinator = Coordinator(self)
        self.handoff = Handoff(self)
        self.ae = AntiEntropy(self)
        self.stopping = asyncio.Event()
        self.started_at = time.time()
        self._tasks: set[asyncio.Future] = set()

    def background(self, fut: Awaitable[Any]) -> None:
        """Keep a reference to a background task until it finishes."""
        task = asyncio.ensure_future(fut)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        """Rebuild Merkle trees from storage, then start storage, transport and the periodic loops."""
        for key, obj in self.storage.scan_all():
            self.ae.track(key, obj)
        self.storage.on_change = lambda changes: [self.ae.track(c.key, c.obj) for c in changes]
        self.storage.start(asyncio.get_running_loop())
        await self.transport.start()
        cfg = self.cfg
        for loop in (gossip_loop(self.members, self.transport, self.stopping),
                     handoff_loop(self.handoff, cfg.gossip_interval, self.stopping),
                     antientropy_loop(self.ae, cfg.ae_interval, self.stopping),
                     reaper_loop(self, cfg.tombstone_grace, self.stopping)):
            self.background(loop)

    async def stop(self) -> None:
        self.stopping.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transport.close()
        self.storage.stop()


# -- request parsing -------------------------------------------------------------------------
class HTTPError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.status = status
        self.body = body


def bad(message: str) -> HTTPError:
    return HTTPError(400, {"error": message})


def parse_key(request: Request) -> str:
    key = request.match_info.get("key", "")
    size = len(key.encode("utf-8", "surrogatepass"))
    if not 0 < size <= MAX_KEY_BYTES:
        raise bad(f"key must be 1..{MAX_KEY_BYTES} bytes of UTF-8, got {size}")
    return key


def parse_query(request: Request, allowed: frozenset[str], cfg: NodeConfig) -> dict[str, Any]:
    """Per-request quorum/timeout overrides, defaulting to the cluster settings."""
    if not request.query:               # the usual request: every setting is the cluster's
        return {name: cfg.request_timeout if name == "timeout" else getattr(cfg, name) for name in allowed}
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise bad(f"unknown query parameter(s): {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    out: dict[str, Any] = {}
    for name in allowed:
        raw = request.query.get(name)
        if name == "timeout":
            if raw is None:
                out[name] = cfg.request_timeout
                continue
            try:
                value = float(raw)
            except ValueError:
                raise bad(f"timeout must be a number of seconds, got {raw!r}") from None
            if not 0 < value <= 120:
                raise bad(f"timeout must be in (0, 120] seconds, got {raw}")
            out[name] = value
            continue
        if raw is None:
            out[name] = getattr(cfg, name)
            continue
        if not raw.isdigit():
            raise bad(f"{name} must be an integer, got {raw!r}")
        value = int(raw)
        low = 0 if name.startswith("p") else 1
        if not low <= value <= cfg.n:
            raise bad(f"{name} must be between {low} and n={cfg.n}, got {value}")
        out[name] = value
    return out


async def parse_body(request: Request, fields: frozenset[str], required: frozenset[str]) -> dict:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise bad(f"body must be a JSON object with {', '.join(sorted(required))}")
        return {}
    try:
        body = loads_body(raw)
    except ValueError as exc:
        raise bad(f"malformed JSON body: {str(exc).splitlines()[0]}") from None
    if not isinstance(body, dict):
        raise bad("body must be a JSON object")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise bad(f"unknown body field(s): {', '.join(unknown)}")
    missing = sorted(required - set(body))
    if missing:
        raise bad(f"missing body field(s): {', '.join(missing)}")
    context = body.get("context")
    if context is not None and not isinstance(context, str):
        raise bad("context must be a string or null")
    return body


# -- handlers ---------------------------------------------------------------------------------


def handled(fn: Callable[[NodeState, Request], Awaitable[Response]]) -> Handler:
    """Turn HTTPError/QuorumFailed/... raised by a handler into the JSON error responses."""
    async def wrapper(request: Request) -> Response:
        state: NodeState = request.app["state"]
        try:
            return await fn(state, request)
        except HTTPError as exc:
            return reply(exc.status, exc.body)
        except QuorumFailed as exc:
            return reply(503, exc.to_json())
        except TooManySiblings as exc:
            return reply(507, {"error": str(exc)})
        except BadRequest as exc:
            return reply(400, {"error": str(exc)})
    return wrapper


async def kv_get(state: NodeState, request: Request) -> Response:
    key = parse_key(request)
    q = parse_query(request, READ_PARAMS, state.cfg)
    obj, _ = await state.coordinator.read(key, r=q["r"], pr=q["pr"], timeout=q["timeout"])
    v = state.versioning
    if obj is None:
        return reply(404, {"siblings": [], "context": None})
    values = v.values(obj)
    if not values:
        return reply(404, {"siblings": [], "context": v.context(obj)})
    return reply(200, {"siblings": values, "context": v.context(obj), "tombstone": False})


async def _write(state: NodeState, key: str, value: Any, context: str | None, q: dict) -> Response:
    errors = state.versioning_module
    try:
        body = await state.coordinator.write(key, value, context, w=q["w"], pw=q["pw"], timeout=q["timeout"])
    except errors.ContextError as exc:
        raise bad(f"malformed context: {exc}") from None
    return reply(200, body)


async def kv_put(state: NodeState, request: Request) -> Response:
    key = parse_key(request)
    q = parse_query(request, WRITE_PARAMS, state.cfg)
    body = await parse_body(request, frozenset({"value", "context"}), frozenset({"value"}))
    size = len(compact_json(body["value"]))
    if size > MAX_VALUE_BYTES:
        raise bad(f"value is {size} bytes of JSON, more than {MAX_VALUE_BYTES}")
    return await _write(state, key, body["value"], body.get("context"), q)


async def kv_delete(state: NodeState, request: Request) -> Response:
    key = parse_key(request)
    q = parse_query(request, WRITE_PARAMS, state.cfg)
    body = await parse_body(request, frozenset({"context"}), frozenset())
    return await _write(state, key, state.versioning_module.TOMBSTONE, body.get("context"), q)


def build_router(state: NodeState) -> tuple[Router, dict[str, Any]]:
    """The routes of one node, and the ``app`` mapping its handlers see (``request.app``)."""
    from targets.dynamo import admin_api   # it uses this module's request helpers: imported once they exist

    r = Router()
    r.add("GET", "/kv/{key}", handled(kv_get))
    r.add("PUT", "/kv/{key}", handled(kv_put))
    r.add("DELETE", "/kv/{key}", handled(kv_delete))
    for method, path, fn in admin_api.ADMIN_ROUTES:
        r.add(method, path, guarded(handled(fn)))
    r.add("POST", "/admin/replicas", guarded(handled(admin_replicas)))   # a replica's own copies: harness only
    for path, ifn in INTERNAL_ROUTES.items():
        r.add("POST", path, internal(ifn))
    return r, {"state": state}


def guarded(handler: Handler) -> Handler:
    """``handler`` behind the cluster's secret (401 without it, 403 with a wrong one)."""
    async def wrapper(request: Request) -> Response:
        denied = check_secret(request, request.app["state"].secret)
        return denied if denied is not None else await handler(request)
    return wrapper


#: Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect garbage cycles less often, and never scan what start-up loaded.

    A quorum request allocates hundreds of short-lived objects (frames, dicts, futures), so
    with CPython's default thresholds the young generation was collected every few requests
    and the full heap every few seconds, which showed as CPU per op and as 100 ms latency
    outliers in the store bench. The node's data is mostly acyclic; cycles (exception
    tracebacks) are still collected, every 50,000 allocations (young), 20 young collections
    (middle) and 10 middle ones (full). ``gc.freeze`` moves what start-up loaded (the read
    cache, the Merkle trees) out of every collection: it lives as long as the process."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 10)
    gc.freeze()


async def serve(cfg: NodeConfig) -> None:
    """Run one node until SIGTERM/SIGINT (with the cluster's secret from the environment)."""
    state = NodeState(cfg, os.environ.get(NODE_SECRET_ENV) or None)
    if state.secret is None:
        log.warning("no %s: admin, internal and peer endpoints are open to anyone who can reach %s:%d",
                    NODE_SECRET_ENV, cfg.host, cfg.port)
    await state.start()
    tune_gc()
    router, app = build_router(state)
    connections: set[HttpProtocol] = set()
    loop = asyncio.get_running_loop()
    try:
        # one port for both: ConnectionSniffer hands client HTTP to HttpProtocol, peer links to PeerConnection
        listener = await loop.create_server(
            lambda: ConnectionSniffer(lambda: HttpProtocol(router, app, connections), state), cfg.host, cfg.port,
            reuse_address=True, backlog=1024)
    except OSError as exc:
        await state.stop()
        from targets.adapter import TargetError
        raise TargetError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}") from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, state.stopping.set)
    log.info("node %s serving on %s:%d (mode=%s n=%d r=%d w=%d fsync=%s loop=%s)", cfg.name, cfg.host, cfg.port,
             cfg.mode, cfg.n, cfg.r, cfg.w, cfg.fsync, eventloop.LOOP_KIND)
    print(f"ready {cfg.name} http://{cfg.host}:{cfg.port}", flush=True)
    await state.stopping.wait()
    listener.close()
    for conn in list(connections):
        conn.close()
    await state.stop()
