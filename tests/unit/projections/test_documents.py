"""The pure half of the views: eligibility as SQL-filterable data, and requirements.

The segments and the restriction columns must agree with the domain's own
``lifecycle.eligibility.eligibility`` for every date: they are what lets ``can_apply``
be filtered in SQL for any ``as_of``.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle.eligibility import Milestone, eligibility, standing
from lifecycle.provider import Provider
from projections.documents import (
    eligibility_segments,
    requirements_at,
    stored_requirements,
)
from projections.projection import event_clauses

FIRST = date(2024, 1, 1)
days = st.dates(min_value=FIRST, max_value=date(2027, 12, 31))
grounds = st.sampled_from(["A1.2.2-1", "A1.2.2-2", "A1.2.2-3", "A1.2.2-4", "A3-2"])


@st.composite
def milestones(draw: st.DrawFn) -> list[Milestone]:
    """Any sequence of milestones (eligibility is a pure function of them), dates unsorted."""
    out: list[Milestone] = []
    for _ in range(draw(st.integers(0, 7))):
        kind = draw(
            st.sampled_from(
                ["applied", "applied", "admitted", "declined", "exited", "expelled", "decided"]
            )
        )
        on = draw(days)
        if kind == "decided":  # provider.ReadmissionDecided: until, permanent or cleared
            decision = draw(st.sampled_from(["until", "permanent", "cleared"]))
            out.append(
                Milestone(
                    on,
                    "decided",
                    readmission_until=draw(days) if decision == "until" else None,
                    readmission_permanent=decision == "permanent",
                )
            )
            continue
        if kind != "expelled":
            out.append(Milestone(on, kind))
            continue
        readmission = draw(st.sampled_from(["none", "until", "permanent"]))
        out.append(
            Milestone(
                on,
                "expelled",
                ground=draw(grounds),
                readmission_until=draw(days) if readmission == "until" else None,
                readmission_permanent=readmission == "permanent",
            )
        )
    return out


@given(milestones(), st.lists(days, min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_segments_give_the_domains_eligibility_on_every_date(
    history: list[Milestone], probes: list[date]
) -> None:
    segments = eligibility_segments(history)
    # The segments tile the whole calendar, in order, without gaps or overlaps.
    assert segments[0].valid_from == date.min
    assert segments[-1].valid_to == date.max
    for a, b in itertools.pairwise(segments):
        assert a.valid_to == b.valid_from
        assert (a.can_apply, a.clause) != (b.can_apply, b.clause)  # merged when equal
    edges = [m.on for m in history] + [s.valid_from for s in segments[1:]]
    for day in probes + edges + [e - timedelta(days=1) for e in edges]:
        [segment] = [s for s in segments if s.valid_from <= day < s.valid_to]
        verdict = eligibility(history, day)
        assert (segment.can_apply, segment.clause) == (verdict.can_apply, verdict.clause), day


@given(milestones(), st.integers(0, 800))
@settings(max_examples=300, deadline=None)
def test_restriction_columns_give_can_apply_once_every_milestone_is_past(
    history: list[Milestone], later: int
) -> None:
    last = max((m.on for m in history), default=FIRST)
    day = last + timedelta(days=later)
    assert standing(history).can_apply(day) == eligibility(history, day).can_apply


def test_restriction_columns_name_the_governing_clause() -> None:
    exit_on = date(2025, 6, 1)
    r = standing([Milestone(date(2025, 1, 1), "applied"), Milestone(exit_on, "exited")])
    assert (r.tenure_open, r.permanent, r.manual_review, r.requires_a11) == (
        False,
        False,
        False,
        False,
    )
    assert r.blocked_until == exit_on + timedelta(days=180)
    assert r.clause == "A1.3-5"
    banned = standing(
        [
            Milestone(date(2025, 1, 1), "applied"),
            Milestone(exit_on, "expelled", ground="A1.2.2-3"),
        ]
    )
    assert banned.permanent and banned.clause == "A1.3-4"
    review = standing(
        [
            Milestone(date(2025, 1, 1), "applied"),
            Milestone(exit_on, "expelled", ground="A1.2.2-4"),
        ]
    )
    assert review.manual_review and review.can_apply(date(2030, 1, 1)) is None
    assert review.clause == "A1.4"
    assert standing([Milestone(date(2025, 1, 1), "applied")]).clause == "STATE"


def test_a_cooldown_requirement_lapses_on_its_date() -> None:
    exit_on = date(2025, 6, 1)
    r = standing([Milestone(date(2025, 1, 1), "applied"), Milestone(exit_on, "exited")])
    items = stored_requirements("exited", 0, 0, [], r)
    assert items == [
        {
            "clause": "A1.3-5",
            "reason": "cooldown (A1.3-5): may apply again from 2025-11-28",
            "who": "provider",
            "by": "2025-11-28",
            "until": "2025-11-28",
        }
    ]
    assert [i["clause"] for i in requirements_at(items, date(2025, 11, 27))] == ["A1.3-5"]
    assert requirements_at(items, date(2025, 11, 28)) == []


def test_open_tenures_require_the_platforms_decision_or_the_providers_deposit() -> None:
    none = standing([Milestone(date(2025, 1, 1), "applied")])
    waiting = stored_requirements("applied", 0, 0, [], none)
    assert [(i["clause"], i["who"]) for i in waiting] == [("A1.1", "platform")]
    failing = stored_requirements(
        "applied", 0, 0, [{"clause": "A1.1.1-4", "reason": "store account"}], none
    )
    assert [(i["clause"], i["who"]) for i in failing] == [("A1.1.1-4", "provider")]
    short = stored_requirements("admitted", 4_000_000, 6_000_000, [], none)
    assert [(i["clause"], i["who"]) for i in short] == [("A1.1.1-3", "provider")]
    assert "6000000 fen short" in short[0]["reason"]
    assert stored_requirements("active", 10_000_000, 0, [], none) == []


# --- 1.1: manual review (A1.4) and provider.ReadmissionDecided on the read side ----------

EXPELLED = date(2025, 6, 1)
UNDER_REVIEW = [
    Milestone(date(2025, 1, 1), "applied"),
    Milestone(date(2025, 1, 2), "admitted"),
    Milestone(EXPELLED, "expelled", ground="A3-2"),
]


def _rows(status: str, history: list[Milestone]) -> list[tuple[str, str, str | None]]:
    return [
        (i["clause"], i["who"], i["until"])
        for i in stored_requirements(status, 0, 0, [], standing(history))
    ]


def test_a_pending_review_says_the_platform_acts_next() -> None:
    items = stored_requirements("expelled", 0, 0, [], standing(UNDER_REVIEW))
    assert [(i["clause"], i["who"], i["by"], i["until"]) for i in items] == [
        ("A1.4", "platform", None, None)
    ]
    assert "manual review" in items[0]["reason"] and "2025-06-01" in items[0]["reason"]
    assert "ReadmissionDecided" in items[0]["reason"]
    # it never lapses by itself
    assert requirements_at(items, date(2099, 12, 31)) == requirements_at(items, EXPELLED)


def test_a_pending_review_row_survives_a_declined_application() -> None:
    history = [
        *UNDER_REVIEW,
        Milestone(date(2025, 6, 2), "applied"),  # a 1.0 store accepted it
        Milestone(date(2025, 6, 3), "declined"),
    ]
    assert _rows("declined", history) == [("A1.4", "platform", None)]


def test_a_decision_replaces_the_review_row() -> None:
    decided = date(2025, 6, 10)
    until = date(2026, 1, 1)
    dated = [*UNDER_REVIEW, Milestone(decided, "decided", readmission_until=until)]
    assert _rows("expelled", dated) == [("A1.3-1", "provider", "2026-01-01")]
    banned = [*UNDER_REVIEW, Milestone(decided, "decided", readmission_permanent=True)]
    assert _rows("expelled", banned) == [("A1.3-1", "platform", None)]
    cleared = [*UNDER_REVIEW, Milestone(decided, "decided")]
    assert _rows("expelled", cleared) == []


def test_segments_end_a_decisions_restriction_on_its_until_date() -> None:
    until = date(2026, 1, 1)
    history = [*UNDER_REVIEW, Milestone(date(2025, 6, 10), "decided", readmission_until=until)]
    assert [(s.valid_from, s.can_apply, s.clause) for s in eligibility_segments(history)] == [
        (date.min, True, None),
        (date(2025, 1, 1), False, "STATE"),
        (EXPELLED, None, "A1.4"),
        (date(2025, 6, 10), False, "A1.3-1"),
        (until, True, None),
    ]


def test_the_timeline_cites_A1_4_for_a_decision() -> None:
    def decision(readmission: dict[str, object]) -> Provider.ReadmissionDecided:
        return Provider.ReadmissionDecided(
            originator_id=uuid4(),
            originator_version=2,
            timestamp=datetime(2025, 6, 10, tzinfo=UTC),
            ce_id="d-1",
            ce_source="/x",
            data={"decided_by": "ops", "readmission": readmission},
            recorded_at=datetime(2025, 6, 10, tzinfo=UTC),
        )

    assert event_clauses(decision({"until": "2026-01-01"})) == ["A1.4", "A1.3-1"]
    assert event_clauses(decision({"permanent": True})) == ["A1.4", "A1.3-1"]
    assert event_clauses(decision({"cleared": True})) == ["A1.4"]
