"""The replica snapshot a run takes after heal and settle, for the convergence checker.

Why here, between settle and the final reads: the final reads ask every replica (r = N) and the
store repairs the replicas that differ, so afterwards no divergence is left to see. The snapshot
asks each node for its *own* stored copy of every final key through the target's admin
(``NodeAdmin.replica_snapshot``, the ``replica-snapshot`` capability: no coordination, no read
repair), every ``poll`` seconds until the copies agree (:func:`checkers.convergence.examine`) or
``timeout`` seconds pass. Dynamo only promises agreement *eventually* (anti-entropy runs every few
seconds), so one look right after settle would call a store wrong that is merely not done yet;
how long agreement took is measured instead, and only what is still wrong at the end counts.

The first and the last round are stored in the run folder (``replicas.json``) so that
``dynharness check`` re-judges the stored run exactly as the run did. A target without the
capability gets a file that says so, and the runner does not run the checker (``harness.runs``).
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from checkers.convergence import REPLICAS, examine

#: The capability a target declares when its NodeAdmin has ``replica_snapshot``.
CAPABILITY = "replica-snapshot"


def wanted(checker_names: Sequence[str]) -> bool:
    """Whether any of these checkers needs the snapshot (its class lists the capability in ``needs``)."""
    from checkers import registry

    return any(CAPABILITY in registry.needs(n) for n in checker_names)


async def snapshot_round(admin: Any, nodes: Sequence[Any], keys: Sequence[str], timeout: float) -> dict[str, Any]:
    """Every node's own copy of ``keys``, key by key: ``{"keys": {key: {"preference", "replicas"}},
    "errors": {node: why}}`` (a node that did not answer has no entry under ``replicas``)."""
    async def ask(node: Any) -> Any:
        try:
            return await asyncio.to_thread(admin.replica_snapshot, node, list(keys), timeout)
        except Exception as e:  # noqa: BLE001 - a node that cannot answer is recorded, not fatal
            return e
    answers = await asyncio.gather(*(ask(n) for n in nodes))
    out: dict[str, Any] = {k: {"preference": [], "replicas": {}} for k in keys}
    errors: dict[str, str] = {}
    for node, answer in zip(nodes, answers):
        if isinstance(answer, Exception):
            errors[node.name] = f"{type(answer).__name__}: {answer}"
            continue
        for key, copy in answer.items():
            entry = out.setdefault(key, {"preference": [], "replicas": {}})
            copy = dict(copy)
            preference = copy.pop("preference", None)
            entry["preference"] = entry["preference"] or list(preference or ())
            entry["replicas"][node.name] = copy
    return {"keys": out, "errors": errors}


async def take_snapshot(admin: Any, nodes: Sequence[Any], keys: Sequence[str], timeout: float,
                        now_ns: Callable[[], int], poll: float = 0.5, request_timeout: float = 5.0) -> dict[str, Any]:
    """Rounds until every key's replicas agree or ``timeout`` s passed: the ``replicas.json`` object.

    ``now_ns`` is the history's clock, so a round's ``t_ns`` lines up with the ops."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    first: dict[str, Any] | None = None
    rounds, agreed_after = 0, None
    while True:
        stamp = now_ns()
        current = await snapshot_round(admin, nodes, keys, request_timeout)
        rounds += 1
        current.update(t_s=round(loop.time() - t0, 3), t_ns=stamp)
        first = first or current
        if examine(current).agreed:
            agreed_after = current["t_s"]
            break
        if loop.time() - t0 >= timeout:
            break
        await asyncio.sleep(poll)
    return {"taken": True, "timeout_s": timeout, "waited_s": round(loop.time() - t0, 3), "rounds": rounds,
            "agreed_after_s": agreed_after, "first": first, "last": current}


def not_taken(why: str) -> dict[str, Any]:
    """The ``replicas.json`` object of a run that took no snapshot, saying why."""
    return {"taken": False, "reason": why}


def write(run_dir: Path, snapshot: dict[str, Any]) -> None:
    """Store the snapshot with the run (``replicas.json``)."""
    (run_dir / REPLICAS).write_text(json.dumps(snapshot, separators=(",", ":"), default=str))


def read(run_dir: Path | None) -> dict[str, Any] | None:
    """The stored snapshot of a run folder (None: none stored, or unreadable)."""
    if run_dir is None:
        return None
    try:
        obj = json.loads((run_dir / REPLICAS).read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None
