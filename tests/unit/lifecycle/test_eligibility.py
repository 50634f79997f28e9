"""A1.3 re-admission eligibility as a pure function of milestones and a date."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle.eligibility import Milestone, eligibility, standing
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


def admitted_on(d: date) -> Milestone:
    return Milestone(d, "admitted")


def decided_on(d: date, until: date | None = None, permanent: bool = False) -> Milestone:
    """A ``provider.ReadmissionDecided``: until, permanent, or neither (cleared)."""
    return Milestone(d, "decided", None, until, permanent)


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


def test_A1_4_a_pending_review_survives_a_later_tenure():
    # 1.1 (was: "superseded by a later tenure", can_apply true): a tenure that a 1.0 store
    # opened during the review does not end it; only a decision does (RULEBOOK, A1.4).
    history = [
        applied_on(D0),
        expelled_on(date(2025, 3, 1), "A1.2.2-4"),
        applied_on(date(2025, 3, 2)),
        admitted_on(date(2025, 3, 3)),
        exit_on(date(2025, 4, 1)),
    ]
    cooling = eligibility(history, date(2025, 4, 2))
    # several past exits: a dated restriction still in the future answers false ...
    assert (cooling.can_apply, cooling.from_, cooling.clause) == (
        False,
        date(2025, 4, 1) + COOLDOWN,
        "A1.3-5",
    )
    # ... and after it, the pending manual review answers null
    e = eligibility(history, date(2025, 4, 1) + COOLDOWN)
    assert (e.can_apply, e.from_, e.clause) == (None, None, "A1.4")
    assert "manual review" in e.reason and "2025-03-01" in e.reason
    decided = [*history, decided_on(date(2025, 5, 1))]
    assert eligibility(decided, date(2025, 4, 1) + COOLDOWN).can_apply is True


# --- A1.4: manual review as a state, ended by provider.ReadmissionDecided (1.1) ----------

EXPELLED = date(2026, 3, 1)
REVIEW_GROUNDS = pytest.mark.parametrize("ground", ["A1.2.2-4", "A3-2"])


def after_expulsion(ground: str = "A3-2") -> list[Milestone]:
    return [applied_on(D0), admitted_on(D0 + timedelta(days=1)), expelled_on(EXPELLED, ground)]


@REVIEW_GROUNDS
def test_A1_4_manual_review_is_null_with_clause_A1_4_until_a_decision(ground: str):
    for as_of in (EXPELLED, EXPELLED + timedelta(days=1), date(2099, 12, 31)):
        e = eligibility(after_expulsion(ground), as_of)
        assert (e.can_apply, e.from_, e.permanent, e.clause, e.requires) == (
            None,
            None,
            False,
            "A1.4",
            None,
        )
        assert "manual review" in e.reason and ground in e.reason


def test_A1_4_a_pending_review_survives_a_declined_application():
    # A 1.0 store could hold an application accepted during the review, then declined.
    history = [
        *after_expulsion(),
        applied_on(EXPELLED + timedelta(days=1)),
        Milestone(EXPELLED + timedelta(days=2), "declined"),
    ]
    e = eligibility(history, EXPELLED + timedelta(days=3))
    assert (e.can_apply, e.clause) == (None, "A1.4")
    assert standing(history).manual_review is True
    assert standing(history).review == history[2]


def test_A1_4_decision_until_becomes_from_under_A1_3_1():
    decided = EXPELLED + timedelta(days=10)
    restricted = date(2026, 9, 1)
    history = [*after_expulsion(), decided_on(decided, until=restricted)]
    e = eligibility(history, decided)
    assert (e.can_apply, e.from_, e.permanent, e.clause) == (False, restricted, False, "A1.3-1")
    assert str(decided) in e.reason and str(EXPELLED) in e.reason
    day_before = eligibility(history, restricted - timedelta(days=1))
    assert (day_before.can_apply, day_before.from_) == (False, restricted)
    on = eligibility(history, restricted)
    assert (on.can_apply, on.from_, on.clause) == (True, None, None)


def test_A1_4_decision_with_until_on_the_day_itself_allows_applying_that_day():
    decided = EXPELLED + timedelta(days=10)
    history = [*after_expulsion(), decided_on(decided, until=decided)]
    e = eligibility(history, decided)
    assert (e.can_apply, e.from_, e.clause) == (True, None, None)
    # the day before, the decision is not history yet: still under review
    assert eligibility(history, decided - timedelta(days=1)).can_apply is None


def test_A1_4_decision_permanent_bars_for_ever_under_A1_3_1():
    history = [*after_expulsion("A1.2.2-4"), decided_on(EXPELLED, permanent=True)]
    for as_of in (EXPELLED, date(2099, 12, 31)):
        e = eligibility(history, as_of)
        assert (e.can_apply, e.from_, e.permanent, e.clause) == (False, None, True, "A1.3-1")
    assert standing(history).permanent and not standing(history).manual_review


def test_A1_4_decision_cleared_lifts_that_expulsions_restriction():
    history = [*after_expulsion(), decided_on(EXPELLED + timedelta(days=3))]
    e = eligibility(history, EXPELLED + timedelta(days=3))
    assert (e.can_apply, e.from_, e.permanent, e.clause) == (True, None, False, None)
    assert standing(history).clause is None


def test_A1_4_a_cleared_review_leaves_every_other_restriction_in_force():
    # An older permanent ban is never lifted by a decision on a later expulsion.
    history = [
        applied_on(D0),
        expelled_on(date(2025, 2, 1), "A1.2.2-3"),
        applied_on(date(2025, 3, 1)),  # a 1.0 store accepted it
        admitted_on(date(2025, 3, 2)),
        expelled_on(EXPELLED, "A3-2"),
        decided_on(EXPELLED + timedelta(days=1)),
    ]
    e = eligibility(history, date(2030, 1, 1))
    assert (e.can_apply, e.permanent, e.clause) == (False, True, "A1.3-4")


def test_A1_4_a_decision_without_a_pending_review_changes_nothing():
    history = [applied_on(D0), exit_on(EXPELLED), decided_on(EXPELLED, permanent=True)]
    assert eligibility(history, EXPELLED + COOLDOWN).can_apply is True


# --- A1.3-2: discharged by a later admission (1.1) ---------------------------------------


def test_A1_3_2_is_discharged_by_a_later_admission():
    requalified = [
        *after_expulsion("A1.2.2-1"),
        applied_on(date(2026, 4, 1)),
        admitted_on(date(2026, 4, 2)),
        exit_on(date(2026, 5, 1)),
    ]
    assert standing(requalified).requires_a11 is False
    e = eligibility(requalified, date(2026, 5, 1) + COOLDOWN)
    assert (e.can_apply, e.clause, e.requires) == (True, None, None)
    # the later exit brings its own restriction (A1.3-5)
    assert eligibility(requalified, date(2026, 5, 2)).clause == "A1.3-5"


def test_A1_3_2_still_binds_after_a_declined_application():
    history = [
        *after_expulsion("A1.2.2-1"),
        applied_on(date(2026, 4, 1)),
        Milestone(date(2026, 4, 2), "declined"),
    ]
    e = eligibility(history, date(2026, 4, 3))
    assert (e.can_apply, e.clause, e.requires) == (True, "A1.3-2", "A1.1")
    # and while the new application is open it is not yet discharged
    assert standing(history[:-1]).requires_a11 is True
    assert standing([*history[:-1], admitted_on(date(2026, 4, 2))]).requires_a11 is False


def test_A1_3_2_a_second_A1_2_2_1_expulsion_binds_again():
    history = [
        *after_expulsion("A1.2.2-1"),
        applied_on(date(2026, 4, 1)),
        admitted_on(date(2026, 4, 2)),
        expelled_on(date(2026, 6, 1), "A1.2.2-1"),
    ]
    e = eligibility(history, date(2026, 6, 1))
    assert (e.clause, e.requires) == ("A1.3-2", "A1.1")
    assert "2026-06-01" in e.reason


days = st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31))


@given(
    st.lists(
        st.tuples(
            days,
            st.sampled_from(["applied", "admitted", "declined", "exited", "expelled", "decided"]),
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
    if e.can_apply is None:  # only a pending manual review answers null (A1.4)
        assert (e.clause, e.from_, e.permanent) == ("A1.4", None, False)
        assert "manual review" in e.reason
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
