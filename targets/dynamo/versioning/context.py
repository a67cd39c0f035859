"""The opaque causal context a client gets on a read and hands back on a write.

Encoding: ``base64url(compact JSON payload) + "." + checksum`` where the checksum
is the first 6 bytes of SHA-256 of the payload bytes, base64url. The payload is
``{"m": mode, "v": [[node, counter, timestamp], ...]}`` (entries sorted by node):
the version vector of what the reader saw. The checksum catches truncation and
hand edits; it is not a MAC (clients are trusted not to forge causality, as in
Riak). Anything that does not decode to a well-formed payload of the expected
mode raises :class:`ContextError`, before any stored data is touched.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass

MAX_CONTEXT_CHARS = 64 * 1024
MAX_ENTRIES = 1024
MAX_COUNTER = (1 << 53) - 1   # exact in every JSON implementation (JavaScript clients too)
MAX_NODE_CHARS = 256
#: Contexts decoded (or encoded) lately -> their vector: decoding is a pure function of the
#: string, and a write usually hands back the context its read just got from this node,
#: milliseconds later. Kept small: every entry is a handful of objects the garbage collector
#: must traverse, and 8,192 of them made young collections of ~40 ms (p99.9 spikes).
DECODED_MEMO_MAX = 1024
_decoded: dict[tuple[str, str], dict[str, ClockEntry]] = {}


class ContextError(ValueError):
    """A context that is malformed, tampered with, or made by another versioning mode."""


@dataclass(frozen=True, slots=True)
class ClockEntry:
    """One vector entry: ``node`` has issued events up to ``counter``; the last at ``ts``."""

    node: str
    counter: int
    ts: float


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode((text + pad).encode("ascii"))


def _checksum(payload: bytes) -> str:
    return _b64encode(hashlib.sha256(payload).digest()[:6])


#: One encoder for every payload (``json.dumps`` with options builds a new one per call).
_payload_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


def encode_context(mode: str, entries: list[ClockEntry] | tuple[ClockEntry, ...]) -> str:
    """Pack ``mode`` and a version vector into the opaque context string."""
    ordered = sorted(entries, key=lambda e: e.node)
    rows = [[e.node, e.counter, e.ts] for e in ordered]
    payload = _payload_encode({"m": mode, "v": rows}).encode("ascii")
    context = f"{_b64encode(payload)}.{_checksum(payload)}"
    vector = {e.node: e for e in ordered}
    if (len(vector) == len(ordered) <= MAX_ENTRIES and len(context) <= MAX_CONTEXT_CHARS
            and all(type(e.node) is str and 0 < len(e.node) <= MAX_NODE_CHARS and type(e.counter) is int
                    and 1 <= e.counter <= MAX_COUNTER and type(e.ts) is float and math.isfinite(e.ts)
                    for e in ordered)):
        _remember(context, mode, vector)      # exactly what decoding it would return
    return context


def _remember(context: str, mode: str, vector: dict[str, ClockEntry]) -> None:
    if len(_decoded) >= DECODED_MEMO_MAX:
        _decoded.clear()
    _decoded[(context, mode)] = vector


def decode_context(context: object, mode: str) -> dict[str, ClockEntry]:
    """Unpack a context made for ``mode``; :class:`ContextError` on anything else.

    Returns the vector as ``{node: ClockEntry}`` (the caller's own dict).
    """
    if not isinstance(context, str):
        raise ContextError(f"context must be a string, got {type(context).__name__}")
    known = _decoded.get((context, mode))
    if known is not None:
        return dict(known)
    if len(context) > MAX_CONTEXT_CHARS:
        raise ContextError(f"context too long ({len(context)} > {MAX_CONTEXT_CHARS} chars)")
    body, sep, check = context.partition(".")
    if not sep or not body or not check:
        raise ContextError("context is not of the form <payload>.<checksum>")
    try:
        payload = _b64decode(body)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ContextError("context payload is not base64url") from None
    if _checksum(payload) != check:
        raise ContextError("context checksum mismatch (truncated or tampered)")
    try:
        data = json.loads(payload.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ContextError("context payload is not JSON") from None
    if not isinstance(data, dict) or set(data) != {"m", "v"}:
        raise ContextError("context payload has the wrong shape")
    if data["m"] != mode:
        raise ContextError(f"context was made in {data['m']!r} mode, this store runs {mode!r}")
    rows = data["v"]
    if not isinstance(rows, list) or len(rows) > MAX_ENTRIES:
        raise ContextError("context vector is not a list of at most "
                           f"{MAX_ENTRIES} entries")
    out: dict[str, ClockEntry] = {}
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3):
            raise ContextError("context vector entry is not [node, counter, ts]")
        node, counter, ts = row
        if not isinstance(node, str) or not node or len(node) > MAX_NODE_CHARS:
            raise ContextError("context vector entry has a bad node name")
        if isinstance(counter, bool) or not isinstance(counter, int) or not (
                1 <= counter <= MAX_COUNTER):
            raise ContextError(f"context counter for {node!r} out of range")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
            raise ContextError(f"context timestamp for {node!r} is not a finite number")
        if node in out:
            raise ContextError(f"context names node {node!r} twice")
        out[node] = ClockEntry(node, counter, float(ts))
    _remember(context, mode, dict(out))
    return out
