"""GB 32100-2015 Unified Social Credit Codes: the provider's natural key."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle.uscc import (
    ALPHABET,
    WEIGHTS,
    check_character,
    is_valid_uscc,
    provider_id,
    uscc_error,
)
from tests.factories import bad_check_uscc, uscc

first17s = st.text(alphabet=ALPHABET, min_size=17, max_size=17)


def _reference_check(first17: str) -> str:
    """The standard's definition, written independently: C18 = 31 - (Σ Ci·Wi mod 31)."""
    total = sum(ALPHABET.index(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    c18 = 31 - total % 31
    return ALPHABET[0 if c18 == 31 else c18]


def test_alphabet_has_31_characters_without_I_O_S_V_Z():
    assert len(ALPHABET) == 31
    assert not set("IOSVZ") & set(ALPHABET)


@pytest.mark.parametrize(
    "code",
    [
        "91350100M000100Y43",  # published sample codes (Fujian, Beijing, Shenzhen)
        "91110000802100433B",
        "914403001922038216",
    ],
)
def test_known_real_world_codes_are_valid(code: str):
    assert uscc_error(code) is None
    assert is_valid_uscc(code)


@given(first17s)
@settings(max_examples=200, deadline=None)
def test_check_character_matches_the_standard_formula(first17: str):
    assert check_character(first17) == _reference_check(first17)
    assert is_valid_uscc(first17 + check_character(first17))


@given(first17s, st.sampled_from(ALPHABET))
@settings(max_examples=200, deadline=None)
def test_any_other_check_character_is_rejected(first17: str, wrong: str):
    good = check_character(first17)
    if wrong != good:
        error = uscc_error(first17 + wrong)
        assert error is not None and "check character" in error


def test_factory_codes_are_valid_and_distinct():
    codes = {uscc(n) for n in range(50)}
    assert len(codes) == 50
    assert all(is_valid_uscc(c) for c in codes)
    assert not is_valid_uscc(bad_check_uscc(1))


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        (uscc(1)[:17], "18 characters"),
        (uscc(1) + "0", "18 characters"),
        ("", "18 characters"),
        (uscc(1).lower(), "not allowed"),
        ("91330100I0000000O1", "not allowed"),  # I and O are not in the alphabet
        ("9133010000000000S1", "not allowed"),
        ("91330100-00000001X", "not allowed"),
    ],
)
def test_wrong_length_or_alphabet_is_explained(code: str, fragment: str):
    error = uscc_error(code)
    assert error is not None
    assert fragment in error
    assert not is_valid_uscc(code)


def test_provider_id_is_stable_per_entity_and_distinct_between_entities():
    assert provider_id(uscc(1)) == provider_id(uscc(1))
    assert provider_id(uscc(1)) != provider_id(uscc(2))
