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
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import httptools

log = logging.getLogger("dynamo.http")

#: Largest request body accepted (internal anti-entropy/handoff batches are big).
MAX_BODY = 64 << 20
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
            500: "Internal Server Error", 503: "Service Unavailable", 507: "Insufficient Storage"}
#: Compact JSON text (ASCII): every response body, and the size a value is limited by.
compact_json = json.JSONEncoder(separators=(",", ":")).encode


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
        self._too_large = False

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._transport = None
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if self._too_large:
                self._fail(413, f"request body larger than {MAX_BODY} bytes")
            else:
                self._fail(400, f"malformed HTTP request: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    def close(self) -> None:
        """Close the connection (node shutdown)."""
        if self._transport is not None:
            self._transport.close()

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size = b"", Headers(), [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            self._too_large = True
            raise ValueError("body too large")         # refused before any of it is read
        if self._headers.get("expect", "").lower() == "100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._too_large = True
            raise ValueError("body too large")         # httptools stops parsing: answered in data_received
        self._body.append(body)

    def on_message_complete(self) -> None:
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
