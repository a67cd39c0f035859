"""The request coordinator: quorum reads and writes over the preference list.

Any node coordinates. For a key, the replicas are the first N *healthy* nodes
of the ring walk: each primary that gossip (or a failed call) says is down is
replaced by the next healthy fallback, which stores the object with a hint
naming that primary (sloppy quorum, hinted handoff). A write is applied
locally first (the coordinator must be a replica: if it is not, the request is
forwarded to the first replica), then sent to the other replicas; it is
acknowledged once ``w`` replicas (coordinator included) committed it and
``pw`` of those are primaries. A replica that fails mid-request is replaced by
the next healthy fallback. With ``fsync="one"`` the coordinator asks one replica
per write, the first other than itself (or whoever stands in for it), for the
*durable write* (Dynamo, section 6.1): only that replica fsyncs, and the ack does
not wait for it unless ``w`` does. A read waits for ``r`` replies (``pr`` primaries),
merges them, answers, then keeps listening until the timeout and pushes the
merged object to every replica whose copy was stale (read repair).

Requests that cannot reach their quorum raise :class:`QuorumFailed` with the
counts the client needs to classify the outcome (``stored > 0`` = maybe).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from targets.dynamo import bugs
from targets.dynamo.transport import PeerUnreachable

log = logging.getLogger("dynamo.coordinator")


@dataclass(frozen=True)
class Replica:
    """One replica chosen for a request; ``hint_for`` names the primary a fallback stands in for."""

    node: str
    hint_for: str | None = None

    @property
    def is_primary(self) -> bool:
        return self.hint_for is None


class QuorumFailed(Exception):
    """The request could not reach its quorum before its timeout."""

    def __init__(self, kind: str, needed: int, replied: int, stored: int | None = None,
                 needed_primary: int = 0) -> None:
        what = "write" if kind == "write" else "read"
        super().__init__(f"{what} quorum not reached: needed {needed}, "
                         f"{'stored ' + str(stored) if stored is not None else 'replied ' + str(replied)}")
        self.kind = kind
        self.needed = needed
        self.replied = replied
        self.stored = stored
        self.needed_primary = needed_primary

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": str(self), "needed": self.needed, "replied": self.replied}
        if self.stored is not None:
            body["stored"] = self.stored
        if self.needed_primary:
            body["needed_primary"] = self.needed_primary
        return body


class TooManySiblings(Exception):
    """The write would leave more than ``sibling_max`` siblings: refused (HTTP 507)."""


class BadRequest(Exception):
    """Client input the node refuses before storing anything (HTTP 400)."""


def plan_replicas(walk: Sequence[str], n: int, healthy: Callable[[str], bool]) -> list[Replica]:
    """The first N healthy nodes for a key: healthy primaries, plus one fallback per down primary.

    A down primary with no healthy fallback left is still tried: a failed call costs a timeout at
    most, while skipping it would make the quorum unreachable for sure."""
    fallbacks = iter([node for node in walk[n:] if healthy(node)])
    plan = []
    for primary in walk[:n]:
        if healthy(primary):
            plan.append(Replica(primary))
        else:
            stand_in = next(fallbacks, None)
            # no healthy stand-in left: try the primary anyway (it may be back before gossip knows)
            plan.append(Replica(primary) if stand_in is None else Replica(stand_in, primary))
    return plan


def durable_replica(me: Replica, others: Sequence[Replica]) -> Replica:
    """The replica asked for a write's durable write under ``fsync="one"``: the first other
    one, so the coordinator's own commit (awaited before the fan-out) never waits on a disk."""
    return others[0] if others else me


def stands_for(replica: Replica, chosen: Replica) -> bool:
    """Whether ``replica`` is ``chosen`` or a fallback that replaced it mid-request."""
    return replica.node == chosen.node or replica.hint_for == (chosen.hint_for or chosen.node)


def next_fallback(walk: Sequence[str], n: int, used: Iterable[str], failed: Replica,
                  healthy: Callable[[str], bool]) -> Replica | None:
    """A replacement for a replica that failed mid-request (None when the walk is exhausted)."""
    taken = set(used)
    for node in walk[n:]:
        if node not in taken and healthy(node):
            return Replica(node, failed.hint_for or failed.node)
    return None


