"""Import Jepsen ``history.edn`` files so our checkers can check histories from Jepsen tests.

Parsing uses the ``edn_format`` library (a maintained EDN reader: keywords,
sets, tagged literals), never a hand-rolled parser. The mapping:

* ``:type`` ``:invoke/:ok/:fail/:info`` -> ``type``; ``:f`` -> ``f`` (keyword
  name); ``:process`` int -> int, ``:nemesis`` -> ``"nemesis"``; ``:time``
  (ns, relative) -> ``time``; ``:value`` -> ``value`` with keywords and
  symbols as strings, sets as sorted lists, vectors as lists (a ``cas``
  ``[old new]`` stays a list, a set ``:read`` ``#{1 2}`` becomes ``[1, 2]``);
  ``:error`` -> ``error`` (as text); any other key -> an extra field.
* Ops are renumbered 0, 1, 2, ... in file order; Jepsen's ``:index`` is kept
  as the extra field ``jepsen_index``.
* Jepsen's nemesis logs both halves of an action as ``:info``: the first of
  a pair becomes the ``invoke``. Nemesis ``:start``/``:stop`` become
  ``start-fault``/``stop-fault`` so fault windows pair them (our own ``start``
  means "restart a killed node").
* ``independent=True`` reads ``[k v]`` values of client ops as
  ``key = str(k)``, ``value = v`` (Jepsen's ``independent`` tuples).

Anything that cannot be mapped (no ``:type``/``:f``/``:time``, an unknown
type, a tagged literal, a completion with no invoke) is refused as a
:class:`~harness.errors.UserError` naming the line (or op number) and why.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import edn_format
from edn_format import Keyword, Symbol

from harness.errors import UserError
from harness.history import History, HistoryError, validate_ops
from harness.ops import INFO, INVOKE, NEMESIS, OP_TYPES, Op

CORE_KEYS = frozenset({"type", "f", "value", "process", "time", "index", "error"})
NEMESIS_RENAMES = {"start": "start-fault", "stop": "stop-fault"}


class Unmappable(ValueError):
    """A value or op that has no meaning in our history format."""


def _name(x: Any) -> str:
    if isinstance(x, (Keyword, Symbol)):
        return x.name
    if isinstance(x, str):
        return x
    raise Unmappable(f"expected a keyword or string, got {x!r}")


def to_json_value(x: Any) -> Any:
    """An EDN value as plain JSON data (keywords/symbols -> names, sets -> sorted lists)."""
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            raise Unmappable(f"non-finite number {x!r}")
        return x
    if isinstance(x, (Keyword, Symbol)):
        return x.name
    if isinstance(x, edn_format.Char):
        return str(x)
    if isinstance(x, (frozenset, set)):
        items = [to_json_value(v) for v in x]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(x, Sequence):
        return [to_json_value(v) for v in x]
    if isinstance(x, Mapping):
        return {(_name(k) if isinstance(k, (Keyword, Symbol, str)) else repr(k)): to_json_value(v) for k, v in x.items()}
    raise Unmappable(f"cannot map EDN value {x!r} ({type(x).__name__})")


def _to_op(m: Any, n: int, open_nemesis: set, independent: bool) -> Op:
    if not isinstance(m, Mapping):
        raise Unmappable(f"an op must be a map, got {type(m).__name__}")
    fields = {_name(k): v for k, v in m.items()}
    for need in ("type", "f", "time", "process"):
        if need not in fields:
            raise Unmappable(f"op has no :{need}")
    type_ = _name(fields["type"])
    if type_ not in OP_TYPES:
        raise Unmappable(f":type must be :invoke/:ok/:fail/:info, got {type_!r}")
    time_ = fields["time"]
    if not isinstance(time_, int) or isinstance(time_, bool) or time_ < 0:
        raise Unmappable(f":time must be non-negative integer nanoseconds, got {time_!r}")
    proc = fields["process"]
    if isinstance(proc, (Keyword, Symbol, str)):
        proc = _name(proc)
    elif not isinstance(proc, int) or isinstance(proc, bool):
        raise Unmappable(f":process must be an integer or a keyword, got {proc!r}")
    f = _name(fields["f"])
    value = to_json_value(fields.get("value"))
    key = None
    if proc == NEMESIS:
        f = NEMESIS_RENAMES.get(f, f)
        if type_ == INFO and proc not in open_nemesis:
            type_ = INVOKE
        if type_ == INVOKE:
            open_nemesis.add(proc)
        else:
            open_nemesis.discard(proc)
    elif independent:
        if not (isinstance(value, list) and len(value) == 2):
            raise Unmappable(f"--independent: client value must be a [key value] tuple, got {value!r}")
        key, value = str(value[0]), value[1]
    err = fields.get("error")
    err = to_json_value(err)
    error = None if err is None else (err if isinstance(err, str) else json.dumps(err))
    extra = {k: to_json_value(v) for k, v in fields.items() if k not in CORE_KEYS}
    if "index" in fields:
        extra["jepsen_index"] = to_json_value(fields["index"])
    return Op(index=n, time=time_, process=proc, type=type_, f=f, key=key, value=value, error=error, extra=extra)


def _op_lines(text: str) -> list[int]:
    """Numbers of the lines that hold something (not blank, not a ; comment)."""
    return [n for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith(";")]


def _bad_line(text: str) -> str:
    """``:N`` for the first line that is not valid EDN alone, when every op sits on its own line."""
    lines = text.splitlines()
    numbers = _op_lines(text)
    if not all(lines[n - 1].lstrip().startswith("{") for n in numbers):
        return ""  # a multi-line layout: a single line proves nothing
    for n in numbers:
        try:
            edn_format.loads(lines[n - 1])
        except Exception:  # noqa: BLE001 - edn_format raises several exception types
            return f":{n}"
    return ""


def _forms(text: str, where: str) -> list[tuple[str, Any]]:
    """(location, parsed form) per op: ``file:line`` when each op has its own line, else ``op N``.

    The whole text is parsed in one call: edn_format builds its lexer per
    call, so parsing line by line is ~6x slower.
    """
    try:
        forms = edn_format.loads_all(text)
    except Exception as e:  # noqa: BLE001 - edn_format raises several exception types
        raise UserError(f"{where}{_bad_line(text)}: not valid EDN: {e}") from None
    if len(forms) == 1 and isinstance(forms[0], Sequence) and not isinstance(forms[0], str):
        return [(f"{where}: op {i}", m) for i, m in enumerate(forms[0])]
    lines = _op_lines(text)
    if len(lines) == len(forms):
        return [(f"{where}:{n}", m) for n, m in zip(lines, forms, strict=True)]
    return [(f"{where}: op {i}", m) for i, m in enumerate(forms)]


def read_edn_history(path: str | Path, *, independent: bool = False) -> History:
    """Read a Jepsen ``history.edn`` as our History, or refuse with a UserError naming the op."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    ops: list[Op] = []
    locations: list[str] = []
    open_nemesis: set = set()
    for loc, form in _forms(text, str(p)):
        try:
            ops.append(_to_op(form, len(ops), open_nemesis, independent))
        except Unmappable as e:
            raise UserError(f"{loc}: cannot map to a dynharness op: {e}") from None
        except RecursionError:  # a value nested deeper than the stack (the EDN parser itself is not recursive)
            raise UserError(f"{loc}: cannot map to a dynharness op: nested too deeply to read") from None
        locations.append(loc)
    if not ops:
        raise UserError(f"{p}: no ops in the file")
    try:
        validate_ops(ops, where=str(p))
    except HistoryError as e:
        msg = str(e)
        for i, loc in enumerate(locations):  # name the file line, not only our renumbered index
            if f"op {i} " in msg or msg.endswith(f"op {i}"):
                msg = f"{msg} ({loc})"
                break
        raise UserError(msg) from None
    return History.of(ops, source=str(p))
