"""``EtcdClient``: the harness's async client for one etcd member (``targets.adapter.TargetClient``).

It speaks etcd's v3 JSON gateway (``POST /v3/kv/range|put|deleterange|txn``; keys and values
base64 in the body), so no gRPC stack is needed. Values are stored as canonical JSON text
(compact, sorted keys), so an int written comes back an int and a compare-and-set can compare
the stored bytes with the encoding of the value it expects.

How answers become history outcomes decides whether a history is judged correctly, so the rule
is: **OpFailed only when the request provably had no effect; otherwise OpIndeterminate.**

* Could not connect (refused, unreachable, connect timed out): OpFailed for every op: nothing
  was sent.
* Reads (``range``): any other failure too (timeout, broken connection, HTTP 5xx, a gRPC error):
  a read changes nothing, so a read that did not answer simply did not happen.
* Writes (``put``, ``deleterange``, ``txn``): a timeout, a connection broken after sending, or an
  etcd error such as ``etcdserver: request timed out`` / ``leader changed`` / ``no leader`` /
  ``context deadline exceeded`` is OpIndeterminate: the proposal may already sit in the raft log
  and commit later (a leader elected after a partition heals applies its predecessor's entries).
  OpFailed only for gRPC codes etcd returns *before* proposing, or for a request the apply step
  refuses: InvalidArgument (bad/too-large request), ResourceExhausted (``too many requests``
  when apply lags commit by 5000 entries, ``database space exceeded``), FailedPrecondition,
  OutOfRange, NotFound, AlreadyExists, PermissionDenied, Unauthenticated, Unimplemented; and
  for an HTTP 4xx without a gRPC code (the gateway itself refused: bad JSON, unknown path).

What etcd 3.4's gateway really answers (tested): errors come as a non-200 status with
``{"error", "message", "code"}`` (code = gRPC code): ``request timed out`` is 503/code 14, a
proposal that expired is 500 ``context deadline exceeded``/code 2, validation errors are
400/code 3. Both arrive only after etcd's own request timeout (5 s + 2 election timeouts), so
the client's ``timeout`` usually fires first. Fields equal to their proto3 default are left out:
a miss has no ``kvs``, a failed txn has no ``succeeded``, a delete of nothing has no ``deleted``.
"""
from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from targets.adapter import OpFailed, OpIndeterminate, ReadResult, TargetError, WriteResult

#: Values of the ``reads`` setting: a linearizable range goes through raft's ReadIndex (needs a
#: quorum); a serializable one is answered from the member's local state (may be stale).
READ_MODES = ("linearizable", "serializable")

#: gRPC codes etcd returns only when the request was refused before it was proposed (or refused
#: when applied): a write with one of these definitely did not take effect.
DEFINITE_CODES = frozenset({3, 5, 6, 7, 8, 9, 11, 12, 16})

#: aiohttp >= 3.10 tells a connect timeout (nothing sent) from a timeout later on.
_CONNECT_TIMEOUT: tuple[type[BaseException], ...] = tuple(
    c for c in (getattr(aiohttp, "ConnectionTimeoutError", None),) if c is not None)