@dataclass
class Tally:
    """Counts for one request; ``done`` once the quorum is met."""

    need: int
    need_primary: int
    replied: int = 0
    ok: int = 0
    ok_primary: int = 0
    results: list[tuple[Replica, Any]] = field(default_factory=list)

    def success(self, replica: Replica, result: Any = None) -> None:
        self.replied += 1
        self.ok += 1
        self.ok_primary += replica.is_primary
        self.results.append((replica, result))

    def failure(self, exc: BaseException | None) -> None:
        """A replica failed: it counts as replied only if it sent an (error) answer."""
        if getattr(exc, "answered", False):
            self.replied += 1

    @property
    def met(self) -> bool:
        return self.ok >= self.need and self.ok_primary >= self.need_primary


class Done:
    """A one-shot signal a request waits on (set at quorum, or by its fan-out's deadline)."""

    __slots__ = ("_fut",)

    def __init__(self) -> None:
        self._fut: asyncio.Future = asyncio.get_running_loop().create_future()

    def set(self) -> None:
        if not self._fut.done():
            self._fut.set_result(None)

    async def wait(self) -> None:
        await self._fut


class FanOut:
    """One request's replica calls, run by callbacks (no task per call, no ``asyncio.wait``).

    Starts ``call(replica, timeout)`` (a future) for each target; a success counts in the
    tally (``decode(replica, result)`` first), a failure is replaced by the next healthy
    fallback. ``done`` is set at quorum, and at the latest when every call has settled or
    the deadline passed (pending calls are then cancelled); ``on_settled`` runs at that end.

    While a healthy fallback is left, a call gets half of the remaining time, so that a
    replica cut off by a partition (whose calls time out rather than fail) can still be
    replaced by a hinted fallback before the request's own deadline."""

    def __init__(self, coord: Coordinator, walk: list[str], plan: list[Replica],
                 call: Callable[[Replica, float], asyncio.Future], tally: Tally, done: Done, deadline: float,
                 decode: Callable[[Replica, Any], Any] | None = None,
                 on_settled: Callable[[], None] | None = None) -> None:
        self._walk = walk
        self._n = coord.cfg.n
        self._is_up = coord.node.members.is_up
        self._used = {r.node for r in plan} | {coord.node.name}
        self._call = call
        self._decode = decode
        self._tally = tally
        self._done = done
        self._deadline = deadline
        self._on_settled = on_settled
        self._pending: dict[asyncio.Future, Replica] = {}
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._over = False

    def start(self, targets: Iterable[Replica]) -> None:
        for replica in targets:
            self._start(replica)
        if not self._pending:
            self._finish()
        elif not self._over:
            self._timer = self._loop.call_at(self._deadline, self._finish)

    def _start(self, replica: Replica) -> None:
        remaining = max(0.01, self._deadline - self._loop.time())
        spare = next_fallback(self._walk, self._n, self._used, replica, self._is_up) is not None
        fut = self._call(replica, remaining / 2 if spare else remaining)
        self._pending[fut] = replica
        fut.add_done_callback(self._settled)

    def _settled(self, fut: asyncio.Future) -> None:
        replica = self._pending.pop(fut, None)
        if fut.cancelled():
            return
        exc = fut.exception()
        if replica is None or self._over:
            return
        tally = self._tally
        if exc is None:
            result = fut.result()
            tally.success(replica, result if self._decode is None else self._decode(replica, result))
        else:
            tally.failure(exc)
            stand_in = next_fallback(self._walk, self._n, self._used, replica, self._is_up)
            if stand_in is not None:
                self._used.add(stand_in.node)
                self._start(stand_in)
        if tally.met:
            self._done.set()
        if not self._pending:
            self._finish()

    def _finish(self) -> None:
        if self._over:
            return
        self._over = True
        if self._timer is not None:
            self._timer.cancel()
        pending, self._pending = self._pending, {}
        for fut in pending:
            fut.cancel()
        self._done.set()
        if self._on_settled is not None:
            self._on_settled()


