"""The ``kv`` model: one key of a string key-value store with get, put and append.

This is the object behind Jepsen's and Porcupine's key-value histories (``:f`` ``:get``,
``:put``, ``:append`` with string values and a ``:key`` per op): ``put`` replaces the
value, ``append`` concatenates to it, ``get`` returns it, and a key never written reads as
the empty string. The checker splits a history by key (P-compositionality), so the model
holds one string.

Inputs are ``(f, value)``: ``("get", None)``, ``("put", "v")``, ``("append", "v")``; a get's
output is the string it returned (``nil`` reads as ``""``, as Porcupine's kv model has it).
Values that are not strings are taken as their text (an int 3 appends ``"3"``), so a
history written with numbers still checks instead of crashing the model.
"""
from __future__ import annotations

from typing import Any, Sequence

from checkers.linearizability.model import UNKNOWN, Operation

#: Longest value shown whole in reports; longer ones keep their ends (appends grow them).
SHOWN = 80


class KVModel:
    """A string register with append, starting at ``initial`` (``""``: a key never written)."""

    name = "kv"
    fs = frozenset({"get", "put", "append"})
    pure_fs = frozenset({"get"})

    def __init__(self, initial: Any = ""):
        self.initial = _text(initial)

    def init(self) -> str:
        """The value of a key before any op."""
        return self.initial

    def step(self, state: str, input: tuple[str, Any], output: Any) -> tuple[bool, str]:
        """A get must return the current string; put replaces it; append extends it."""
        f = input[0]
        if f == "get":
            return (output is UNKNOWN or output == state or (output is None and state == "")), state
        if f == "append":
            v = input[1]
            return True, state + (v if type(v) is str else _text(v))
        if f == "put":
            v = input[1]
            return True, v if type(v) is str else _text(v)
        return False, state

    def is_pure(self, input: tuple[str, Any]) -> bool:
        """Gets never change the value (the search tries them first and commits to one that fits)."""
        return input[0] == "get"

    def precedes(self, ops: Sequence[Operation]) -> set[tuple[int, int]]:
        """Orders that every linearization has, read off the gets' outputs (see ``model.py``).

        A get returned the last put's value (or the initial one) followed by the values of the
        appends since, in order. When that string splits into such a sequence in exactly one
        way, using values each appended by one op, those ops ran in that order and before the
        get. Without this, appends in flight together are tried in every order (each order is
        a different string, so the search's cache cannot merge them), which is what made
        many-client kv histories slow; with it they are tried in the one order the gets saw.
        """
        appends: dict[str, list[int]] = {}
        puts: dict[str, list[int]] = {}
        for i, op in enumerate(ops):
            f = op.input[0]
            if f in ("append", "put"):
                (appends if f == "append" else puts).setdefault(_text(op.input[1]), []).append(i)
        appends.pop("", None)        # an empty append changes nothing: it has no place to pin
        pairs: set[tuple[int, int]] = set()
        seen: dict[str, list[int] | None] = {}
        for j, op in enumerate(ops):
            if op.input[0] != "get" or op.indeterminate:
                continue
            out = _text(op.output)
            if out not in seen:
                seen[out] = _split(out, self.initial, puts, appends)
            chain = [i for i in seen[out] or () if not ops[i].indeterminate]
            pairs.update(zip(chain, chain[1:]))
            if chain:
                pairs.add((chain[-1], j))
        return pairs

    def describe_op(self, input: tuple[str, Any], output: Any) -> str:
        """``get -> 'ab'`` / ``put 'a'`` / ``append 'b'``."""
        f, value = input
        if f == "get":
            return f"get -> {'?' if output is UNKNOWN else _short(_text(output))}"
        return f"{f} {_short(_text(value))}"

    def describe_state(self, state: str) -> str:
        """The key's string (its two ends when it is long)."""
        return _short(state)


def _split(s: str, initial: str, puts: dict[str, list[int]], appends: dict[str, list[int]]) -> list[int] | None:
    """The ops (a put, or none for the initial value, then appends) whose values make ``s``, if
    exactly one sequence of values does and each of its values was written by one op; else None."""
    starts: dict[int, list[str]] = {}
    for v in appends:
        k = s.find(v)
        while k >= 0:
            starts.setdefault(k, []).append(v)
            k = s.find(v, k + 1)
    n = len(s)
    ways = [0] * (n + 1)        # ways[k]: splits of s[k:] into append values, counted up to 2
    ways[n] = 1
    for k in sorted(starts, reverse=True):
        ways[k] = min(2, sum(ways[k + len(v)] for v in starts[k]))
    heads = [(v, positions) for v, positions in puts.items() if s.startswith(v)]
    total = sum(ways[len(v)] for v, _ in heads) + (ways[len(initial)] if s.startswith(initial) else 0)
    if total != 1:
        return None
    chain: list[int] = []
    k = len(initial) if s.startswith(initial) and ways[len(initial)] else -1
    for v, positions in heads:
        if ways[len(v)]:
            if len(positions) != 1:
                return None
            chain, k = [positions[0]], len(v)
    used: set[str] = set()
    while k < n:
        v = next(v for v in starts[k] if ways[k + len(v)])
        if v in used or len(appends[v]) != 1:
            return None
        used.add(v)
        chain.append(appends[v][0])
        k += len(v)
    return chain


def _text(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else str(v)


def _short(s: str) -> str:
    if len(s) <= SHOWN:
        return repr(s)
    half = SHOWN // 2
    return f"{s[:half]!r}...{s[-half:]!r} ({len(s)} chars)"
