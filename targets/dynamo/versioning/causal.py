"""The dotted causal state shared by the ``vclock`` and ``dvv`` modes.

One key on one replica is a :class:`CausalObj`:

* ``siblings``: the versions kept, each tagged with the *dot* ``(node, counter)``
  of the write that made it (and that write's wall-clock time);
* ``removed``: per node, the set of dots known to be superseded, kept as
  integer ranges (a plain prefix ``1..n`` in ``dvv`` mode; ``vclock`` mode can
  leave holes, see :mod:`.vclock`).

A dot is either live (a sibling), removed, or unseen. Replica merge is the union
of both parts followed by dropping siblings whose dot is removed: a pure function
of two set unions, hence commutative, associative and idempotent, so replicas
converge whatever order read repair, handoff and anti-entropy deliver states in.
The object's *clock* (what a context carries) is, per node, the highest counter
seen and the time of that node's last event.

The two modes differ only in which dots a client write removes (its context):
``dvv`` removes exactly the dots the context covers; ``vclock`` follows Riak's
object-level vector clock rule (all or nothing).
"""
from __future__ import annotations

import bisect
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from targets.dynamo import bugs

from .context import MAX_COUNTER, ClockEntry, ContextError, decode_context, encode_context

Ranges = tuple[tuple[int, int], ...]


class _Tombstone:
    """The value of a delete. A singleton so ``value is TOMBSTONE`` works everywhere."""

    _instance: "_Tombstone | None" = None

    def __new__(cls) -> "_Tombstone":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "TOMBSTONE"

    def __reduce__(self) -> str:
        return "TOMBSTONE"


TOMBSTONE: Any = _Tombstone()


#: One encoder for every canonical form (``json.dumps`` with options builds a new one per call).
_canonical_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                     allow_nan=False).encode


def canonical_json(value: Any) -> str:
    """Deterministic JSON text of ``value`` (sorted keys, compact): the identity of a value."""
    try:
        return _canonical_encode(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"value is not JSON-serialisable: {exc}") from None


def value_key(value: Any) -> str:
    """Sort/identity key of a sibling value; tombstones sort apart from every JSON value."""
    return "\x00tombstone" if value is TOMBSTONE else canonical_json(value)


def check_write_args(value: Any, coordinator: str, now: float) -> float:
    """Validate a client write's value, coordinator and time (before touching any state)."""
    if not isinstance(coordinator, str) or not coordinator:
        raise ValueError("coordinator must be a non-empty node name")
    if value is not TOMBSTONE:
        canonical_json(value)
    now = float(now)
    if not math.isfinite(now):
        raise ValueError("now must be a finite timestamp")
    return now


#: The canonical *state* text is ASCII (``\uXXXX`` escapes), so a value holding a lone
#: surrogate, which the HTTP API accepts, still encodes to bytes (for SHA-256 and SQLite).
_state_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                                 allow_nan=False).encode


def encode_state(state_json: Any) -> tuple[str, bytes]:
    """An object's canonical JSON text (sorted keys, compact, ASCII) and its SHA-256.

    One encoding serves both: the text is what storage writes to disk and what travels
    between nodes, the hash is the digest replicas compare (read repair, digest reads,
    Merkle leaves)."""
    text = _state_encode(state_json)
    return text, hashlib.sha256(text.encode("ascii")).digest()


def encoded(obj: Any, to_json: Callable[[Any], Any]) -> tuple[str, bytes]:
    """:func:`encode_state` of an immutable state object, computed once and kept on the object.

    Why: one stored object's encoding is asked for several times (the merge that stores it,
    its row, its Merkle leaf, the next merge, digest reads, read repair) from either of the
    node's threads; a race only computes the same value twice."""
    known = obj.__dict__.get("_encoded")
    if known is None:
        known = encode_state(to_json(obj))
        object.__setattr__(obj, "_encoded", known)
    return known


