"""Hypothesis strategies shared by the property tests: random provider event streams.

A stream has 1-3 providers and random event types, business dates, time zones, flags,
re-sent records and malformed lines; in half of the streams business dates rise with
the stream order. Some hold a manual review (A1.4) and the platform's decision on it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from hypothesis import strategies as st

from tests.factories import (
    ARTICLE_2,
    CAPABILITIES,
    DEPOSIT_FEN,
    EXPULSION_GROUNDS,
    MIN_CAPITAL_FEN,
    admitted,
    applied,
    declined,
    deposit_deducted,
    deposit_paid,
    exited,
    expelled,
    line,
    readmission_decided,
    uscc,
    violation,
)

SUBJECTS = [uscc(41), uscc(42), uscc(43)]
FIRST_DAY = date(2025, 1, 1)
LAST_DAY = date(2027, 12, 31)

days = st.dates(min_value=FIRST_DAY, max_value=LAST_DAY)
amounts = st.sampled_from([1, 999, 2_500_000, DEPOSIT_FEN // 2, DEPOSIT_FEN - 1, DEPOSIT_FEN])
readmissions = st.one_of(
    st.none(),
    st.just({"permanent": True}),
    days.map(lambda d: {"until": d.isoformat()}),
)
decisions = st.one_of(  # provider.ReadmissionDecided (1.1)
    st.just({"cleared": True}),
    st.just({"permanent": True}),
    days.map(lambda d: {"until": d.isoformat()}),
)
applications = st.one_of(
    st.just({}),
    st.just({}),
    st.just({}),
    st.just({"registered_capital_fen": MIN_CAPITAL_FEN - 1}),
    st.just({"is_store_account": True}),
    st.just({"capabilities": list(CAPABILITIES[1:])}),
    st.just({"entity_type": "individual_business"}),
)


def _time(d: date, hour: int, utc: bool) -> str:
    return (
        f"{d.isoformat()}T{hour:02d}:30:00Z" if utc else f"{d.isoformat()}T{hour:02d}:30:00+08:00"
    )


@st.composite
def events_for(draw: st.DrawFn, subject: str, when: str) -> list[dict[str, Any] | bytes]:
    """One random event, or an onboarding (Applied, Admitted, full deposit) at once."""
    kind = draw(
        st.sampled_from(
            [
                "onboard",
                "onboard",
                "Applied",
                "Applied",
                "Admitted",
                "DepositPaid",
                "DepositDeducted",
                "ViolationRecorded",
                "Exited",
                "Exited",
                "Expelled",
                "Expelled",
                "ApplicationDeclined",
                "ReadmissionDecided",
                "review",
                "malformed",
            ]
        )
    )
    if kind == "onboard":
        return [applied(subject, when), admitted(subject, when), deposit_paid(subject, when)]
    if kind == "Applied":
        return [applied(subject, when, **draw(applications))]
    if kind == "Admitted":
        return [admitted(subject, when)]
    if kind == "DepositPaid":
        return [deposit_paid(subject, when, draw(amounts))]
    if kind == "DepositDeducted":
        return [deposit_deducted(subject, when, draw(amounts))]
    if kind == "ViolationRecorded":
        return [violation(subject, when, draw(st.sampled_from(ARTICLE_2)))]
    if kind == "Exited":
        flags = draw(st.sampled_from([(True, True)] * 3 + [(False, True), (True, False)]))
        return [exited(subject, when, settled=flags[0], fulfilled=flags[1])]
    if kind == "Expelled":
        ground = draw(st.sampled_from(EXPULSION_GROUNDS))
        return [expelled(subject, when, ground, readmission=draw(readmissions))]
    if kind == "ApplicationDeclined":
        return [declined(subject, when)]
    if kind == "ReadmissionDecided":
        return [readmission_decided(subject, when, draw(decisions))]
    if kind == "review":
        # An expulsion without a restriction (manual review, A1.4), an application during
        # it, the platform's decision, and an application after it.
        ground = draw(st.sampled_from(["A1.2.2-4", "A3-2"]))
        return [
            applied(subject, when),
            admitted(subject, when),
            expelled(subject, when, ground),
            applied(subject, when),
            readmission_decided(subject, when, draw(decisions)),
            applied(subject, when),
        ]
    broken = applied(subject, when)
    broken["data"]["registered_capital_fen"] = -1
    return [draw(st.sampled_from([b"{not json", b"[]", line(broken)]))]


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """Random streams; in half of them business dates rise with the stream order."""
    subjects = SUBJECTS[: draw(st.integers(1, 3))]
    size = draw(st.integers(1, 20))
    dates = draw(st.lists(days, min_size=size, max_size=size))
    if draw(st.booleans()):
        dates.sort()
    out: list[dict[str, Any] | bytes] = []
    for d in dates:
        if out and draw(st.integers(0, 9)) == 0:
            out.append(draw(st.sampled_from(out)))  # a re-sent record: same id
            continue
        subject = draw(st.sampled_from(subjects))
        when = _time(d, draw(st.integers(0, 23)), draw(st.booleans()))
        out += draw(events_for(subject, when))
    return [line(e) for e in out]
