"""The Wing & Gong / Lowe linearizability search, as Porcupine does it.

One key's ops become a doubly linked list of *entries*, a call entry and a
return entry per op, in real-time order (calls before returns at equal
times, so ops that touch are concurrent). The search walks the list from
the head: at a call entry it tries to *linearize* that op next (step the
model); if the model accepts and the pair (set of linearized ops, state) has
not been seen before, the op's two entries are *lifted* out of the list, the
choice is pushed on a stack and the walk restarts at the head. Reaching a
return entry means the op it closes should already be linearized: dead end,
so pop the last choice, *unlift* it (re-link its entries, O(1)) and try the
entry after it. The history is linearizable when every op that completed
``ok`` is lifted; it is not when the stack is empty at a dead end.

Indeterminate ops (``info``/never completed) have their return at +infinity
and need not be linearized at all (they may never have happened). The
search tries them only after the determinate ops at each point, and the
cache *subsumes*: having failed from (ok ops done, info ops done, state),
any pair with the same ok ops and state and more info ops done fails too
(it has fewer options), so those are pruned. Without info ops the cache is
a plain set of (bitset, state).

Three more prunings, each sound by an exchange argument (and each checked
against the brute-force oracle in the tests): at each point reads are tried
first, and a read that fits is *committed* to (if any linearization exists,
one starts with it, so its siblings need no trying); among *alike* ok ops
(equal input and output) only the earliest-returning available one is
tried; and the model's optional ``resolve`` hook may drop or pin
indeterminate ops before the search (see ``model.py``).

Bitsets are Python ints; the linked list is two int arrays; the search is a
generator that yields every ``quantum`` steps so a scheduler can interleave
many keys and stop at a deadline (see ``checker.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Generator, Sequence

from checkers.linearizability.model import Model, Operation

VALID, INVALID, UNKNOWN_VERDICT = "valid", "invalid", "unknown"

#: Above this many ok ops, cached bitsets are stored as (count of low ones, the rest).
COMPACT_KEYS_ABOVE = 128

#: Default cap on cached (linearized set, state) pairs per key (~150 bytes each).
DEFAULT_MAX_CACHE = 1_000_000


@dataclass
class SearchOutcome:
    """How one key's search ended.

    ``longest`` is the longest partial linearization seen (positions into
    the op list, in linearization order) and ``longest_state`` the model
    state after it; ``blocked`` the op whose return was reached there
    without it being linearizable (the first op that "could not fit").
    """

    verdict: str
    steps: int = 0
    cache_peak: int = 0
    reason: str | None = None
    linearization: tuple[int, ...] = ()
    longest: tuple[int, ...] = ()
    longest_state: Any = None
    blocked: int | None = None


def search(model: Model, ops: Sequence[Operation], *, max_cache: int = DEFAULT_MAX_CACHE,
           quantum: int = 2000) -> Generator[tuple[int, int, int], None, SearchOutcome]:
    """Search for a linearization of ``ops``; yields (steps, cached pairs, depth) every ``quantum`` steps.

    ``depth``: the most ops (ok and info) linearized at once so far, sampled at the yields and the
    dead ends: how far an undecided search got, for a person reading why it is unknown.

    Drive it with ``next()`` until ``StopIteration``, whose ``value`` is the
    :class:`SearchOutcome` (``unknown`` only when the cache cap is hit; a
    time limit is the driver's business: it just stops calling ``next``).
    """
    state = model.init()
    original = ops
    kept, ops = _prepare(model, ops)
    n = len(ops)
    if n == 0:
        return SearchOutcome(VALID)
    # --- the entry list -------------------------------------------------
    events = []
    for i, op in enumerate(ops):
        if op.ret < op.call:
            raise ValueError(f"operation {op.id!r} returns ({op.ret}) before it is called ({op.call})")
        events.append((op.call, 0, i))
        events.append((op.ret, 1, i))
    events.sort(key=lambda ev: (ev[0], ev[1]))
    size = 2 * n + 2                      # 0 = head, 1..2n = entries, 2n+1 = tail
    tail = size - 1
    nxt = list(range(1, size + 1))
    nxt[tail] = tail
    prv = list(range(-1, size - 1))
    op_of = [-1] * size                   # call entry -> op position; -1 for return entries and sentinels
    ret_entry = [0] * n                   # op position -> its return entry
    call_entry = [0] * n
    for pos, (_, kind, i) in enumerate(events, start=1):
        if kind == 0:
            op_of[pos] = i
            call_entry[i] = pos
        else:
            ret_entry[i] = pos
    match = [0] * size                    # call entry -> its return entry
    closes = [-1] * size                  # return entry -> op position
    for i in range(n):
        match[call_entry[i]] = ret_entry[i]
        closes[ret_entry[i]] = i
    info = [op.ret == math.inf for op in ops]
    has_info = any(info)
    # The order children are tried in at each node, by class: 0 = ok ops that never change the
    # state (reads; the model's optional ``is_pure``), 1 = other ok ops, 2 = info ops.
    # A pure op that fits now is *committed*: if any linearization exists from here, one
    # starts with it (it changes nothing, and everything that must precede it is placed), so
    # if that child fails (or was seen failing) the node fails, without trying siblings.
    is_pure = getattr(model, "is_pure", None)
    cls = [2 if info[i] else 0 if is_pure is not None and is_pure(ops[i].input) else 1 for i in range(n)]
    # Symmetry: ok ops with equal input and output step alike. Among those available at a node
    # only the earliest-returning need be tried: in any linearization starting with another one
    # the two can swap places. dom[o] = bits of same-kind ops called and returned before o; o is
    # skipped while any of them is not linearized (being called before o, it is available too).
    dom = _dominators(ops, cls, call_entry, ret_entry, getattr(model, "precedes", None))
    dead = size                          # a pseudo entry: "this node has failed, backtrack"
    op_of.append(-1)
    closes.append(-1)
    # ok ops and info ops get separate bit positions (the cache subsumes on the info part)
    bit = [0] * n
    n_ok = n_info = 0
    for i in range(n):
        if info[i]:
            bit[i] = 1 << n_info
            n_info += 1
        else:
            bit[i] = 1 << n_ok
            n_ok += 1
    inputs = [op.input for op in ops]
    outputs = [op.output for op in ops]
    step = model.step
    big = n_ok > COMPACT_KEYS_ABOVE  # cache keys as (run of low ones, rest, state): ~100 bytes, not n/8

    # --- the search -----------------------------------------------------
    lin = 0                # ok ops linearized (bitset)
    ilin = 0               # info ops linearized (bitset)
    remaining = n_ok       # ok ops still to linearize
    info_left = n_info     # info ops still in the list
    stack_e: list[int] = []  # call entries lifted, in linearization order
    stack_s: list[Any] = []  # state before each of them
    exact: set[tuple] = set()
    subsume: dict[tuple, list[int]] = {}
    cached = 0
    steps = 0
    countdown = quantum
    best_len = -1
    best_stack: list[int] = []
    blocked = -1           # the return entry reached at the end of the longest partial linearization
    phase = 0              # the class of ops tried at this node in the current scan
    e = nxt[0]
    while remaining:
        countdown -= 1
        if not countdown:
            steps += quantum
            countdown = quantum
            yield steps, cached, max(best_len, len(stack_e))
        o = op_of[e]
        if o >= 0:                                   # a call entry
            if cls[o] != phase:
                e = nxt[e]
                continue
            d = dom[o]
            if d and d & lin != d:
                e = nxt[e]
                continue
            ok, new_state = step(state, inputs[o], outputs[o])
            if ok:
                if phase == 2:
                    new_lin, new_ilin = lin, ilin | bit[o]
                else:
                    new_lin, new_ilin = lin | bit[o], ilin
                fresh = True
                if big:   # ops are numbered in call order, so lin is mostly a run of ones: store it short
                    low = (~new_lin & (new_lin + 1)).bit_length() - 1
                    k = (low, new_lin >> low, new_state)
                else:
                    k = (new_lin, new_state)
                if has_info:
                    seen = subsume.get(k)
                    if seen is None:
                        subsume[k] = [new_ilin]
                    else:
                        for s in seen:
                            if not s & ~new_ilin:
                                fresh = False
                                break
                        else:
                            seen.append(new_ilin)
                else:
                    if k in exact:
                        fresh = False
                    else:
                        exact.add(k)
                if fresh:
                    cached += 1
                    if cached > max_cache:
                        return SearchOutcome(UNKNOWN_VERDICT, steps + quantum - countdown, cached,
                                             f"cache cap of {max_cache} (linearized set, state) pairs reached",
                                             (), tuple(kept[op_of[x]] for x in best_stack), None,
                                             kept[blocked] if blocked >= 0 else None)
                    stack_e.append(e)
                    stack_s.append(state)
                    state, lin, ilin = new_state, new_lin, new_ilin
                    if phase == 2:
                        info_left -= 1
                    else:
                        remaining -= 1
                    # lift the call entry and its return entry out of the list
                    p, q = prv[e], nxt[e]
                    nxt[p] = q
                    prv[q] = p
                    r = match[e]
                    p, q = prv[r], nxt[r]
                    nxt[p] = q
                    prv[q] = p
                    phase = 0
                    e = nxt[0]
                    continue
                if phase == 0:                       # a committed pure op already failed from here
                    phase = 2
                    e = dead
                    continue
            e = nxt[e]
            continue
        # a return entry: the scan for this class is over; next class, or a dead end
        if phase == 0 or (phase == 1 and info_left):
            phase += 1
            e = nxt[0]
            continue
        while True:
            depth = len(stack_e)
            if depth > best_len:             # the longest partial linearization so far (a cheap C copy)
                best_len = depth
                best_stack = stack_e[:]
                blocked = closes[e]
            if not depth:
                longest = tuple(kept[op_of[x]] for x in best_stack)
                return SearchOutcome(INVALID, steps + quantum - countdown, cached, None, (), longest,
                                     _replay(model, original, longest), kept[blocked] if blocked >= 0 else None)
            e = stack_e.pop()
            state = stack_s.pop()
            o = op_of[e]
            r = match[e]
            # unlift: re-link the return entry, then the call entry
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            nxt[prv[e]] = e
            prv[nxt[e]] = e
            if info[o]:
                ilin ^= bit[o]
                info_left += 1
            else:
                lin ^= bit[o]
                remaining += 1
            phase = cls[o]
            if phase:                                # try the next sibling of this class
                e = nxt[e]
                break
            # a committed pure op failed: its parent fails too, keep backtracking
    done = tuple(kept[op_of[x]] for x in stack_e)
    return SearchOutcome(VALID, steps + quantum - countdown, cached, None, done, done,
                         _replay(model, original, done), None)


def _replay(model: Model, ops: Sequence[Operation], order: Sequence[int]) -> Any:
    """The state after ``order`` run on the original ops (the search may have run stand-ins)."""
    state = model.init()
    for i in order:
        _, state = model.step(state, ops[i].input, ops[i].output)
    return state


def _dominators(ops: Sequence[Operation], cls: list[int], call_entry: list[int], ret_entry: list[int],
                precedes: Any = None) -> list[int]:
    """For each ok op, the bitset (ok-op bit positions) of ops it must wait for: alike ops called and
    returned before it, and the ok ops the model's optional ``precedes`` hook puts before it."""
    n = len(ops)
    dom = [0] * n
    groups: dict[Any, list[int]] = {}
    ok_bit: dict[int, int] = {}
    for i, op in enumerate(ops):
        if op.ret != math.inf:
            ok_bit[i] = 1 << len(ok_bit)
            if cls[i] == 1:
                try:
                    groups.setdefault((op.input, op.output), []).append(i)
                except TypeError:        # unhashable: no symmetry for it
                    pass
    for i, j in (precedes(ops) if precedes is not None else ()):
        if i in ok_bit and j in ok_bit and i != j:
            dom[j] |= ok_bit[i]
    for members in groups.values():
        if len(members) < 2:
            continue
        # only alike ops still open at o's call matter: those that returned before it are
        # always linearized by the time o is available. Sweep in call order.
        members.sort(key=call_entry.__getitem__)
        open_: list[int] = []
        for o in members:
            c, r = call_entry[o], ret_entry[o]
            open_ = [p for p in open_ if ret_entry[p] > c]
            for p in open_:
                if ret_entry[p] < r:
                    dom[o] |= ok_bit[p]
            open_.append(o)
    return dom


def _prepare(model: Model, ops: Sequence[Operation]) -> tuple[list[int], list[Operation]]:
    """The ops to search and their positions in ``ops``.

    Indeterminate pure ops go (they may be skipped and change nothing, so they
    never enable anything), then the model's optional ``resolve`` hook rules.
    """
    is_pure = getattr(model, "is_pure", None)
    settled: dict[int, Operation | None] = {}
    if is_pure is not None:
        settled = {i: None for i, op in enumerate(ops) if op.ret == math.inf and is_pure(op.input)}
    hook = getattr(model, "resolve", None)
    if hook is not None:
        settled.update(hook(ops))
    if not settled:
        return list(range(len(ops))), list(ops)
    kept = [i for i in range(len(ops)) if settled.get(i, ops[i]) is not None]
    return kept, [settled.get(i, ops[i]) for i in kept]


def run(model: Model, ops: Sequence[Operation], *, max_cache: int = DEFAULT_MAX_CACHE,
        max_steps: int | None = None) -> SearchOutcome:
    """Run a search to the end (or to ``max_steps``, then ``unknown``): for tests and minimising."""
    gen = search(model, ops, max_cache=max_cache, quantum=1000)
    try:
        while True:
            steps, _, _ = next(gen)
            if max_steps is not None and steps >= max_steps:
                gen.close()
                return SearchOutcome(UNKNOWN_VERDICT, steps, 0, f"step budget of {max_steps} spent")
    except StopIteration as stop:
        return stop.value
