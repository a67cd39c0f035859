"""The node's HTTP/1.1 server: a small asyncio protocol on httptools (llhttp), JSON only.

Why not aiohttp's web server: every client request of the store benchmark went through
aiohttp's request object, router, middleware and response machinery, ~15% of a node's
event-loop CPU per quorum operation (``benchmarks/RESULTS.md``, "Store"). The node's API
is small and JSON-only, so this server does only what it needs: parse with httptools
(the C parser uvicorn uses), route by method and path (exact paths and ``/prefix/{key}``
with the rest of the path as the key), run the handler, write one JSON response.

HTTP it honours: keep-alive (HTTP/1.1 default, ``Connection: close``, HTTP/1.0), pipelined
requests answered in order, chunked request bodies, ``Expect: 100-continue``. Malformed
requests get a one-line JSON 400 and the connection is closed; unknown paths 404 and wrong
methods 405, as JSON ``{"error": ...}`` like every other error of the node.

Limits, because on Docker and SSH the node listens on a network address and anyone who can
reach it can hold its memory and connections (docs/store.md, "Limits"): the request line and
headers together at most :data:`MAX_HEADER_BYTES` in at most :data:`MAX_HEADERS` fields
(431 otherwise); a request's headers must arrive within :data:`HEADER_TIMEOUT` of its first
byte and its whole body within :data:`BODY_TIMEOUT` (a slow-loris connection is closed); a
connection with no request in progress is closed after :data:`IDLE_TIMEOUT`. Request bodies
are decoded by :func:`loads_body`, which refuses what the standard decoder lets through and
the store cannot keep: NaN and infinities, and nesting deeper than :data:`MAX_DEPTH`.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import httptools

log = logging.getLogger("dynamo.http")

#: Largest request body accepted (internal anti-entropy/handoff batches are big).
MAX_BODY = 64 << 20
#: Request line plus every header name and value, in bytes; and the number of header fields.
MAX_HEADER_BYTES = 16 << 10
MAX_HEADERS = 100
#: Seconds: from a request's first byte to the end of its headers; from there to the end of its
#: body; and how long a connection with no request in progress stays open.
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 60.0
IDLE_TIMEOUT = 75.0
#: Deepest nesting of arrays and objects accepted in a JSON body.
MAX_DEPTH = 100
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
            507: "Insufficient Storage"}
#: Compact JSON text (ASCII): every response body, and the size a value is limited by.
compact_json = json.JSONEncoder(separators=(",", ":")).encode


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in item)
    return deepest


def loads_body(raw: bytes | str) -> Any:
    """Decode an untrusted JSON body; ValueError (answered 400) for anything the store could not
    keep or re-encode: malformed JSON or UTF-8, NaN/Infinity or a number that overflows to one,
    nesting deeper than :data:`MAX_DEPTH` (the encoders would hit the recursion limit later)."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    brackets = raw.count(b"[") + raw.count(b"{") if isinstance(raw, bytes) else raw.count("[") + raw.count("{")
    if brackets > MAX_DEPTH and _depth(value) > MAX_DEPTH:      # counting first: no walk for most bodies
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


class _TooLarge(Exception):
    """Raised from a parser callback: the request exceeds a limit (answered with ``status``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Headers(dict):
    """Request headers, looked up case-insensitively (stored lower-cased)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


class Request:
    """One parsed request, with what the node's handlers read (aiohttp-shaped names)."""

    __slots__ = ("method", "path", "query", "headers", "body", "match_info", "app")

    def __init__(self, method: str, path: str, query: dict[str, str], headers: Headers, body: bytes,
                 app: Mapping[str, Any]) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.match_info: dict[str, str] = {}
        self.app = app

    async def read(self) -> bytes:
        return self.body


class Response:
    """A JSON response: status and the encoded body."""

    __slots__ = ("status", "body")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body


def json_response(status: int, body: Any) -> Response:
    """A compact JSON response."""
    return Response(status, compact_json(body).encode("ascii"))


Handler = Callable[[Request], Awaitable[Response]]


def check_secret(request: Request, secret: str | None) -> Response | None:
    """None when the request may go on (the node has no secret, or the request carries it as
    ``Authorization: Bearer <secret>``); else the 401 (none given) or 403 (a wrong one) answer."""
    if secret is None:
        return None
    given = request.headers.get("authorization")
    if not given:
        return json_response(401, {"error": "this endpoint needs the cluster's secret (Authorization: Bearer ...)"})
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode("latin-1"), secret.encode()):
        return json_response(403, {"error": "wrong cluster secret"})
    return None


class Router:
    """Method + path -> handler: exact paths, and ``/prefix/{key}`` routes taking the rest as ``key``."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._prefixed: list[tuple[str, dict[str, Handler]]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        if pattern.endswith("{key}"):
            prefix = pattern[:-len("{key}")]
            for known, methods in self._prefixed:
                if known == prefix:
                    methods[method] = handler
                    return
            self._prefixed.append((prefix, {method: handler}))
        else:
            self._exact.setdefault(pattern, {})[method] = handler

    def resolve(self, request: Request) -> Handler | Response:
        """The handler (``request.match_info`` filled in), or the 404/405 response."""
        path = request.path
        methods = self._exact.get(path)
        if methods is None:
            for prefix, candidates in self._prefixed:
                if path.startswith(prefix):
                    methods = candidates
                    request.match_info["key"] = path[len(prefix):]
                    break
        if methods is None:
            return json_response(404, {"error": f"Not Found: {request.method} {path}"})
        handler = methods.get(request.method)
        if handler is None:
            return json_response(405, {"error": f"Method Not Allowed: {request.method} {path}"})
        return handler


class HttpProtocol(asyncio.Protocol):
    """One client connection: parse requests, run them one at a time in order, write the answers."""

    def __init__(self, router: Router, app: Mapping[str, Any], connections: set[HttpProtocol]) -> None:
        self._router = router
        self._app = app
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[tuple[Request, bool]] = deque()
        self._serving: asyncio.Task | None = None     # held: the loop keeps only weak references
        self._url = b""
        self._headers = Headers()
        self._body: list[bytes] = []
        self._size = 0
        self._too_large: _TooLarge | None = None
        self._header_bytes = 0
        self._in_message = False
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)
        self._arm(IDLE_TIMEOUT, "idle")

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._transport = None
        self._queue.clear()
        self._arm(None)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if self._too_large is not None:
                self._fail(self._too_large.status, str(self._too_large))
            else:
                self._fail(400, f"malformed HTTP request: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    # -- time limits (slow and idle connections) ---------------------------------------------
    def _arm(self, seconds: float | None, what: str = "") -> None:
        """Close the connection in ``seconds`` unless re-armed first (None: disarm)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds is not None and self._transport is not None:
            self._timer = asyncio.get_running_loop().call_later(seconds, self._expire, what, seconds)

    def _expire(self, what: str, seconds: float) -> None:
        self._timer = None
        if what == "idle" or self._serving is not None and not self._serving.done():
            self.close()                  # idle: nothing to answer; else the answer is being made
        else:
            self._fail(408, f"request {what} not received within {seconds:g}s")

    def close(self) -> None:
        """Close the connection (node shutdown)."""
        if self._transport is not None:
            self._transport.close()

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size = b"", Headers(), [], 0
        self._header_bytes, self._in_message = 0, True
        self._arm(HEADER_TIMEOUT, "headers")

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            self._too_large = _TooLarge(431, f"request line and headers larger than {MAX_HEADER_BYTES} bytes")
            raise self._too_large                      # httptools stops parsing: answered in data_received

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value))
        if len(self._headers) >= MAX_HEADERS:
            self._too_large = _TooLarge(431, f"more than {MAX_HEADERS} header fields")
            raise self._too_large
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._arm(BODY_TIMEOUT, "body")
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            self._too_large = _TooLarge(413, f"request body larger than {MAX_BODY} bytes")
            raise self._too_large                      # refused before any of it is read
        if self._headers.get("expect", "").lower() == "100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._too_large = _TooLarge(413, f"request body larger than {MAX_BODY} bytes")
            raise self._too_large
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._arm(None)                                # being served: the handler has its own timeouts
        parsed = httptools.parse_url(self._url)
        try:
            path = unquote(parsed.path.decode("latin-1"), encoding="utf-8", errors="strict")
            query = parsed.query.decode("latin-1") if parsed.query else ""
            params: dict[str, str] = {}
            for name, value in parse_qsl(query, keep_blank_values=True, errors="strict"):
                params.setdefault(name, value)
        except UnicodeDecodeError:
            path, params = "", {}
        request = Request(self._parser.get_method().decode("latin-1"), path, params, self._headers,
                          b"".join(self._body), self._app)
        self._queue.append((request, self._parser.should_keep_alive()))
        if self._serving is None or self._serving.done():
            self._serving = asyncio.get_running_loop().create_task(self._serve_queue())

    # -- serving ---------------------------------------------------------------------------
    async def _serve_queue(self) -> None:
        while self._queue and self._transport is not None:
            request, keep_alive = self._queue.popleft()
            response = await self._run(request)
            self._write(response, keep_alive)
        if not self._in_message:
            self._arm(IDLE_TIMEOUT, "idle")

    async def _run(self, request: Request) -> Response:
        if not request.path:
            return json_response(400, {"error": "request path is not valid percent-encoded UTF-8"})
        target = self._router.resolve(request)
        if isinstance(target, Response):
            return target
        try:
            return await target(request)
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path)
            return json_response(500, {"error": f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]})

    def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        head = (f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}\r\n"
                f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(response.body)}\r\n"
                + ("" if keep_alive else "Connection: close\r\n") + "\r\n")
        transport.write(head.encode("latin-1") + response.body)
        if not keep_alive:
            transport.close()

    def _fail(self, status: int, message: str) -> None:
        self._queue.clear()
        self._write(json_response(status, {"error": message}), keep_alive=False)
