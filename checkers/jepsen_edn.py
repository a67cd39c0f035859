"""Import Jepsen and Knossos ``history.edn`` files so our checkers can check histories from elsewhere.

Parsing uses :mod:`checkers.edn_reader` (a focused reader for the EDN histories are written in,
~10x faster than edn_format and fuzzed against it). The mapping:

* ``:type`` ``:invoke/:ok/:fail/:info`` -> ``type`` (as Jepsen means them: ``fail`` did not
  happen, ``info`` may or may not have); ``:f`` -> ``f``; ``:process`` int -> int,
  ``:nemesis`` -> ``"nemesis"``; ``:value`` -> ``value`` with keywords and symbols as
  strings, sets as sorted lists, vectors as lists; ``:error`` -> ``error`` (as text); any
  other key -> an extra field.
* ``:time`` (ns, relative) -> ``time``. Knossos's corpus and older Jepsen histories have
  no ``:time``: then ops are ordered by their position in the file (``time`` = position,
  which every checker that needs real time is told through :attr:`EdnImport.times`). A file
  must be one or the other: an op without ``:time`` among ops with it is refused.
* ``:key`` -> ``key`` (Porcupine's kv histories); Jepsen's ``independent`` histories carry
  ``[k v]`` tuples as values: those become ``key = k``, ``value = v``. Tuples are recognised
  when every client invoke's value is a pair and some is a read's ``[k nil]`` (a cas
  ``[old new]`` alone never looks like that), or when the caller says so.
* Ops are renumbered 0, 1, 2, ... in file order; Jepsen's ``:index`` is kept as
  ``jepsen_index``. Jepsen's nemesis logs both halves of an action as ``:info``: the first
  of a pair becomes the ``invoke``; ``:start``/``:stop`` become ``start-fault``/``stop-fault``
  so fault windows pair them (our own ``start`` means "restart a killed node").

Anything that cannot be mapped is refused as one :class:`~harness.errors.UserError` line
naming the op (and its file line when each op has a line of its own) and why.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkers.edn_reader import Char, EdnError, FrozenMap, Keyword, Symbol, Tagged, loads_all
from harness.errors import UserError
from harness.history import History, HistoryError, validate_ops
from harness.ops import INFO, INVOKE, NEMESIS, OP_TYPES, Op

CORE_KEYS = frozenset({"type", "f", "value", "process", "time", "index", "error", "key"})
NEMESIS_RENAMES = {"start": "start-fault", "stop": "stop-fault"}
TIMES_REAL, TIMES_POSITION = "edn :time", "position"


class Unmappable(ValueError):
    """A value or op that has no meaning in our history format."""


@dataclass(frozen=True)
class EdnImport:
    """An imported history and what the import had to decide about it.

    ``times``: ``"edn :time"`` (the file's nanoseconds) or ``"position"`` (no ``:time``: ops
    ordered by file position, so checkers that need durations must not run); ``independent``:
    values were ``[k v]`` tuples; ``keyed``: ops carried ``:key``.
    """

    history: History
    times: str
    independent: bool
    keyed: bool

    def notes(self) -> list[str]:
        """What a user should know about the import, one line each."""
        out = []
        if self.times == TIMES_POSITION:
            out.append("no :time in the file: ops are ordered by their position (real time = file order)")
        if self.independent:
            out.append("independent [key value] tuples: split into key and value")
        return out

    def provenance(self, source: str) -> dict[str, Any]:
        """The ``import.json`` written beside an imported ``history.jsonl``."""
        return {"format": "jepsen-edn", "source": source, "times": self.times,
                "independent": self.independent, "keyed": self.keyed, "notes": self.notes()}


def _name(x: Any, what: str = "a keyword or string") -> str:
    if isinstance(x, str) and not isinstance(x, Char):
        return str.__str__(x)
    raise Unmappable(f"expected {what}, got {_show(x)}")


def _show(x: Any) -> str:
    return f"#{x.tag} ..." if isinstance(x, Tagged) else repr(x)


def to_json_value(x: Any) -> Any:
    """An EDN value as plain JSON data (keywords/symbols -> names, sets -> sorted lists)."""
    t = type(x)
    if x is None or t is int or t is bool or t is str:
        return x
    if t is Keyword or t is Symbol or t is Char:
        return str.__str__(x)
    if t is float:
        if not math.isfinite(x):
            raise Unmappable(f"non-finite number {x!r}")
        return x
    if t is tuple or t is list:
        return [to_json_value(v) for v in x]
    if t is frozenset:
        items = [to_json_value(v) for v in x]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if t is dict or t is FrozenMap:
        return {(str.__str__(k) if isinstance(k, str) else json.dumps(to_json_value(k))): to_json_value(v)
                for k, v in x.items()}
    if isinstance(x, Tagged):
        raise Unmappable(f"cannot map EDN value #{x.tag} {x.value!r} (a tagged literal)")
    raise Unmappable(f"cannot map EDN value {x!r} ({t.__name__})")


def _key(x: Any) -> str:
    """An op's key as text: ``"0"`` stays, ``:k`` -> ``k``, 7 -> ``"7"``."""
    if isinstance(x, str):
        return str.__str__(x)
    return json.dumps(to_json_value(x)) if not isinstance(x, int) else str(x)