class Coordinator:
    """Runs client requests for one node (see the module docstring)."""

    def __init__(self, node: Any) -> None:
        self.node = node              # targets.dynamo.server.NodeState
        self.cfg = node.cfg
        self.v = node.versioning
        self.stats = node.stats

    # -- helpers ---------------------------------------------------------------------------
    def plan(self, key: str) -> tuple[list[str], list[Replica]]:
        walk = self.node.ring.walk(key)
        return walk, plan_replicas(walk, self.cfg.n, self.node.members.is_up)

    def _remote(self, replica: Replica, path: str, payload: dict, timeout: float) -> asyncio.Future:
        """A peer call as a future; its outcome also tells gossip whether the peer answered."""
        fut = self.node.transport.request(replica.node, path, payload, timeout)
        fut.add_done_callback(functools.partial(self._heard, replica.node))
        return fut

    def _heard(self, node: str, fut: asyncio.Future) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self.node.members.record_ok(node)
        elif isinstance(exc, PeerUnreachable):
            self.node.members.record_failure(node, exc.reason)

    # -- writes ----------------------------------------------------------------------------
    async def write(self, key: str, value: Any, context: str | None, *, w: int, pw: int,
                    timeout: float, forwarded: bool = False) -> dict[str, Any]:
        """Coordinate a PUT (or a DELETE when value is TOMBSTONE); returns the response body."""
        walk, plan = self.plan(key)
        me = next((r for r in plan if r.node == self.node.name), None)
        if me is None and not forwarded and plan:
            return await self._forward(plan[0].node, key, value, context, w, pw, timeout)
        if me is None:
            # forwarded to us, but our view does not make us a replica: store as a stand-in with a
            # hint (handed to a primary later), not counted as a primary for pw
            primary = next((p for p in walk[:self.cfg.n] if p != self.node.name), None)
            me = Replica(self.node.name, primary)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        others = [r for r in plan if r.node != self.node.name]
        durable = durable_replica(me, others) if self.cfg.fsync == "one" else None
        new_obj = await self._write_local(key, value, context, me, durable=me == durable)
        tally = Tally(need=w, need_primary=pw)
        tally.success(me)
        if bugs.active("quorum-counts-self-twice"):     # bug zoo: the own commit counted twice
            tally.success(me)
        payload = {"key": key, "state": self.v.encode(new_obj)[0]}
        done = Done()
        if tally.met:
            done.set()

        def send(replica: Replica, timeout: float) -> asyncio.Future:
            body = dict(payload, hint_for=replica.hint_for)
            if durable is not None and stands_for(replica, durable):
                body["durable"] = True
            return self._remote(replica, "/internal/put", body, timeout)

        FanOut(self, walk, plan, send, tally, done, deadline).start(others)   # runs on past the reply
        await done.wait()
        if not tally.met:
            self.stats["write_quorum_failed"] += 1
            raise QuorumFailed("write", w, tally.replied, tally.ok, pw)
        self.stats["writes_ok"] += 1
        return {"context": self.v.context(new_obj)}

    async def _write_local(self, key: str, value: Any, context: str | None, me: Replica,
                           durable: bool = False) -> Any:
        v, cfg, name = self.v, self.cfg, self.node.name

        def job(txn: Any) -> Any:
            old = txn.get(key)
            new = v.write(old if old is not None else v.empty(), context, value, name, time.time())
            count = v.sibling_count(new)
            if count > cfg.sibling_max:
                raise TooManySiblings(f"write refused: {count} siblings > sibling-max {cfg.sibling_max}")
            if count > cfg.sibling_warn:
                log.warning("key %r has %d siblings (> sibling-warn %d)", key, count, cfg.sibling_warn)
            txn.put(key, new)
            if me.hint_for is not None:
                txn.add_hint(me.hint_for, key)
            return new
        return await self.node.storage.run(job, durable)

    async def _forward(self, target: str, key: str, value: Any, context: str | None, w: int, pw: int,
                       timeout: float) -> dict[str, Any]:
        from targets.dynamo.versioning import TOMBSTONE
        self.stats["forwarded"] += 1
        body = {"key": key, "delete": value is TOMBSTONE, "value": None if value is TOMBSTONE else value,
                "context": context, "w": w, "pw": pw, "timeout": timeout}
        try:
            reply = await self._remote(Replica(target), "/internal/coordinate", body, timeout + 0.5)
        except PeerUnreachable as exc:
            # A refused or fault-dropped call never reached the replica (stored 0 = fail); one that
            # timed out, or whose connection broke after it was sent, may have stored the write
            # there, so report it as maybe stored (the client records info).
            maybe = 1 if exc.maybe_delivered else 0
            raise QuorumFailed("write", w, 0, maybe, pw) from None
        status, answer = reply["status"], reply["body"]
        if status == 200:
            return answer
        if status == 503:
            raise QuorumFailed("write", answer.get("needed", w), answer.get("replied", 0),
                               answer.get("stored", 0), pw)
        if status == 507:
            raise TooManySiblings(answer.get("error", "too many siblings"))
        raise BadRequest(answer.get("error", f"forwarded request failed with {status}"))

    # -- reads -----------------------------------------------------------------------------
    async def read(self, key: str, *, r: int, pr: int, timeout: float) -> tuple[Any, int]:
        """Coordinate a GET: the merged object (None when no replica has it) and replies counted.

        Digest reads: when this node's own copy is in its cache, the request carries its digest
        and a replica holding the same state answers {"same": true} instead of the object (no
        encoding, shipping or decoding of an object the coordinator already has)."""
        walk, plan = self.plan(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        tally = Tally(need=r, need_primary=pr)
        done = Done()
        storage = self.node.storage
        hit, mine = storage.get_cached(key)
        ask: dict[str, Any] = {"key": key}
        if hit and mine is not None:
            ask["digest"] = self.v.digest(mine).hex()

        def fetch(replica: Replica, timeout: float) -> asyncio.Future:
            if replica.node != self.node.name:
                return self._remote(replica, "/internal/get", ask, timeout)
            if hit:
                fut = loop.create_future()
                fut.set_result(mine)
                return fut
            return asyncio.ensure_future(storage.get(key))

        def decode(replica: Replica, reply: Any) -> Any:
            if replica.node == self.node.name:
                return reply
            if reply.get("same") is True and "digest" in ask:
                return mine
            text = reply.get("state")
            return None if text is None else self.v.from_text(text)

        FanOut(self, walk, plan, fetch, tally, done, deadline, decode,
               on_settled=lambda: self._read_repair(key, tally.results)).start(plan)
        await done.wait()
        if not tally.met:
            self.stats["read_quorum_failed"] += 1
            raise QuorumFailed("read", r, tally.replied, None, pr)
        self.stats["reads_ok"] += 1
        if bugs.active("read-returns-first-reply"):     # bug zoo: the first reply, not the merge
            return tally.results[0][1], tally.ok
        return self.merge_all(obj for _, obj in tally.results), tally.ok

    def merge_all(self, objs: Iterable[Any]) -> Any:
        merged = None
        for obj in objs:
            if obj is not None:
                merged = obj if merged is None else self.v.merge(merged, obj)
        return merged

    def _read_repair(self, key: str, results: list[tuple[Replica, Any]]) -> None:
        """Once every read reply is in: push the merge to the replicas whose copy differs from it."""
        merged = self.merge_all(obj for _, obj in results)
        if merged is None:
            return
        if bugs.active("read-repair-backwards"):        # bug zoo: spread the stale value instead
            merged = bugs.restamp_stale(self.v, self.node.name, merged, results)
        digest = self.v.digest
        want = digest(merged)
        stale = [rep for rep, obj in results if obj is None or (obj is not merged and digest(obj) != want)]
        if not stale:
            return
        payload = {"key": key, "state": self.v.encode(merged)[0]}
        for replica in stale:
            self.stats["read_repairs"] += 1
            if replica.node == self.node.name:
                self.node.background(self.node.storage.merge_in(key, merged, replica.hint_for))
            else:
                timeout = max(self.cfg.request_timeout, 0.1)   # held by background(): may be a task
                self.node.background(self._remote(replica, "/internal/put", dict(payload, hint_for=replica.hint_for),
                                                  timeout))
