"""A1.3 re-admission eligibility as a pure function of milestones and a date."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle.eligibility import Milestone, eligibility
from tests.factories import COOLDOWN

D0 = date(2025, 1, 1)


def applied_on(d: date) -> Milestone:
    return Milestone(d, "applied")


def exit_on(d: date) -> Milestone:
    return Milestone(d, "exited")


def expelled_on(
    d: date, ground: str, until: date | None = None, permanent: bool = False
) -> Milestone:
    return Milestone(d, "expelled", ground, until, permanent)


def test_never_applied_can_apply():
    e = eligibility([], date(2026, 1, 1))
    assert e.can_apply is True
    assert e.as_dict() == {
        "can_apply": True,
        "from": None,
        "permanent": False,
        "clause": None,
        "requires": None,
        "reason": e.reason,
    }


def test_open_tenure_is_STATE():
    e = eligibility([applied_on(D0)], D0)
    assert (e.can_apply, e.clause) == (False, "STATE")


def test_history_after_as_of_is_ignored():
    history = [applied_on(D0), exit_on(date(2025, 6, 1))]
    assert eligibility(history, D0 - timedelta(days=1)).can_apply is True
    assert eligibility(history, date(2025, 5, 31)).clause == "STATE"


@pytest.mark.parametrize(
    ("ground", "clause"), [("exited", "A1.3-5"), ("A1.2.2-2", "A1.3-3")], ids=["A1.3-5", "A1.3-3"]
)
def test_A1_3_cooldowns_allow_from_D_plus_180(ground: str, clause: str):
    d = date(2026, 1, 2)
    last = exit_on(d) if ground == "exited" else expelled_on(d, ground)
    history = [applied_on(D0), last]
    day179 = eligibility(history, d + timedelta(days=179))
    assert (day179.can_apply, day179.from_, day179.clause) == (False, d + COOLDOWN, clause)
    assert eligibility(history, d + COOLDOWN).can_apply is True
    assert eligibility(history, d + COOLDOWN).as_dict()["from"] is None


def test_A1_3_1_until_and_permanent_and_manual_review():
    d = date(2026, 2, 1)
    u = date(2026, 5, 1)
    with_until = [applied_on(D0), expelled_on(d, "A1.2.2-4", until=u)]
    e = eligibility(with_until, u - timedelta(days=1))
    assert (e.can_apply, e.from_, e.clause) == (False, u, "A1.3-1")
    assert eligibility(with_until, u).can_apply is True

    forever = [applied_on(D0), expelled_on(d, "A1.2.2-4", permanent=True)]
    e = eligibility(forever, date(2099, 1, 1))
    assert (e.can_apply, e.permanent, e.clause) == (False, True, "A1.3-1")

    review = [applied_on(D0), expelled_on(d, "A3-2")]
    e = eligibility(review, date(2030, 1, 1))
    assert e.can_apply is None
    assert e.as_dict()["can_apply"] is None
    assert "manual review" in e.reason


def test_A1_3_2_requires_A1_1():
    e = eligibility([applied_on(D0), expelled_on(date(2026, 1, 1), "A1.2.2-1")], date(2026, 1, 1))
    assert (e.can_apply, e.clause, e.requires, e.from_) == (True, "A1.3-2", "A1.1", None)


def test_A1_3_4_permanent():
    e = eligibility([applied_on(D0), expelled_on(date(2026, 1, 1), "A1.2.2-3")], date(2099, 1, 1))
    assert (e.can_apply, e.permanent, e.clause, e.from_) == (False, True, "A1.3-4", None)


def test_several_exits_latest_from_wins_even_when_it_comes_from_the_earlier_exit():
    # Exit on 2026-01-01 (from 2026-06-30); a later A1.2.2-4 expulsion whose own
    # restriction ends sooner (2026-04-01). Every restriction applies: 2026-06-30 wins.
    first = date(2026, 1, 1)
    history = [
        applied_on(D0),
        exit_on(first),
        applied_on(date(2026, 1, 10)),
        expelled_on(date(2026, 2, 1), "A1.2.2-4", until=date(2026, 4, 1)),
    ]
    e = eligibility(history, date(2026, 2, 15))
    assert (e.can_apply, e.from_, e.clause) == (False, first + COOLDOWN, "A1.3-5")
    # once the later one has passed, the earlier one still holds
    assert eligibility(history, date(2026, 4, 2)).from_ == first + COOLDOWN
    assert eligibility(history, first + COOLDOWN).can_apply is True


def test_several_exits_latest_from_wins_when_it_comes_from_the_later_exit():
    history = [
        applied_on(D0),
        exit_on(date(2025, 3, 1)),
        applied_on(date(2025, 9, 1)),
        expelled_on(date(2025, 10, 1), "A1.2.2-4", until=date(2027, 1, 1)),
    ]
    e = eligibility(history, date(2025, 10, 2))
    assert (e.from_, e.clause) == (date(2027, 1, 1), "A1.3-1")


@pytest.mark.parametrize(
    "permanent",
    [
        expelled_on(date(2025, 5, 1), "A1.2.2-3"),
        expelled_on(date(2025, 5, 1), "A3-2", permanent=True),
    ],
    ids=["A1.3-4", "A1.3-1-permanent"],
)
def test_several_exits_permanent_beats_all(permanent: Milestone):
    history = [
        applied_on(D0),
        permanent,
        applied_on(date(2025, 6, 1)),
        exit_on(date(2025, 7, 1)),
    ]
    for as_of in (date(2025, 7, 2), date(2026, 7, 1), date(2099, 1, 1)):
        e = eligibility(history, as_of)
        assert (e.can_apply, e.permanent, e.from_) == (False, True, None)


def test_manual_review_is_superseded_by_a_later_tenure():
    history = [
        applied_on(D0),
        expelled_on(date(2025, 3, 1), "A1.2.2-4"),
        applied_on(date(2025, 3, 2)),
        exit_on(date(2025, 4, 1)),
    ]
    e = eligibility(history, date(2025, 4, 1) + COOLDOWN)
    assert e.can_apply is True


days = st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31))


@given(
    st.lists(
        st.tuples(
            days,
            st.sampled_from(["applied", "declined", "exited", "expelled"]),
            st.sampled_from(["A1.2.2-1", "A1.2.2-2", "A1.2.2-3", "A1.2.2-4", "A3-2"]),
            st.none() | days,
            st.booleans(),
        ),
        max_size=8,
    ),
    days,
)
@settings(max_examples=300, deadline=None)
def test_eligibility_is_consistent_for_any_history(raw, as_of):
    history = [
        Milestone(d, kind, ground if kind == "expelled" else None, until, perm)
        for d, kind, ground, until, perm in sorted(raw, key=lambda r: r[0])
    ]
    e = eligibility(history, as_of)
    shape = e.as_dict()
    assert set(shape) == {"can_apply", "from", "permanent", "clause", "requires", "reason"}
    assert e.reason
    if e.permanent:
        assert e.can_apply is False and e.from_ is None
    if e.from_ is not None:
        assert e.can_apply is False and e.from_ > as_of
    if e.can_apply is True:
        assert e.clause in (None, "A1.3-2")
    banned = any(
        m.on <= as_of
        and m.kind == "expelled"
        and (
            m.ground == "A1.2.2-3" or (m.ground in ("A1.2.2-4", "A3-2") and m.readmission_permanent)
        )
        for m in history
    )
    if banned:
        assert e.can_apply is False
