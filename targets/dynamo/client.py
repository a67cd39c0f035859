"""The harness's async client for one Dynamo node (``targets.adapter.TargetClient``).

One aiohttp session per client (keep-alive pool to its node). Responses map to
the history's outcome types exactly as ``docs/contracts.md`` says:

* 200 -> ok; GET 404 -> ok, not found;
* 503 on a write with ``stored > 0`` -> :class:`OpIndeterminate` (it reached
  some replicas and may still win); ``stored == 0`` -> :class:`OpFailed`;
* 503 on a read, 400, 507 -> :class:`OpFailed`;
* timeouts and connection errors -> :class:`OpIndeterminate`.

The ``/admin`` views the client reads (health, membership, hints) need the cluster's secret
(``Node.secret``, handed in as ``secret``): they go out with ``Authorization: Bearer``, the
``/kv`` requests without it, as any client of the store's public API.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import aiohttp

from targets.adapter import OpFailed, OpIndeterminate, ReadResult, WriteResult


class DynamoClient:
    """Client bound to one node: every request it sends is coordinated by that node."""

    def __init__(self, node: str, url: str, timeout: float = 5.0, secret: str | None = None) -> None:
        self.node = node
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._admin_headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                json_serialize=lambda o: json.dumps(o, separators=(",", ":")))
        return self._session

    async def _request(self, method: str, path: str, params: dict[str, Any], body: Any,
                       timeout: float | None) -> tuple[int, dict[str, Any]]:
        query = {k: str(v) for k, v in params.items() if v is not None}
        # the node's own coordinator timeout, if given, plus a margin for the HTTP round trip
        limit = (timeout + 1.0) if timeout is not None else self.timeout
        try:
            async with asyncio.timeout(limit):
                headers = self._admin_headers if path.startswith("/admin/") else None
                async with self._http().request(method, self.url + path, params=query, json=body,
                                                headers=headers) as resp:
                    text = await resp.text()
                    try:
                        data = json.loads(text) if text else {}
                    except ValueError:
                        data = {"error": text[:200]}
                    return resp.status, data if isinstance(data, dict) else {"value": data}
        except TimeoutError:
            raise OpIndeterminate(f"timeout after {limit:.3g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise OpIndeterminate(f"{type(exc).__name__}: {exc}".strip()) from None

    @staticmethod
    def _path(key: str) -> str:
        return "/kv/" + quote(key, safe="")

    async def get(self, key: str, *, r: int | None = None, pr: int | None = None,
                  timeout: float | None = None) -> ReadResult:
        """Read every sibling of key plus its context (OpFailed when the read quorum is missed)."""
        status, data = await self._request("GET", self._path(key), {"r": r, "pr": pr, "timeout": timeout},
                                           None, timeout)
        if status == 200:
            return ReadResult(tuple(data.get("siblings", ())), data.get("context"), True)
        if status == 404 and "siblings" in data:
            return ReadResult((), data.get("context"), False)
        raise OpFailed(_reason(status, data))

    async def put(self, key: str, value: Any, context: str | None = None, *, w: int | None = None,
                  pw: int | None = None, timeout: float | None = None) -> WriteResult:
        """Write value superseding ``context`` (None: blind write)."""
        status, data = await self._request("PUT", self._path(key), {"w": w, "pw": pw, "timeout": timeout},
                                           {"value": value, "context": context}, timeout)
        return WriteResult(_write_outcome(status, data))

    async def delete(self, key: str, context: str | None = None, *, w: int | None = None,
                     pw: int | None = None, timeout: float | None = None) -> None:
        """Write a tombstone superseding ``context``."""
        status, data = await self._request("DELETE", self._path(key), {"w": w, "pw": pw, "timeout": timeout},
                                           {"context": context}, timeout)
        _write_outcome(status, data)

    async def clock(self) -> float:
        """The node's wall clock as it sees it (to verify clock skew took effect)."""
        status, data = await self._request("GET", "/admin/clock", {}, None, None)
        if status != 200 or not isinstance(data.get("time"), (int, float)):
            raise OpIndeterminate(_reason(status, data))
        return float(data["time"])

    async def health(self) -> bool:
        """True when the node answers a real request through its event loop."""
        try:
            status, data = await self._request("GET", "/admin/health", {}, None, None)
        except OpIndeterminate:
            return False
        return status == 200 and data.get("ok") is True

    async def peers_down(self) -> list[str]:
        """Peers this node's gossip view marks down (``/admin/members``); OpIndeterminate if it cannot say."""
        status, data = await self._request("GET", "/admin/members", {}, None, None)
        members = data.get("members")
        if status != 200 or not isinstance(members, dict):
            raise OpIndeterminate(_reason(status, data))
        return sorted(m for m, v in members.items() if not (isinstance(v, dict) and v.get("up")))

    async def pending_handoffs(self) -> int:
        """Hints this node holds for other nodes (``/admin/hints`` total); OpIndeterminate if it cannot say."""
        status, data = await self._request("GET", "/admin/hints", {}, None, None)
        if status != 200 or not isinstance(data.get("total"), int):
            raise OpIndeterminate(_reason(status, data))
        return int(data["total"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _write_outcome(status: int, data: dict[str, Any]) -> str | None:
    if status == 200:
        return data.get("context")
    if status == 503 and isinstance(data.get("stored"), int) and data["stored"] > 0:
        raise OpIndeterminate(_reason(status, data))
    raise OpFailed(_reason(status, data))


def _reason(status: int, data: dict[str, Any]) -> str:
    error = str(data.get("error") or f"HTTP {status}").splitlines()[0]
    counts = " ".join(f"{k}={data[k]}" for k in ("needed", "replied", "stored") if k in data)
    return f"{status} {error}" + (f" ({counts})" if counts else "")