class _Mapper:
    """Turns op maps into Ops one by one, carrying what spans ops (open nemesis, keys of open invokes)."""

    def __init__(self, independent: bool, times: str):
        self.independent = independent
        self.times = times
        self.open_nemesis: set = set()
        self.open_key: dict[Any, str | None] = {}
        self.names: dict[Any, str] = {}

    def op(self, m: Any, n: int) -> Op:
        if not isinstance(m, dict):
            raise Unmappable(f"an op must be a map, got {type(m).__name__}")
        get = m.get        # the reader's keywords are str subclasses: m.get("type") finds :type
        for need in ("type", "f", "process"):
            if need not in m:
                raise Unmappable(f"op has no :{need}")
        type_ = self.plain(get("type"))
        if type_ not in OP_TYPES:
            raise Unmappable(f":type must be :invoke/:ok/:fail/:info, got {get('type')!r}")
        time_ = self._time(m, n)
        proc = get("process")
        if isinstance(proc, str):
            proc = self.plain(proc)
        elif not isinstance(proc, int) or isinstance(proc, bool):
            raise Unmappable(f":process must be an integer or a keyword, got {_show(proc)}")
        f = self.plain(get("f"))
        value = to_json_value(get("value"))
        key = None
        if proc == NEMESIS:
            f = NEMESIS_RENAMES.get(f, f)
            if type_ == INFO and proc not in self.open_nemesis:
                type_ = INVOKE
            if type_ == INVOKE:
                self.open_nemesis.add(proc)
            else:
                self.open_nemesis.discard(proc)
        else:
            key, value = self._key_value(m, type_, proc, value)
        err = get("error")
        if err is not None:
            err = to_json_value(err)
            err = err if isinstance(err, str) else json.dumps(err)
        extra = None
        if len(m) > 3 + sum(k in m for k in ("value", "time", "key", "error", "index")):
            extra = {}
            for k, v in m.items():
                if not isinstance(k, str):
                    raise Unmappable(f"an op map must have keyword keys, got {_show(k)}")
                if k not in CORE_KEYS:
                    extra[self.plain(k)] = to_json_value(v)
        if "index" in m:
            extra = extra if extra is not None else {}
            extra["jepsen_index"] = to_json_value(get("index"))
        return Op(index=n, time=time_, process=proc, type=type_, f=f, key=key, value=value, error=err,
                  extra=extra or {})

    def plain(self, x: Any) -> str:
        """A keyword or string as a plain str (cached: histories repeat a handful of names)."""
        out = self.names.get(x) if isinstance(x, str) else None
        if out is None:
            out = self.names[x] = _name(x)
        return out

    def _time(self, fields: dict, n: int) -> int:
        if self.times == TIMES_POSITION:
            if "time" in fields:
                raise Unmappable("op has :time, but the file's first op has none (ops are ordered by position)")
            return n
        if "time" not in fields:
            raise Unmappable("op has no :time, but the file's first op has one")
        t = fields["time"]
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise Unmappable(f":time must be non-negative integer nanoseconds, got {_show(t)}")
        return t

    def _key_value(self, fields: dict, type_: str, proc: Any, value: Any) -> tuple[str | None, Any]:
        """The op's key and value: ``:key``, or the first half of an independent tuple."""
        if "key" in fields:
            key: str | None = _key(fields["key"])
        elif self.independent and isinstance(value, list) and len(value) == 2:
            key, value = _key(fields["value"][0]), value[1]
        elif self.independent and type_ == INVOKE:
            raise Unmappable(f"independent history: a client value must be a [key value] tuple, got {value!r}")
        else:
            key = self.open_key.get(proc)   # e.g. an :info completion whose value is :timed-out
        if type_ == INVOKE:
            self.open_key[proc] = key
        else:
            self.open_key.pop(proc, None)
        return key, value