def decoded(text: Any, from_json: Callable[[Any], Any]) -> Any:
    """The state object whose canonical text is ``text`` (a stored row, or a peer's message).

    The text is kept as the object's encoding, so a replica never encodes again what the
    coordinator encoded (texts come only from this code's :func:`encode_state`: a text that
    were not canonical would still decode to the right state, but its digest would differ
    from other replicas' until the next merge rewrote it). ``ValueError`` when malformed."""
    if type(text) is not str:
        raise ValueError(f"a state must be a JSON text, got {type(text).__name__}")
    obj = from_json(json.loads(text))
    object.__setattr__(obj, "_encoded", (text, hashlib.sha256(text.encode("ascii")).digest()))
    return obj


# ---------------------------------------------------------------- integer range sets


def ranges_union(a: Ranges, b: Ranges) -> Ranges:
    """Union of two sorted disjoint range sets, coalescing touching ranges."""
    if len(a) == 1 and len(b) == 1:          # the usual case (one prefix per node): no sort
        (lo1, hi1), (lo2, hi2) = a[0], b[0]
        if lo1 > lo2:
            lo1, hi1, lo2, hi2 = lo2, hi2, lo1, hi1
        if lo2 <= hi1 + 1:
            return ((lo1, max(hi1, hi2)),)
        return ((lo1, hi1), (lo2, hi2))
    out: list[list[int]] = []
    for lo, hi in sorted(a + b):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def ranges_contain(ranges: Ranges, n: int) -> bool:
    """Whether counter ``n`` lies in one of ``ranges``."""
    i = bisect.bisect_right(ranges, (n, math.inf)) - 1
    return i >= 0 and ranges[i][0] <= n <= ranges[i][1]


def prefix_minus(upto: int, holes: Iterable[int]) -> Ranges:
    """Counters ``1..upto`` except ``holes``, as ranges."""
    out: list[tuple[int, int]] = []
    lo = 1
    for h in sorted(set(h for h in holes if 1 <= h <= upto)):
        if h > lo:
            out.append((lo, h - 1))
        lo = h + 1
    if lo <= upto:
        out.append((lo, upto))
    return tuple(out)


# ---------------------------------------------------------------- the state


@dataclass(frozen=True)
class Sibling:
    """One kept version: the write's dot ``(node, counter)``, its time, and value or TOMBSTONE.

    Compared by canonical JSON of the value, so ``1``, ``1.0`` and ``true`` differ here
    exactly as they do in digests.
    """

    node: str
    counter: int
    ts: float
    value: Any = field(compare=False)
    vkey: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vkey", value_key(self.value))

    @property
    def is_tombstone(self) -> bool:
        return self.value is TOMBSTONE

    def sort_key(self) -> tuple:
        return (self.node, self.counter, self.ts, self.vkey)


@dataclass(frozen=True)
class Removed:
    """Dots of ``node`` known superseded, and the time of the latest of them."""

    node: str
    ranges: Ranges
    ts: float


@dataclass(frozen=True)
class CausalObj:
    """State of one key on one replica in ``vclock`` or ``dvv`` mode (immutable, canonical)."""

    mode: str
    siblings: tuple[Sibling, ...] = ()
    removed: tuple[Removed, ...] = ()


def build(mode: str, siblings: Iterable[Sibling],
          removed: Mapping[str, tuple[Ranges, float]]) -> CausalObj:
    """Canonical object from raw parts: drops removed siblings (folding their times into
    ``removed``), deduplicates, sorts. Every constructor goes through here, so equal states
    are equal objects."""
    rem = {node: [ranges, ts] for node, (ranges, ts) in removed.items()}
    kept: dict[tuple, Sibling] = {}
    by_node = bugs.active("siblings-keyed-by-node")     # bug zoo: one sibling per writing node
    for s in siblings:
        entry = rem.get(s.node)
        if entry is not None and ranges_contain(entry[0], s.counter):
            entry[1] = max(entry[1], s.ts)
            continue
        kept[(s.node,) if by_node else s.sort_key()] = s
    return CausalObj(
        mode=mode,
        siblings=tuple(kept[k] for k in sorted(kept)),
        removed=tuple(Removed(node, ranges, float(ts))
                      for node, (ranges, ts) in sorted(rem.items()) if ranges),
    )


