"""``POST /admin/replicas``: what this one node stores for some keys, read from its own storage.

The harness's convergence checker needs each replica's copy *as it is*: a coordinated read (even
at r = N) merges the replies and then repairs the replicas that differ, so it can neither show a
divergence nor leave one in place for the next look. This endpoint reads the node's own storage
only: no peer is asked, nothing is merged, and nothing is written (no read repair), so asking
every node in turn is a snapshot that does not change what it observes.

Per key it answers the *live* versions as opaque ids (``node:counter`` dots in vclock/dvv mode,
``ts@node`` stamps in lww mode), their values, how many tombstones the copy keeps, and the key's
preference list (the N primaries; every node computes the same static ring). Tombstones are
counted apart from the version ids on purpose: a replica that still keeps a tombstone and one
that already reaped it (after ``tombstone_grace``) hold the same data.
"""
from __future__ import annotations

import json
from typing import Any

from targets.dynamo.httpserver import Request, Response
from targets.dynamo.httpserver import json_response as reply

#: Keys one request may name (the harness batches; a cart run has tens, a session run hundreds).
MAX_KEYS = 2000


def copy_of(versioning: Any, obj: Any) -> dict[str, Any]:
    """One replica's copy of a key: live version ids (sorted), their values, tombstones kept."""
    state = versioning.to_json(obj)
    rows = state.get("siblings") if "siblings" in state else [state.get("version")]
    live, values, tombstones = [], [], 0
    for row in sorted((r for r in rows if r), key=_version_id):
        if row.get("tombstone"):
            tombstones += 1
            continue
        live.append(_version_id(row))
        values.append(row.get("value"))
    return {"held": True, "versions": live, "values": values, "tombstones": tombstones}


def _version_id(row: dict[str, Any]) -> str:
    """A stored version's identity: its dot (vclock/dvv) or its stamp (lww, no counter)."""
    if "counter" in row:
        return f"{row['node']}:{row['counter']}"
    return f"{row['ts']!r}@{row['node']}"


async def admin_replicas(state: Any, request: Request) -> Response:
    """``{"keys": [...]}`` -> ``{"node", "keys": {key: copy (held false when absent) + preference}}``."""
    try:
        body = json.loads(await request.read() or b"{}")
        keys = body["keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ValueError("keys must be a list of non-empty strings")
        if len(keys) > MAX_KEYS:
            raise ValueError(f"at most {MAX_KEYS} keys per request, got {len(keys)}")
    except (ValueError, KeyError, TypeError) as exc:
        return reply(400, {"error": f"bad replicas request: {str(exc).splitlines()[0]}"})
    v, n = state.versioning, state.cfg.n
    stored = await state.storage.objects(keys)
    out: dict[str, Any] = {}
    for key in keys:
        obj = stored.get(key)
        copy = copy_of(v, obj) if obj is not None else {"held": False, "versions": [], "values": [],
                                                        "tombstones": 0}
        out[key] = {**copy, "preference": state.ring.preference_list(key, n)}
    return reply(200, {"node": state.name, "keys": out})