def _op_lines(text: str) -> list[int]:
    """Numbers of the lines that hold something (not blank, not a ; comment)."""
    return [n for n, line in enumerate(text.splitlines(), start=1)
            if line.strip(" \t\r,[]") and not line.lstrip().startswith(";")]


def _forms(text: str, where: str) -> list[tuple[str, Any]]:
    """(location, parsed op) per op: ``file:line`` when each op has its own line, else ``op N``.

    A file is either one op map per line (Jepsen's ``history.edn``) or one vector of them
    (Knossos's corpus)."""
    try:
        forms = loads_all(text)
    except EdnError as e:
        raise UserError(f"{where}:{e.line}: not valid EDN: {e.reason}") from None
    if len(forms) == 1 and isinstance(forms[0], tuple):
        forms = list(forms[0])
    lines = _op_lines(text)
    if len(lines) == len(forms):
        return [(f"{where}:{line} (op {i})", m) for i, (line, m) in enumerate(zip(lines, forms, strict=True))]
    return [(f"{where}: op {i}", m) for i, m in enumerate(forms)]


def _client_invokes(forms: list[tuple[str, Any]]) -> list[dict]:
    out = []
    for _, m in forms:
        if isinstance(m, dict) and m.get(Keyword("type")) == "invoke" and m.get(Keyword("process")) != "nemesis":
            out.append(m)
    return out


def looks_independent(forms: list[tuple[str, Any]]) -> bool:
    """Every client invoke's value is a pair, none has ``:key``, and some is a read ``[k nil]``."""
    invokes = _client_invokes(forms)
    kw_value, kw_key = Keyword("value"), Keyword("key")
    if not invokes or any(kw_key in m for m in invokes):
        return False
    values = [m.get(kw_value) for m in invokes]
    return all(isinstance(v, tuple) and len(v) == 2 for v in values) and any(v[1] is None for v in values)


def import_edn(path: str | Path, *, independent: bool | None = None) -> EdnImport:
    """Read a Jepsen ``history.edn``, or refuse with a one-line UserError naming the op.

    ``independent``: None to recognise ``[k v]`` tuples (see the module docstring), True or
    False to say."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    forms = _forms(text, str(p))
    if not forms:
        raise UserError(f"{p}: no ops in the file")
    first = forms[0][1]
    times = TIMES_REAL if isinstance(first, dict) and Keyword("time") in first else TIMES_POSITION
    split = looks_independent(forms) if independent is None else independent
    mapper = _Mapper(split, times)
    ops: list[Op] = []
    for loc, form in forms:
        try:
            ops.append(mapper.op(form, len(ops)))
        except Unmappable as e:
            raise UserError(f"{loc}: cannot map to a dynharness op: {e}") from None
        except RecursionError:  # a value nested deeper than the stack (the reader itself is not recursive)
            raise UserError(f"{loc}: cannot map to a dynharness op: nested too deeply to read") from None
    try:
        validate_ops(ops, where=str(p))
    except HistoryError as e:
        msg = str(e)
        for i, (loc, _) in enumerate(forms):  # name the file line, not only our renumbered index
            if f"op {i} " in msg or msg.endswith(f"op {i}"):
                msg = f"{msg} ({loc})"
                break
        raise UserError(msg) from None
    history = History.of(ops, source=str(p))
    keyed = any(o.key is not None for o in ops) and not split
    return EdnImport(history, times, split, keyed)


def read_edn_history(path: str | Path, *, independent: bool | None = None) -> History:
    """The history of :func:`import_edn` alone."""
    return import_edn(path, independent=independent).history
