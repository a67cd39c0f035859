"""Operations: the plain records a history is made of.

Jepsen's model: a client *invokes* an operation, and later the same process
records its completion as ``ok`` (it happened), ``fail`` (it definitely did
not happen) or ``info`` (indeterminate: it may or may not have happened, e.g.
a timeout). A process never has two operations open at once; after an
``info`` the worker continues under a new process id, because the old one
may still be "in flight" forever.

Nemesis actions are ops too (``process == "nemesis"``), so a checker can see
fault windows on the same clock as client ops.

Every field a workload needs beyond the fixed ones goes in ``extra`` and is
written flat into the JSON line (see ``docs/history-format.md``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
OP_TYPES = frozenset({INVOKE, OK, FAIL, INFO})
COMPLETIONS = frozenset({OK, FAIL, INFO})
NEMESIS = "nemesis"

#: Fields stored as attributes of :class:`Op`; every other JSON key is ``extra``.
CORE_FIELDS = ("index", "time", "process", "type", "f", "key", "value", "node", "error", "siblings")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Op:
    """One event of a history.

    ``time`` is nanoseconds since the run started (a monotonic clock of the
    harness, never a node's clock). ``node`` is the node the op was sent to
    (the coordinator), ``siblings`` how many versions a read saw, ``error``
    the reason of a ``fail``/``info``.
    """

    index: int
    time: int
    process: int | str
    type: str
    f: str
    key: str | None = None
    value: Any = None
    node: str | None = None
    error: str | None = None
    siblings: int | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @property
    def is_invoke(self) -> bool:
        return self.type == INVOKE

    @property
    def is_nemesis(self) -> bool:
        return self.process == NEMESIS

    def get(self, name: str, default: Any = None) -> Any:
        """A field by name, core or extra: what checkers use for workload fields."""
        if name in CORE_FIELDS:
            return getattr(self, name)
        return self.extra.get(name, default)

    def to_json(self) -> dict[str, Any]:
        """The flat JSON object of one history line (None fields omitted)."""
        out: dict[str, Any] = {
            "index": self.index,
            "time": self.time,
            "process": self.process,
            "type": self.type,
            "f": self.f,
        }
        for name in ("key", "value", "node", "error", "siblings"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> "Op":
        """Build an op from a parsed JSON line; raises ValueError naming the bad field."""
        if not isinstance(obj, Mapping):
            raise ValueError("line is not a JSON object")
        for name in ("index", "time", "process", "type", "f"):
            if name not in obj:
                raise ValueError(f"missing field {name!r}")
        index, time_, process, type_, f = (obj[n] for n in ("index", "time", "process", "type", "f"))
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"index must be a non-negative integer, got {index!r}")
        if not isinstance(time_, int) or isinstance(time_, bool) or time_ < 0:
            raise ValueError(f"time must be non-negative integer nanoseconds, got {time_!r}")
        if not (isinstance(process, str) or (isinstance(process, int) and not isinstance(process, bool))):
            raise ValueError(f"process must be an integer or a string, got {process!r}")
        if type_ not in OP_TYPES:
            raise ValueError(f"type must be one of invoke/ok/fail/info, got {type_!r}")
        if not isinstance(f, str) or not f:
            raise ValueError(f"f must be a non-empty string, got {f!r}")
        key = obj.get("key")
        if key is not None and not isinstance(key, str):
            raise ValueError(f"key must be a string, got {key!r}")
        siblings = obj.get("siblings")
        if siblings is not None and (not isinstance(siblings, int) or isinstance(siblings, bool) or siblings < 0):
            raise ValueError(f"siblings must be a non-negative integer, got {siblings!r}")
        extra = {k: v for k, v in obj.items() if k not in CORE_FIELDS}
        return Op(
            index=index, time=time_, process=process, type=type_, f=f, key=key,
            value=obj.get("value"), node=obj.get("node"), error=obj.get("error"),
            siblings=siblings, extra=MappingProxyType(extra) if extra else _EMPTY,
        )