class EtcdClient:
    """Client bound to one member: every request goes to that member's client port.

    ``r``/``pr``/``w``/``pw`` are accepted and ignored (raft decides quorums, not the client);
    ``context`` on put/delete is ignored too: writes are unconditional (register semantics) and a
    read-modify-write that must not lose updates uses :meth:`cas`."""

    def __init__(self, node: str, url: str, *, timeout: float = 5.0, reads: str = "linearizable") -> None:
        if reads not in READ_MODES:
            raise TargetError(f"etcd setting reads: expected one of {', '.join(READ_MODES)}, got {reads!r}")
        self.node = node
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.reads = reads
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        """The member's keep-alive pool, created on first use inside the running loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                json_serialize=lambda o: json.dumps(o, separators=(",", ":")))
        return self._session

    async def _call(self, path: str, body: dict[str, Any], *, write: bool,
                    timeout: float | None) -> dict[str, Any]:
        """POST one gateway request; the parsed answer, or the outcome exception (module docstring)."""
        limit = self.timeout if timeout is None else timeout
        # a connect that has not completed by half the budget is given up as never sent
        budget = aiohttp.ClientTimeout(total=limit, sock_connect=limit / 2)
        unsure = OpIndeterminate if write else OpFailed
        try:
            async with self._http().post(self.url + path, json=body, timeout=budget) as resp:
                status, text = resp.status, await resp.text()
        except aiohttp.ClientConnectorError as exc:
            raise OpFailed(f"cannot connect to {self.node}: {exc}".strip()) from None
        except _CONNECT_TIMEOUT:
            raise OpFailed(f"connect to {self.node} timed out after {limit / 2:.3g}s") from None
        except TimeoutError:
            raise unsure(f"no answer from {self.node} within {limit:.3g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise unsure(f"{type(exc).__name__}: {exc}".strip()) from None
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {"error": text.strip()[:200]}
        if not isinstance(data, dict):
            data = {"error": f"unexpected answer {text[:200]!r}"}
        if status == 200 and "error" not in data:
            return data
        raise _error(status, data, write)

    async def get(self, key: str, *, r: int | None = None, pr: int | None = None,
                  timeout: float | None = None) -> ReadResult:
        """The key's value and its mod revision as context (OpFailed on any failure)."""
        body: dict[str, Any] = {"key": _b64(key.encode())}
        if self.reads == "serializable":
            body["serializable"] = True
        data = await self._call("/v3/kv/range", body, write=False, timeout=timeout)
        kvs = data.get("kvs") or ()
        if not kvs:
            return ReadResult((), None, False)
        kv = kvs[0]
        return ReadResult((decode_value(kv.get("value", "")),), str(kv.get("mod_revision", "")) or None, True)

    async def put(self, key: str, value: Any, context: str | None = None, *, w: int | None = None,
                  pw: int | None = None, timeout: float | None = None) -> WriteResult:
        """Unconditional write; context of the result is the store revision it created."""
        data = await self._call("/v3/kv/put", {"key": _b64(key.encode()), "value": encode_value(value)},
                                write=True, timeout=timeout)
        return WriteResult(_revision(data))

    async def delete(self, key: str, context: str | None = None, *, w: int | None = None,
                     pw: int | None = None, timeout: float | None = None) -> None:
        """Unconditional delete (a delete of a missing key is a successful no-op)."""
        await self._call("/v3/kv/deleterange", {"key": _b64(key.encode())}, write=True, timeout=timeout)

    async def cas(self, key: str, expected: Any, new: Any, *, timeout: float | None = None) -> bool:
        """Write ``new`` iff the stored value is ``expected`` (None: iff the key does not exist).

        True when the write happened, False when the compare failed (a definite, effect-free
        outcome: the history records it as a failed cas, not an error)."""
        k = _b64(key.encode())
        if expected is None:
            compare = {"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        else:
            compare = {"key": k, "target": "VALUE", "result": "EQUAL", "value": encode_value(expected)}
        body = {"compare": [compare], "success": [{"request_put": {"key": k, "value": encode_value(new)}}]}
        data = await self._call("/v3/kv/txn", body, write=True, timeout=timeout)
        return data.get("succeeded") is True

    async def health(self) -> bool:
        """True when the member answers ``GET /version`` (serving, with or without a leader)."""
        try:
            async with self._http().get(self.url + "/version") as resp:
                return resp.status == 200 and "etcdserver" in await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def peers_down(self) -> list[str]:
        """Always []: raft has no gossip failure detector whose view a start-up must wait for;
        a member without a quorum refuses requests, which the workload records."""
        return []

    async def pending_handoffs(self) -> int:
        """Always 0: raft keeps no hinted handoffs; an acknowledged write is already committed on
        a quorum, so there is nothing in transit for the final reads to wait for."""
        return 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def encode_value(value: Any) -> str:
    """A value as the gateway's base64 of its canonical JSON text (the same bytes for equal values)."""
    return _b64(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def decode_value(b64: str) -> Any:
    """The stored value; text that is not JSON (written by another client) comes back as a str."""
    raw = base64.b64decode(b64) if b64 else b""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _revision(data: dict[str, Any]) -> str | None:
    header = data.get("header")
    revision = header.get("revision") if isinstance(header, dict) else None
    return str(revision) if revision is not None else None


def _error(status: int, data: dict[str, Any], write: bool) -> Exception:
    """The outcome of a refused request: OpFailed unless a write may still have been applied."""
    code = data.get("code")
    message = str(data.get("error") or data.get("message") or f"HTTP {status}").splitlines()[0]
    reason = f"HTTP {status} {message}" + (f" (gRPC code {code})" if code is not None else "")
    if not write:
        return OpFailed(reason)
    if isinstance(code, int) and not isinstance(code, bool):
        definite = code in DEFINITE_CODES
    else:
        definite = 400 <= status < 500 and status != 408
    return OpFailed(reason) if definite else OpIndeterminate(reason)
