"""A focused EDN reader for the subset Jepsen and Knossos histories are written in.

Why not edn_format alone: its PLY parser reads ~5,000 ops a second, so parsing cost more
than checking (1.5 s for Porcupine's 102 etcd histories, 5 s for Knossos's corpus), and
no other maintained EDN library on PyPI is faster. Histories use a small part of EDN,
so this reader does that part with one regular expression (the tokens are found in C)
and a loop without recursion (a line of 100,000 ``[`` is an error message, not a
RecursionError). It is fuzzed against edn_format on random values
(``tests/test_edn_reader.py``), and anything outside the subset is refused with the
line it is on, never read differently.

The subset: ``nil``/``true``/``false``; integers (``N`` suffix allowed) and decimals
(``M`` suffix read as a float); strings with EDN's escapes; characters; keywords and
symbols; vectors, lists, maps and sets; ``;`` comments, commas as whitespace and ``#_``
discards. Tagged values become :class:`Tagged`, except a record literal such as
``#jepsen.history.Op{...}`` (what newer Jepsen versions write for each op), which is
read as its map. Ratios are refused.

Values: keywords and symbols are :class:`Keyword` and :class:`Symbol`, ``str`` subclasses
whose text is the name (``:f`` -> ``Keyword("f")``), so history code can use them as the
names they are; vectors and lists are tuples, maps dicts, sets frozensets.
"""
from __future__ import annotations

import re
from typing import Any


class EdnError(ValueError):
    """Text outside the supported EDN subset; ``line`` is 1-based."""

    def __init__(self, message: str, line: int):
        super().__init__(f"line {line}: {message}")
        self.reason = message
        self.line = line


class Keyword(str):
    """``:name``: a str whose text is the name (without the colon)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f":{str.__str__(self)}"


class Symbol(str):
    """A bare symbol such as ``foo`` (``nil``, ``true`` and ``false`` are not symbols)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Symbol({str.__str__(self)})"


class Char(str):
    """A character literal such as ``\\a``."""

    __slots__ = ()


class Tagged:
    """``#tag value`` for a tag this reader does not interpret (``#inst``, ``#uuid``, ...)."""

    __slots__ = ("tag", "value")

    def __init__(self, tag: str, value: Any):
        self.tag, self.value = tag, value

    def __repr__(self) -> str:
        return f"#{self.tag} {self.value!r}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tagged) and (self.tag, self.value) == (other.tag, other.value)

    def __hash__(self) -> int:
        return hash((self.tag, _hashable(self.value)))


