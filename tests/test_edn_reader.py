"""The focused EDN reader, fuzzed against edn_format: same values on the subset, one-line errors outside it."""
from __future__ import annotations

import decimal
import json
import math

import edn_format
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers.edn_reader import Char, EdnError, Keyword, Symbol, Tagged, loads_all

NAME = st.from_regex(r"[a-z][a-z0-9?!*\-]{0,6}(\.[a-z][a-z0-9\-]{0,3})?", fullmatch=True)
QUALIFIED = st.one_of(NAME, st.builds(lambda a, b: f"{a}/{b}", NAME, NAME))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.builds(Keyword, QUALIFIED), st.builds(Symbol, QUALIFIED.filter(lambda s: s not in ("nil", "true", "false"))),
    st.builds(Char, st.sampled_from(["a", "Z", "\n", " ", "\t"])),
)
KEYS = st.one_of(st.builds(Keyword, NAME), st.integers(-5, 5), st.text(max_size=4))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: ("vec", xs)),
        st.lists(inner, max_size=4).map(lambda xs: ("list", xs)),
        st.dictionaries(KEYS, inner, max_size=4),
        st.frozensets(st.one_of(st.integers(-9, 9), st.builds(Keyword, NAME)), max_size=4),
    ),
    max_leaves=12,
)
SEPARATORS = st.sampled_from([" ", ", ", "\n", "  ,\t", " ;; a comment\n", ","])


def render(v, sep: str) -> str:
    """Generated data as EDN text, written the way Clojure's printer (or a person) might."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Keyword):
        return f":{v}"
    if isinstance(v, Symbol):
        return str(v)
    if isinstance(v, Char):
        return {"\n": "\\newline", " ": "\\space", "\t": "\\tab"}.get(str(v), f"\\{v}")
    if isinstance(v, str):
        return '"' + "".join({'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(c, c)
                             if c.isprintable() or c in "\n\t\r" else f"\\u{ord(c):04x}" for c in v) + '"'
    if isinstance(v, int):
        return str(v) + ("N" if abs(v) > 2**63 else "")
    if isinstance(v, float):
        return repr(v) if ("." in repr(v) or "e" in repr(v)) else repr(v) + ".0"
    if isinstance(v, tuple):
        kind, xs = v
        inner = sep.join(render(x, sep) for x in xs)
        return f"[{inner}]" if kind == "vec" else f"({inner})"
    if isinstance(v, dict):
        return "{" + sep.join(f"{render(k, sep)} {render(x, sep)}" for k, x in v.items()) + "}"
    return "#{" + sep.join(render(x, sep) for x in v) + "}"


def canon(v):
    """Both readers' values in one comparable form."""
    if isinstance(v, edn_format.Keyword) or isinstance(v, Keyword):
        return ("kw", v.name if isinstance(v, edn_format.Keyword) else str.__str__(v))
    if isinstance(v, edn_format.Symbol) or isinstance(v, Symbol):
        return ("sym", v.name if isinstance(v, edn_format.Symbol) else str.__str__(v))
    if isinstance(v, (edn_format.Char, Char)):
        return ("char", str.__str__(v))
    if isinstance(v, decimal.Decimal):
        return ("num", float(v))
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return ("num", v)
    if isinstance(v, (frozenset, set)):
        return ("set", frozenset(canon(x) for x in v))
    if isinstance(v, dict) or hasattr(v, "items"):
        return ("map", frozenset((canon(k), canon(x)) for k, x in v.items()))
    return ("seq", tuple(canon(x) for x in v))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(VALUES, min_size=1, max_size=4), SEPARATORS)
def test_same_values_as_edn_format(values, sep):
    text = "\n".join(render(v, sep) for v in values) + "\n"
    assert canon(loads_all(text)) == canon(edn_format.loads_all(text))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.sampled_from(list('{}[]()#_ :aZ19"\\;,\n-+./eEM*?!\'`~^@%&<>=$N')), max_size=30))
def test_any_text_reads_or_fails_with_a_line(text):
    """Random EDN-ish text: an EdnError with a line number, or the values edn_format reads too."""
    try:
        ours = loads_all(text)
    except EdnError as e:
        assert 1 <= e.line <= text.count("\n") + 1
        return
    try:
        theirs = edn_format.loads_all(text)
    except Exception:  # noqa: BLE001 - edn_format refuses a few things this reader takes (e.g. `a/b/c`)
        return
    if not any(isinstance(v, Tagged) for v in ours):
        assert canon(ours) == canon(theirs)


@pytest.mark.parametrize("text, line, what", [
    ('{:a 1\n :b [1 2', 2, "never closed"), ('"abc', 1, "string is not closed"), ("1/2", 1, "unsupported number"),
    ("[1 2]]", 1, "unexpected"), ("{:a}", 1, "odd number"), ("#{1 1}", 1, "duplicate"),
    ("\n\n\\ x", 3, "unknown character"), ('"\\q"', 1, "unknown string escape"), ("#_", 1, "ends inside"),
    ("{:a 1 :a 2}", 1, "duplicate key"), ("##Inf", 1, "unsupported dispatch"),
])
def test_errors_name_the_line(text, line, what):
    with pytest.raises(EdnError, match=what) as e:
        loads_all(text)
    assert e.value.line == line


def test_record_literals_read_as_maps_and_other_tags_are_kept():
    (op,) = loads_all('#jepsen.history.Op{:index 0, :type :invoke, :f :read, :value nil}')
    assert op == {"index": 0, "type": "invoke", "f": "read", "value": None} and type(op["type"]) is Keyword
    (t,) = loads_all('#inst "2020-01-01T00:00:00Z"')
    assert isinstance(t, Tagged) and t.tag == "inst"


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(EdnError, match="never closed"):
        loads_all("[" * 200_000)
    assert loads_all("[" * 5000 + "]" * 5000)[0] is not None


def test_sets_and_map_keys_may_hold_maps_and_vectors():
    (v,) = loads_all('{[1 2] #{{:a 1}}}')
    assert json.dumps(sorted(map(str, v))) and math.isfinite(len(v))
