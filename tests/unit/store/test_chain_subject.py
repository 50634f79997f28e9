"""The chain's ``subject`` column on PostgreSQL: any subject an inbound record may carry
(U+0000, a lone surrogate, text starting with the escape mark) is held exactly, reversibly,
as ``text`` can hold it; an ordinary subject is held as it is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from store.chain import Link
from store.pg_copy import chain_subject, column_subject
from store.postgres import _storable

subjects = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(["\x00", "\x01", "\ud800", "a", "名"])),
    st.just("91330100000000001C"),
)


@given(subjects)
def test_a_subject_is_held_as_text_can_hold_it_and_read_back_exactly(subject: str) -> None:
    stored = column_subject(subject)
    assert stored is not None and "\x00" not in stored
    stored.encode()  # UTF-8 without surrogates: what PostgreSQL ``text`` takes
    assert chain_subject(stored) == subject


@given(st.text(alphabet=st.characters(blacklist_characters="\x00\x01", codec="utf-8")))
def test_an_ordinary_subject_is_held_as_it_is(subject: str) -> None:
    assert column_subject(subject) is subject


def test_links_are_copied_only_when_a_subject_needs_escaping() -> None:
    plain = [Link("a", 1, 1, "91330100000000001C", b"", b""), Link("b", 1, 2, None, b"", b"")]
    assert _storable(plain) is plain
    mixed = [*plain, Link("c", 1, 3, "n\x00", b"", b"")]
    out = _storable(mixed)
    assert [link.subject for link in out[:2]] == ["91330100000000001C", None]
    assert out[2].subject == "\x01" + b"n\x00".hex()
    assert chain_subject(None) is None