class FrozenMap(dict):
    """A map used where EDN allows it and Python needs a hashable value (a set member, a map key)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))


# One token per match; whitespace, commas and comments are skipped by the leading part. A token is
# a string, a delimiter, a discard, a tag (with its name), a character, or an atom.
_TOKEN = re.compile(r'''(?:[\s,]|;[^\n]*)*+(
    "(?:[^"\\]|\\.)*"?        # a string (an unterminated one is caught below)
  | \#\{ | \#_ | [\[\](){}]
  | \#[^\s,\[\](){}"\\;]*      # a tag, #inst, #jepsen.history.Op, ...
  | \\(?:newline|return|space|tab|formfeed|backspace|u[0-9a-fA-F]{4}|[^\s,])
  | [^\s,\[\](){}"\\;\#][^\s,\[\](){}"\\;]*
  | .                         # anything else: refused below, never skipped
)?''', re.X | re.S)
_INT = re.compile(r"[+-]?\d+N?\Z")
_FLOAT = re.compile(r"[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?M?\Z")
_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "\\": "\\", '"': '"', "b": "\b", "f": "\f"}
_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|.)', re.S)
_CHARS = {"newline": "\n", "return": "\r", "space": " ", "tab": "\t", "formfeed": "\f", "backspace": "\b"}
_CONSTANTS: dict[str, Any] = {"nil": None, "true": True, "false": False}
# EDN's symbols: a name, or a prefix / name, each starting with a non-digit ("+", "-" and "." not
# followed by a digit); anything else is refused rather than read differently from edn_format.
_PART = r"(?:[A-Za-z*!_?$%&=<>]|[.+\-](?![0-9]))[\w*!?$%&=<>.+\-:#']*"
_SYMBOL = re.compile(rf"(?:{_PART}/)?{_PART}\Z|/\Z")
_KEYWORD = re.compile(r"[\w*!?$%&=<>.+\-#'][\w*!?$%&=<>.+\-:#']*(?:/[\w*!?$%&=<>.+\-:#']+)?\Z")


_OPENERS = {"{": "}", "[": "]", "(": ")", "#{": "}"}
_CLOSING = frozenset("])}")
_SPECIAL = object()     # the cache's mark for tokens that are not atoms


def loads_all(text: str) -> list[Any]:
    """Every top-level value of ``text``, in order; :class:`EdnError` for anything else.

    Atoms (keywords, numbers, strings, ...) are read once per distinct token and cached:
    a history repeats ``:type``, ``:invoke``, ``:f`` and small numbers on every line."""
    tokens = _TOKEN.findall(text)
    out: list[Any] = []
    stack: list[tuple[str, list[Any], int, str | None]] = []  # (opener, parent items, token index, tag)
    items = out
    tag: str | None = None      # a tag waiting for its value
    discard: list[int] = []     # stack depths of pending #_ (they nest: #_ #_ a b)
    cache: dict[str, Any] = dict.fromkeys(_OPENERS, _SPECIAL)
    cache.update(dict.fromkeys(_CLOSING, _SPECIAL))
    cache[""] = _SPECIAL
    get = cache.get
    for i, tok in enumerate(tokens):
        v = get(tok, _SPECIAL)
        if v is _SPECIAL:
            if tok in _OPENERS:
                stack.append((tok, items, i, tag))
                items, tag = [], None
                continue
            if tok in _CLOSING:
                v, items, tag = _close(stack, items, tok, text, i, tokens)
            elif not tok:
                continue
            elif tok[0] == "#":
                if tok == "#_":
                    discard.append(len(stack))
                    continue
                if len(tok) == 1 or not tok[1].isalpha() or tag is not None:
                    raise _error(text, i, tokens, f"unsupported dispatch {tok!r}" if tag is None
                                 else f"tag #{tag} is followed by another tag")
                tag = tok[1:]
                continue
            else:
                v = cache[tok] = _atom(tok, text, i, tokens)
        # a complete value: apply a pending tag, then a pending discard, then keep it
        if tag is not None:
            v = v if (tag.rsplit(".", 1)[-1] == "Op" and isinstance(v, dict)) else Tagged(tag, v)
            tag = None
        if discard and discard[-1] == len(stack):
            discard.pop()
            continue
        items.append(v)
    if stack:
        raise _error(text, stack[-1][2], tokens, f"{stack[-1][0]!r} is never closed")
    if tag is not None or discard:
        raise _error(text, len(tokens), tokens, "the text ends inside a tagged or discarded value")
    return out


def _close(stack: list, items: list[Any], tok: str, text: str, i: int,
           tokens: list[str]) -> tuple[Any, list[Any], str | None]:
    """The collection ``tok`` closes, the items list it goes into, and the tag pending before it."""
    if not stack:
        raise _error(text, i, tokens, f"unexpected {tok!r}")
    opener, parent, at, tag = stack.pop()
    if _OPENERS[opener] != tok:
        raise _error(text, i, tokens, f"{opener!r} closed by {tok!r}")
    if opener == "{":
        if len(items) % 2:
            raise _error(text, at, tokens, "a map has an odd number of forms")
        it = iter(items)
        try:
            v: Any = dict(zip(it, it))
        except TypeError:
            it = iter(items)
            v = {_hashable(k): x for k, x in zip(it, it)}
        if len(v) * 2 != len(items):
            raise _error(text, at, tokens, "a map has a duplicate key")
    elif opener == "#{":
        try:
            v = frozenset(items)
        except TypeError:
            v = frozenset(_hashable(x) for x in items)
        if len(v) != len(items):
            raise _error(text, at, tokens, "a set has a duplicate element")
    else:
        v = tuple(items)
    return v, parent, tag


def _atom(tok: str, text: str, i: int, tokens: list[str]) -> Any:
    """The value of a token that is not a delimiter, a tag or a discard."""
    c = tok[0]
    if c == '"':
        if len(tok) < 2 or tok[-1] != '"' or _odd_backslashes(tok):
            raise _error(text, i, tokens, "a string is not closed")
        v = tok[1:-1]
        return _unescape(v, text, i, tokens) if "\\" in v else v
    if c == ":":
        name = tok[1:]
        if not _KEYWORD.match(name):
            raise _error(text, i, tokens, f"bad keyword {tok!r}")
        return Keyword(name)
    if c == "\\":
        name = tok[1:]
        ch = _CHARS.get(name) or (chr(int(name[1:], 16)) if len(name) == 5 and name[0] == "u" else name)
        if len(ch) != 1:
            raise _error(text, i, tokens, f"unknown character {tok!r}")
        return Char(ch)
    if tok in _CONSTANTS:
        return _CONSTANTS[tok]
    if c.isdigit() or (c in "+-" and tok[1:2].isdigit()):
        if _INT.match(tok):
            return int(tok.rstrip("N"))
        if _FLOAT.match(tok):
            return float(tok.rstrip("M"))
        raise _error(text, i, tokens, f"unsupported number {tok!r}")
    if not _SYMBOL.match(tok):
        raise _error(text, i, tokens, f"bad symbol {tok!r}")
    return Symbol(tok)


def _odd_backslashes(tok: str) -> bool:
    """True if the closing quote of a string token is itself escaped (the string is not closed)."""
    k = len(tok) - 2
    run = 0
    while k >= 1 and tok[k] == "\\":
        run += 1
        k -= 1
    return run % 2 == 1


def _unescape(s: str, text: str, at: int, tokens: list[str]) -> str:
    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        if len(e) == 5 and e[0] == "u":
            return chr(int(e[1:], 16))
        if e in _ESCAPES:
            return _ESCAPES[e]
        raise _error(text, at, tokens, f"unknown string escape \\{e}")
    return _ESCAPE.sub(one, s)


def _hashable(x: Any) -> Any:
    if isinstance(x, dict) and not isinstance(x, FrozenMap):
        return FrozenMap((_hashable(k), _hashable(v)) for k, v in x.items())
    if isinstance(x, tuple):
        return tuple(_hashable(v) for v in x)
    return x


def _error(text: str, token_index: int, tokens: list[str], message: str) -> EdnError:
    """The error, with the line of the ``token_index``-th token (found again only now: errors are rare)."""
    offset = len(text)
    for k, m in enumerate(_TOKEN.finditer(text)):
        if k == token_index:
            offset = m.start(1) if m.group(1) else m.end()
            break
    return EdnError(message, text.count("\n", 0, offset) + 1)