def removed_map(obj: CausalObj) -> dict[str, tuple[Ranges, float]]:
    """``removed`` as a mutable-friendly ``{node: (ranges, ts)}``."""
    return {r.node: (r.ranges, r.ts) for r in obj.removed}


def add_removed(rem: dict[str, tuple[Ranges, float]], node: str, ranges: Ranges,
                ts: float) -> None:
    """Fold ``ranges`` of ``node`` (latest event at ``ts``) into ``rem`` in place."""
    if not ranges:
        return
    old_ranges, old_ts = rem.get(node, ((), float("-inf")))
    rem[node] = (ranges_union(old_ranges, ranges), max(old_ts, ts))


def clock_of(obj: CausalObj) -> dict[str, ClockEntry]:
    """Per node: highest counter seen (live or removed) and the time of its latest event.

    Computed once per object (objects are immutable) and shared: callers must not change it."""
    known = obj.__dict__.get("_clock")
    if known is not None:
        return known
    clock: dict[str, ClockEntry] = {}

    def bump(node: str, counter: int, ts: float) -> None:
        old = clock.get(node)
        if old is None:
            clock[node] = ClockEntry(node, counter, ts)
        else:
            clock[node] = ClockEntry(node, max(old.counter, counter), max(old.ts, ts))

    for r in obj.removed:
        bump(r.node, r.ranges[-1][1], r.ts)
    for s in obj.siblings:
        bump(s.node, s.counter, s.ts)
    object.__setattr__(obj, "_clock", clock)
    return clock


def descends(a: Mapping[str, ClockEntry], b: Mapping[str, ClockEntry]) -> bool:
    """Vector ``a`` >= vector ``b`` (``a`` has seen every event ``b`` has)."""
    return all(node in a and a[node].counter >= e.counter for node, e in b.items())


def merge(a: CausalObj, b: CausalObj) -> CausalObj:
    """Join of two replica states: union both parts, drop siblings removed on either side."""
    if a.mode != b.mode:
        raise ValueError(f"cannot merge a {a.mode!r} object with a {b.mode!r} object")
    if a == b:
        return a
    if bugs.active("merge-by-clock-size"):              # bug zoo: pick a side instead of joining
        return bugs.bigger_clock(a, b, clock_of)
    rem = removed_map(a)
    for r in b.removed:
        add_removed(rem, r.node, r.ranges, r.ts)
    joined = build(a.mode, a.siblings + b.siblings, rem)
    # An input equal to the join is handed back (usually b: a replica receiving a newer
    # state), so its remembered encoding, clock and context are reused, not recomputed.
    return b if joined == b else a if joined == a else joined


def new_dot_counter(local_clock: Mapping[str, ClockEntry], ctx: Mapping[str, ClockEntry],
                    coordinator: str, now: float) -> int:
    """Counter for the coordinator's next event on this key.

    Strictly above anything the coordinator or the context has seen, and at least the
    wall clock in microseconds (a hybrid logical clock). The clock floor is what keeps a
    node that lost the key (wiped, or reaped it after the tombstone grace) from reissuing
    a dot that other replicas still hold as superseded, which would silently drop the new
    write on the next merge; Riak 2 solves the same problem with per-key epochs.
    """
    mine = local_clock.get(coordinator)
    theirs = ctx.get(coordinator)
    if bugs.active("dot-from-context"):                 # bug zoo: the client's counter, plus one
        return theirs.counter + 1 if theirs else 1
    wall = now * 1_000_000
    floor = int(wall) if 0 < wall < MAX_COUNTER else 0
    return max(mine.counter + 1 if mine else 1, theirs.counter + 1 if theirs else 1, floor)


