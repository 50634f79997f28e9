"""The pure half of the views: eligibility as SQL-filterable data, and requirements.

The segments and the restriction columns must agree with the domain's own
``lifecycle.eligibility.eligibility`` for every date: they are what lets ``can_apply``
be filtered in SQL for any ``as_of``.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle.eligibility import Milestone, eligibility, standing
from projections.documents import (
    eligibility_segments,
    requirements_at,
    stored_requirements,
)

FIRST = date(2024, 1, 1)
days = st.dates(min_value=FIRST, max_value=date(2027, 12, 31))
grounds = st.sampled_from(["A1.2.2-1", "A1.2.2-2", "A1.2.2-3", "A1.2.2-4", "A3-2"])


@st.composite
def milestones(draw: st.DrawFn) -> list[Milestone]:
    """Any sequence of milestones (eligibility is a pure function of them), dates unsorted."""
    out: list[Milestone] = []
    for _ in range(draw(st.integers(0, 7))):
        kind = draw(st.sampled_from(["applied", "applied", "declined", "exited", "expelled"]))
        on = draw(days)
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
