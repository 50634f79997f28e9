"""The fast parse path accepts exactly what the checked path accepts, with the same event;
neither raises, whatever the bytes (CONTRACT.md 1.1: the JSON rules, I-JSON)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lifecycle.contract import Envelope
from lifecycle.parsing import Malformed, parse_record, parse_record_checked
from service.demo import generate
from tests.strategies import json_rule_records
from tests.unit.lifecycle.test_contract import CODES

SAMPLE = list(generate(providers=150, seed=29))
HOSTILE = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_paths_agree(raw: bytes) -> Envelope | Malformed:
    """Both paths give the same answer, and a malformed one has a code of the contract
    (never ``internal_error``: that would be the parser failing, not the record)."""
    fast, checked = parse_record(raw), parse_record_checked(raw)
    if isinstance(checked, Envelope):
        assert isinstance(fast, Envelope), fast
        assert fast.model_dump() == checked.model_dump()
        assert fast.extensions == checked.extensions
    else:
        assert fast == checked
        assert checked.code in CODES, checked.reason
        # Short, whatever the record: an x-error header is at most 1 KiB (CONTRACT.md).
        assert len(checked.reason.encode("utf-8")) <= 1024, checked.reason
    return checked


def test_fast_and_checked_paths_agree_on_a_realistic_stream() -> None:
    kinds = {type(assert_paths_agree(raw)).__name__ for raw in SAMPLE}
    assert kinds == {"Envelope", "Malformed"}


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(0, len(SAMPLE) - 1),
    cut=st.integers(0, 400),
    junk=st.binary(max_size=3),
)
def test_fast_and_checked_paths_agree_on_damaged_records(index: int, cut: int, junk: bytes) -> None:
    raw = SAMPLE[index]
    assert_paths_agree(raw[:cut] + junk + raw[cut + len(junk) :])


@HOSTILE
@given(json_rule_records())
@example(b'{"id":"a","id":"b"}')
@example(b'{"specversion":"1.0","data":{"a":"\\u0000"}}')
@example(b'{"a":"\\ud800\\u0041"}')
@example(b'{"a":"\\udc00\\ud800"}')
@example(b'{"a":"\xed\xa0\x80"}')
@example(b'{"a":' + b"9" * 5000 + b"}")
@example(b"[" * 5000 + b"]" * 5000)
@example(b'{"a":' + b"[" * 900 + b'"\\u0000"' + b"]" * 900 + b"}")
@example(b'{"type":"provider.' + b"X" * 600_000 + b'"}')
def test_parse_record_never_raises_and_the_paths_agree_on_hostile_json(raw: bytes) -> None:
    # Lone surrogates (escaped and raw), U+0000, repeated names, huge integers, deep
    # arrays, every JSON type in every field, BOMs, UTF-16, cut records.
    assert_paths_agree(raw)


@HOSTILE
@given(st.binary(max_size=400))
def test_parse_record_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    assert_paths_agree(raw)


@HOSTILE
@given(json_rule_records())
def test_what_parses_keeps_every_json_rule(raw: bytes) -> None:
    """An accepted record is I-JSON: UTF-8, no BOM, unique names, clean strings, safe ints."""
    parsed = parse_record(raw)
    if not isinstance(parsed, Envelope):
        return
    assert not raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8")  # strict: no surrogate bytes either

    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        names = [k for k, _ in pairs]
        assert len(set(names)) == len(names), names
        return dict(pairs)

    tree = json.loads(text, object_pairs_hook=unique)
    stack: list[object] = [tree]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            assert "\x00" not in value
            assert not any("\ud800" <= c <= "\udfff" for c in value)
        elif isinstance(value, int) and not isinstance(value, bool):
            assert abs(value) <= 2**53 - 1


def test_an_expulsion_without_readmission_is_stored_with_it_null() -> None:
    raw = (
        b'{"specversion":"1.0","id":"x1","source":"/s","type":"provider.Expelled",'
        b'"subject":"91350100M000100Y43","time":"2026-01-01T10:00:00+08:00",'
        b'"data":{"ground":"A1.2.2-4","violations":[]}}'
    )
    parsed = parse_record(raw)
    assert isinstance(parsed, Envelope)
    assert parsed.data == {"ground": "A1.2.2-4", "violations": [], "readmission": None}