class CausalVersioning:
    """What ``vclock`` and ``dvv`` share: state, merge, reads, reaping, (de)serialisation.

    Subclasses say which dots a client write supersedes (:meth:`_superseded`) and may
    prune the result (:meth:`_after_write`).
    """

    mode = "causal"

    def empty(self) -> CausalObj:
        """The state of a key never written on this replica."""
        return CausalObj(self.mode)

    def _check(self, obj: Any) -> CausalObj:
        if not isinstance(obj, CausalObj) or obj.mode != self.mode:
            raise ValueError(f"expected a {self.mode} object, got {obj!r:.80}")
        return obj

    def decode(self, context: str | None) -> dict[str, ClockEntry]:
        """The version vector in ``context`` (empty for ``None``); :class:`ContextError` if bad."""
        return {} if context is None else decode_context(context, self.mode)

    def _superseded(self, local: CausalObj, ctx: Mapping[str, ClockEntry]
                    ) -> dict[str, Ranges]:
        raise NotImplementedError

    def _after_write(self, obj: CausalObj) -> CausalObj:
        return obj

    def write(self, local: CausalObj, context: str | None, value: Any, coordinator: str,
              now: float) -> CausalObj:
        """Apply a client write (or delete, ``value is TOMBSTONE``) coordinated here.

        The context is fully validated before anything is computed, so a bad one
        raises :class:`ContextError` and the caller's stored state is untouched.
        """
        self._check(local)
        ctx = self.decode(context)
        if bugs.active("write-supersedes-local"):       # bug zoo: the context widened to the local clock
            ctx = bugs.widen_context(ctx, clock_of(local))
        now = check_write_args(value, coordinator, now)
        counter = new_dot_counter(clock_of(local), ctx, coordinator, now)
        if counter > MAX_COUNTER:
            raise ContextError(f"counter for {coordinator!r} would pass {MAX_COUNTER}: "
                               "the context names an impossible event count")
        rem = removed_map(local)
        for node, ranges in self._superseded(local, ctx).items():
            add_removed(rem, node, ranges, ctx[node].ts)
        new = Sibling(coordinator, counter, now, value)
        return self._after_write(build(self.mode, local.siblings + (new,), rem))

    def merge(self, a: CausalObj, b: CausalObj) -> CausalObj:
        """Replica merge (commutative, associative, idempotent)."""
        return merge(self._check(a), self._check(b))

    def values(self, obj: CausalObj) -> list[Any]:
        """Live sibling values, oldest write first (ties by dot)."""
        self._check(obj)
        live = [s for s in obj.siblings if not s.is_tombstone]
        live.sort(key=lambda s: (s.ts, s.node, s.counter, s.vkey))
        return [s.value for s in live]

    def sibling_count(self, obj: CausalObj) -> int:
        """Versions kept, tombstones included (what Riak's sibling limits count)."""
        return len(self._check(obj).siblings)

    def is_deleted(self, obj: CausalObj) -> bool:
        """True when nothing live is left: every sibling a tombstone, or none at all."""
        return all(s.is_tombstone for s in self._check(obj).siblings)

    def clock(self, obj: CausalObj) -> dict[str, ClockEntry]:
        """The object's version vector (debug/admin views, tests)."""
        return dict(clock_of(self._check(obj)))

    def context(self, obj: CausalObj) -> str | None:
        """Opaque context covering every version in ``obj`` (``None`` for a never-written key);
        made once per object."""
        known = obj.__dict__.get("_context")
        if known is not None:
            return known
        clock = clock_of(self._check(obj))
        context = encode_context(self.mode, list(clock.values())) if clock else None
        object.__setattr__(obj, "_context", context)
        return context

    def reap(self, obj: CausalObj, now: float, grace: float) -> CausalObj | None:
        """Garbage-collect tombstones older than ``grace`` seconds.

        All siblings old tombstones (or none) -> ``None``: the key may be dropped.
        Otherwise old tombstone siblings beside live ones become removed dots (same
        reads, fewer siblings; a replica still holding them loses them on merge).
        """
        self._check(obj)
        old = [s for s in obj.siblings if s.is_tombstone and now - s.ts > grace]
        if len(old) == len(obj.siblings):
            return None
        if not old:
            return obj
        rem = removed_map(obj)
        for s in old:
            add_removed(rem, s.node, ((s.counter, s.counter),), s.ts)
        return build(self.mode, obj.siblings, rem)

    def digest(self, obj: CausalObj) -> bytes:
        """SHA-256 of the canonical JSON state: equal states, equal digests."""
        return self.encode(obj)[1]

    def encode(self, obj: CausalObj) -> tuple[str, bytes]:
        """Canonical JSON text of the state and its digest (:func:`encoded`: once per object)."""
        return encoded(self._check(obj), self.to_json)

    def from_text(self, text: str) -> CausalObj:
        """Inverse of :meth:`encode` (:func:`decoded`); ``ValueError`` when malformed."""
        return decoded(text, self.from_json)

    def to_json(self, obj: CausalObj) -> dict:
        """JSON form stored on disk and shipped between nodes."""
        self._check(obj)
        sibs = []
        for s in obj.siblings:
            row: dict[str, Any] = {"node": s.node, "counter": s.counter, "ts": s.ts}
            if s.is_tombstone:
                row["tombstone"] = True
            else:
                row["value"] = s.value
            sibs.append(row)
        rem = [{"node": r.node, "ranges": [list(x) for x in r.ranges], "ts": r.ts}
               for r in obj.removed]
        return {"mode": self.mode, "siblings": sibs, "removed": rem}

    def from_json(self, data: Any) -> CausalObj:
        """Inverse of :meth:`to_json`; ``ValueError`` on a malformed or other-mode object.

        Hot (every replicated write decodes one): the common well-formed case is checked with
        exact type tests first, and only a value that fails them goes through the slower
        :func:`_check_dot`, which says what is wrong."""
        try:
            if type(data) is not dict or data.get("mode") != self.mode:
                raise ValueError(f"not a {self.mode} object")
            sibs = []
            for row in data["siblings"]:
                node, counter, ts = row["node"], row["counter"], row["ts"]
                if not (type(node) is str and node and type(counter) is int and 1 <= counter <= MAX_COUNTER
                        and (type(ts) is float or type(ts) is int) and math.isfinite(ts)):
                    _check_dot(node, counter, ts)
                if row.get("tombstone") is True:
                    if "value" in row:
                        raise ValueError("tombstone sibling with a value")
                    value = TOMBSTONE
                else:
                    value = row["value"]
                sibs.append(Sibling(node, counter, float(ts), value))
            rem: dict[str, tuple[Ranges, float]] = {}
            for row in data["removed"]:
                node, ts = row["node"], row["ts"]
                ranges = tuple((lo, hi) for lo, hi in row["ranges"])
                if not (type(node) is str and node and (type(ts) is float or type(ts) is int) and math.isfinite(ts)):
                    _check_dot(node, 1, ts)
                for lo, hi in ranges:
                    if not (type(lo) is int and type(hi) is int and 1 <= lo <= hi <= MAX_COUNTER):
                        _check_dot(node, lo, ts)
                        _check_dot(node, hi, ts)
                        raise ValueError("empty range")
                if len(ranges) == 1 and node not in rem:
                    rem[node] = (ranges, float(ts))         # already canonical: one range
                else:
                    add_removed(rem, node, ranges_union((), ranges), float(ts))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed {self.mode} object: {exc!r}") from None
        return build(self.mode, sibs, rem)


def _check_dot(node: Any, counter: Any, ts: Any) -> None:
    if not isinstance(node, str) or not node:
        raise ValueError("bad node name in object")
    if isinstance(counter, bool) or not isinstance(counter, int) or not (
            1 <= counter <= MAX_COUNTER):
        raise ValueError("bad counter in object")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise ValueError("bad timestamp in object")


__all__ = ["TOMBSTONE", "ContextError", "CausalObj", "encoded", "decoded", "Sibling", "Removed", "CausalVersioning",
           "clock_of", "descends", "merge", "build"]
