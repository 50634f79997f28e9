"""The fast parse path accepts exactly what the checked path accepts, with the same event."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle.contract import Envelope, parse_record, parse_record_checked
from service.demo import generate

SAMPLE = list(generate(providers=150, seed=29))


def test_fast_and_checked_paths_agree_on_a_realistic_stream() -> None:
    kinds = set()
    for raw in SAMPLE:
        fast, checked = parse_record(raw), parse_record_checked(raw)
        kinds.add(type(checked).__name__)
        if isinstance(checked, Envelope):
            assert isinstance(fast, Envelope)
            assert fast.model_dump() == checked.model_dump()
        else:
            assert fast == checked
    assert kinds == {"Envelope", "Malformed"}


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(0, len(SAMPLE) - 1),
    cut=st.integers(0, 400),
    junk=st.binary(max_size=3),
)
def test_fast_and_checked_paths_agree_on_damaged_records(index: int, cut: int, junk: bytes) -> None:
    raw = SAMPLE[index]
    damaged = raw[:cut] + junk + raw[cut + len(junk) :]
    fast, checked = parse_record(damaged), parse_record_checked(damaged)
    if isinstance(checked, Envelope):
        assert isinstance(fast, Envelope) and fast.model_dump() == checked.model_dump()
    else:
        assert fast == checked


def test_an_expulsion_without_readmission_is_stored_with_it_null() -> None:
    raw = (
        b'{"specversion":"1.0","id":"x1","source":"/s","type":"provider.Expelled",'
        b'"subject":"91350100M000100Y43","time":"2026-01-01T10:00:00+08:00",'
        b'"data":{"ground":"A1.2.2-4","violations":[]}}'
    )
    parsed = parse_record(raw)
    assert isinstance(parsed, Envelope)
    assert parsed.data == {"ground": "A1.2.2-4", "violations": [], "readmission": None}
