"""Opaque contexts: round trip, and every malformed, tampered or foreign one is a ContextError
that leaves stored state untouched; bad write arguments are ValueErrors."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import targets.dynamo.versioning.context as context_module
from targets.dynamo.versioning import ContextError, for_mode
from targets.dynamo.versioning.context import ClockEntry, decode_context, encode_context
from tests.test_versioning import ALL, blind_writes


@pytest.mark.parametrize("mode", ALL)
def test_context_round_trips_the_clock(mode):
    v = for_mode(mode)
    obj = blind_writes(v, [1, 2], ["n1", "n2"])
    assert decode_context(v.context(obj), mode) == v.clock(obj)


def tampered_contexts(mode):
    good = encode_context(mode, [ClockEntry("n1", 3, 100.0)])
    body, check = good.split(".")
    flipped = ("A" if body[5] != "A" else "B")
    yield "", "form"
    yield "not-a-context", "form"
    yield good + "x", "checksum"
    yield body[:5] + flipped + body[6:] + "." + check, None
    yield body + "." + check[::-1], "checksum"
    yield "!!!." + check, None
    yield encode_context("lww" if mode != "lww" else "dvv", [ClockEntry("n1", 1, 1.0)]), "mode"
    yield encode_context(mode, [ClockEntry("n1", 0, 1.0)]), "counter"
    yield encode_context(mode, [ClockEntry("", 1, 1.0)]), "node"
    yield encode_context(mode, [ClockEntry("n1", 1, 1.0), ClockEntry("n1", 2, 1.0)]), "twice"
    yield "x" * 70_000, "too long"


@pytest.mark.parametrize("mode", ALL)
def test_malformed_context_raises_and_leaves_state_untouched(mode):
    v = for_mode(mode)
    obj = blind_writes(v, ["a", "b"], ["n1", "n2"])
    before = v.to_json(obj)
    for bad, reason in tampered_contexts(mode):
        with pytest.raises(ContextError, match=reason):
            v.write(obj, bad, "evil", "n1", 500.0)
        assert v.to_json(obj) == before
    assert isinstance(ContextError("x"), ValueError)
    with pytest.raises(ContextError):
        v.write(obj, 42, "evil", "n1", 500.0)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=80) | st.from_regex(r"[A-Za-z0-9_-]{1,40}\.[A-Za-z0-9_-]{8}",
                                                  fullmatch=True))
def test_random_contexts_only_ever_raise_context_error(text):
    v = for_mode("dvv")
    try:
        v.write(v.empty(), text, 1, "n1", 1.0)
    except ContextError:
        pass


@pytest.mark.parametrize("mode", ALL)
def test_bad_write_arguments_are_value_errors(mode):
    v = for_mode(mode)
    with pytest.raises(ValueError, match="JSON"):
        v.write(v.empty(), None, {1, 2}, "n1", 1.0)
    with pytest.raises(ValueError, match="coordinator"):
        v.write(v.empty(), None, 1, "", 1.0)
    with pytest.raises(ValueError):
        v.write(v.empty(), None, 1, "n1", float("nan"))
    with pytest.raises(ValueError):
        v.merge(v.empty(), for_mode("lww" if mode != "lww" else "dvv").empty())


@pytest.mark.parametrize("mode", ["vclock", "dvv"])
def test_context_at_the_counter_limit_is_refused_not_stored(mode):
    """A (forged) context naming 2**53-1 events of n1 cannot make n1 issue an undecodable dot."""
    from targets.dynamo.versioning.context import MAX_COUNTER
    v = for_mode(mode)
    obj = v.write(v.empty(), None, "a", "n1", 1.0)
    forged = encode_context(mode, [ClockEntry("n1", MAX_COUNTER, 1.0)])
    with pytest.raises(ContextError, match="counter"):
        v.write(obj, forged, "b", "n1", 2.0)
    with pytest.raises(ContextError, match="counter"):
        v.write(obj, encode_context(mode, [ClockEntry("n1", MAX_COUNTER + 1, 1.0)]), "b", "n1", 2.0)
    ok = v.write(obj, forged, "b", "n2", 2.0)           # other coordinators still can
    assert decode_context(v.context(ok), mode)["n1"].counter == MAX_COUNTER


def _decode_or_error(context, mode):
    try:
        return decode_context(context, mode)
    except ContextError as exc:
        return ("error", str(exc))


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(st.builds(ClockEntry, st.sampled_from(["n1", "n2", "", "x" * 300]),
                                  st.integers(min_value=-1, max_value=(1 << 53) + 1),
                                  st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                                            st.integers(min_value=0, max_value=10))),
                        max_size=4),
       mode=st.sampled_from(ALL))
def test_the_decoded_context_memo_answers_exactly_what_decoding_does(entries, mode):
    """encode_context remembers the vector of each valid context it makes; a write then
    skips decoding it. The memo must answer exactly what a fresh decode answers."""
    context_module._decoded.clear()
    context = encode_context(mode, entries)
    remembered = _decode_or_error(context, mode)
    context_module._decoded.clear()
    assert remembered == _decode_or_error(context, mode)
