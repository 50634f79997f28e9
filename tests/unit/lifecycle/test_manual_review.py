"""CONTRACT.md 1.1: manual review as a state (A1.4) and ``provider.ReadmissionDecided``.

While an A1.2.2-4 or A3-2 expulsion came without ``readmission`` and no
``ReadmissionDecided`` has followed it, every application is refused with ``A1.4``
(unless a dated or permanent restriction in force refuses it first with its A1.3 clause)
and eligibility is ``can_apply: null``. The platform's decision sets the restriction
(``until`` → ``from``, A1.3-1; ``permanent``) or clears it; a decision when no review is
pending is refused ``STATE``. A pending review survives every later event.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from lifecycle.contract import Envelope
from lifecycle.parsing import Malformed, parse_record
from lifecycle.provider import Provider, judge
from tests.factories import (
    CLEARED,
    COOLDOWN,
    PERMANENT,
    admitted,
    applied,
    declined,
    deposit_paid,
    eligibility_of,
    exited,
    expelled,
    last,
    line,
    onboard,
    outcomes,
    plus,
    readmission_decided,
    run,
    until,
    uscc,
)

U = uscc(71)
START = "2025-01-01"
EXPELLED = date(2026, 3, 1)
REVIEW_GROUNDS = pytest.mark.parametrize("ground", ["A1.2.2-4", "A3-2"])
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def state(report: dict[str, Any], subject: str = U) -> dict[str, Any]:
    return report["providers"][subject]


def reviewed(
    *events: dict[str, Any], ground: str = "A3-2", as_of: str | date = "2026-06-01"
) -> dict[str, Any]:
    """An active provider expelled on ``EXPELLED`` without a restriction, then ``events``."""
    violations = ["A2.2-4"] if ground == "A3-2" else []
    return run(
        [*onboard(U, START), expelled(U, EXPELLED, ground, violations=violations), *events],
        as_of=as_of,
    )


# --- the payload ---------------------------------------------------------------------


@pytest.mark.parametrize("readmission", [until("2026-09-01"), PERMANENT, CLEARED])
def test_ReadmissionDecided_payload_takes_until_permanent_or_cleared(readmission):
    parsed = parse_record(line(readmission_decided(U, EXPELLED, readmission)))
    assert isinstance(parsed, Envelope)
    assert parsed.type == "provider.ReadmissionDecided"
    assert parsed.data == {"decided_by": "platform-review-1", "readmission": readmission}


@pytest.mark.parametrize(
    "readmission",
    [
        None,
        {},
        {"permanent": False},
        {"cleared": False},
        {"cleared": "true"},
        {"until": "2026-13-01"},
        {"until": "2026-09-01", "permanent": True},
        {"until": "2026-09-01", "cleared": True},
        {"never": True},
    ],
)
def test_ReadmissionDecided_payload_without_one_decision_is_malformed(readmission):
    ev = readmission_decided(U, EXPELLED)
    ev["data"]["readmission"] = readmission
    parsed = parse_record(line(ev))
    assert isinstance(parsed, Malformed) and parsed.code == "invalid_data", parsed


def test_ReadmissionDecided_payload_needs_decided_by():
    ev = readmission_decided(U, EXPELLED)
    del ev["data"]["decided_by"]
    parsed = parse_record(line(ev))
    assert isinstance(parsed, Malformed) and parsed.code == "invalid_data"


# --- refusal A1.4: while the review is pending ---------------------------------------------


@REVIEW_GROUNDS
@pytest.mark.parametrize("days_after", [0, 1, 180, 1000])
def test_A1_4_every_application_during_manual_review_is_refused(ground: str, days_after: int):
    report = reviewed(applied(U, plus(EXPELLED, days_after)), ground=ground)
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["A1.4"]
    assert "manual review" in last(report)["reason"] and "A1.4" in last(report)["reason"]
    assert state(report)["status"] == "expelled"


@REVIEW_GROUNDS
def test_A1_4_eligibility_is_null_with_a_manual_review_reason(ground: str):
    for as_of in (EXPELLED, plus(EXPELLED, 1), date(2099, 12, 31)):
        e = eligibility_of(reviewed(ground=ground, as_of=as_of), U)
        assert (e["can_apply"], e["from"], e["permanent"], e["clause"], e["requires"]) == (
            None,
            None,
            False,
            "A1.4",
            None,
        )
        assert "manual review" in e["reason"]


def test_A1_4_the_review_survives_refused_applications_and_other_refused_events():
    report = reviewed(
        applied(U, plus(EXPELLED, 1)),  # refused A1.4
        declined(U, plus(EXPELLED, 2)),  # refused STATE: nothing to decline
        admitted(U, plus(EXPELLED, 3)),  # refused STATE
        deposit_paid(U, plus(EXPELLED, 4)),  # refused STATE
        applied(U, plus(EXPELLED, 400)),  # still A1.4
        as_of=plus(EXPELLED, 500),
    )
    assert [o["codes"] for o in report["outcomes"][-5:]] == [
        ["A1.4"],
        ["STATE"],
        ["STATE"],
        ["STATE"],
        ["A1.4"],
    ]
    assert eligibility_of(report, U)["can_apply"] is None


def test_A1_4_an_expulsion_with_a_restriction_is_no_review():
    report = run(
        [
            *onboard(U, START),
            expelled(U, EXPELLED, "A3-2", violations=["A2.2-4"], readmission=until("2026-04-01")),
            applied(U, "2026-04-01"),
        ]
    )
    assert last(report)["outcome"] == "accepted"


# --- ReadmissionDecided: STATE when no review is pending -----------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param([], id="never-applied"),
        pytest.param([applied(U, START)], id="applied"),
        pytest.param(onboard(U, START), id="active"),
        pytest.param([*onboard(U, START), exited(U, EXPELLED)], id="exited"),
        pytest.param([applied(U, START), declined(U, plus(START, 1))], id="declined"),
        pytest.param(
            [
                *onboard(U, START),
                expelled(U, EXPELLED, "A1.2.2-4", readmission=until("2027-01-01")),
            ],
            id="expelled-with-until",
        ),
        pytest.param(
            [*onboard(U, START), expelled(U, EXPELLED, "A3-2", readmission=PERMANENT)],
            id="expelled-permanent",
        ),
        pytest.param([*onboard(U, START), expelled(U, EXPELLED, "A1.2.2-2")], id="A1.2.2-2"),
        pytest.param([*onboard(U, START), expelled(U, EXPELLED, "A1.2.2-3")], id="A1.2.2-3"),
        pytest.param([*onboard(U, START), expelled(U, EXPELLED, "A1.2.2-1")], id="A1.2.2-1"),
        pytest.param(
            [*onboard(U, START), expelled(U, EXPELLED, "A3-2"), readmission_decided(U, EXPELLED)],
            id="already-decided",
        ),
    ],
)
def test_refusal_ReadmissionDecided_without_a_pending_review_is_STATE(prefix):
    report = run([*prefix, readmission_decided(U, plus(EXPELLED, 5), until("2026-09-01"))])
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["STATE"]
    assert "A1.4" in last(report)["reason"] or "never applied" in last(report)["reason"]


@REVIEW_GROUNDS
def test_ReadmissionDecided_ends_a_pending_review(ground: str):
    report = reviewed(readmission_decided(U, plus(EXPELLED, 10)), ground=ground)
    assert last(report)["outcome"] == "accepted"
    assert state(report)["status"] == "expelled"  # a decision opens no tenure


# --- the decision's effect on eligibility and applications --------------------------------


def test_ReadmissionDecided_until_becomes_from_under_A1_3_1():
    decided = plus(EXPELLED, 10)
    restricted = date(2026, 11, 15)
    decision = readmission_decided(U, decided, until(restricted))
    before = eligibility_of(reviewed(decision, as_of=plus(restricted, -1)), U)
    assert (before["can_apply"], before["from"], before["permanent"], before["clause"]) == (
        False,
        restricted.isoformat(),
        False,
        "A1.3-1",
    )
    on = eligibility_of(reviewed(decision, as_of=restricted), U)
    assert (on["can_apply"], on["from"], on["clause"]) == (True, None, None)

    day_before = reviewed(decision, applied(U, plus(restricted, -1)))
    assert last(day_before)["codes"] == ["A1.3-1"]
    on_the_day = reviewed(decision, applied(U, restricted))
    assert last(on_the_day)["outcome"] == "accepted"


def test_ReadmissionDecided_with_until_on_the_day_itself():
    decided = plus(EXPELLED, 10)
    decision = readmission_decided(U, f"{decided}T09:00:00+08:00", until(decided))
    e = eligibility_of(reviewed(decision, as_of=decided), U)
    assert (e["can_apply"], e["from"], e["clause"]) == (True, None, None)
    # an application later that day is accepted; one earlier that day was still under review
    report = reviewed(
        applied(U, f"{decided}T08:00:00+08:00"),
        decision,
        applied(U, f"{decided}T17:00:00+08:00"),
    )
    assert [o["outcome"] for o in report["outcomes"][-3:]] == ["refused", "accepted", "accepted"]
    assert report["outcomes"][-3]["codes"] == ["A1.4"]
    assert state(report)["status"] == "applied"
    # as of the day before the decision, the review is still pending
    assert eligibility_of(reviewed(decision, as_of=plus(decided, -1)), U)["can_apply"] is None


def test_ReadmissionDecided_in_utc_counts_on_its_shanghai_date():
    # 2026-03-10T16:00:00Z is 2026-03-11 00:00 in Shanghai.
    decision = readmission_decided(U, "2026-03-10T16:00:00Z", until("2026-03-11"))
    assert eligibility_of(reviewed(decision, as_of="2026-03-10"), U)["can_apply"] is None
    assert eligibility_of(reviewed(decision, as_of="2026-03-11"), U)["can_apply"] is True


def test_ReadmissionDecided_permanent_bars_for_ever():
    decision = readmission_decided(U, plus(EXPELLED, 10), PERMANENT)
    for as_of in (plus(EXPELLED, 10), date(2099, 12, 31)):
        e = eligibility_of(reviewed(decision, as_of=as_of), U)
        assert (e["can_apply"], e["from"], e["permanent"], e["clause"]) == (
            False,
            None,
            True,
            "A1.3-1",
        )
    report = reviewed(decision, applied(U, "2036-01-01"))
    assert last(report)["codes"] == ["A1.3-1"]


def test_ReadmissionDecided_cleared_lets_the_entity_apply_at_once():
    decided = plus(EXPELLED, 10)
    report = reviewed(
        readmission_decided(U, decided, CLEARED), *onboard(U, decided), as_of=plus(decided, 3)
    )
    assert set(outcomes(report)) == {"accepted"}
    assert state(report)["status"] == "active"
    e = eligibility_of(reviewed(readmission_decided(U, decided), as_of=decided), U)
    assert (e["can_apply"], e["from"], e["permanent"], e["clause"]) == (True, None, False, None)


def test_ReadmissionDecided_cleared_leaves_a_later_exit_its_own_restriction():
    decided = plus(EXPELLED, 10)
    leave = plus(decided, 60)
    report = reviewed(
        readmission_decided(U, decided),
        *onboard(U, decided),
        exited(U, leave),
        applied(U, plus(leave, 179)),
        as_of=plus(leave, 179),
    )
    assert last(report)["codes"] == ["A1.3-5"]
    assert eligibility_of(report, U)["from"] == (leave + COOLDOWN).isoformat()


def test_a_second_review_needs_a_second_decision():
    decided = plus(EXPELLED, 10)
    again = plus(decided, 100)
    report = reviewed(
        readmission_decided(U, decided),
        *onboard(U, decided),
        expelled(U, again, "A1.2.2-4"),
        applied(U, plus(again, 1)),
        as_of=plus(again, 2),
    )
    assert last(report)["codes"] == ["A1.4"]
    assert eligibility_of(report, U)["can_apply"] is None
    decided_again = reviewed(
        readmission_decided(U, decided),
        *onboard(U, decided),
        expelled(U, again, "A1.2.2-4"),
        readmission_decided(U, plus(again, 5), until(plus(again, 30))),
        applied(U, plus(again, 30)),
    )
    assert last(decided_again)["outcome"] == "accepted"


# --- a store written under 1.0 ------------------------------------------------------------


def _envelope(ev: dict[str, Any]) -> Envelope:
    parsed = parse_record(line(ev))
    assert isinstance(parsed, Envelope)
    return parsed


def _legacy(provider: Provider, ev: dict[str, Any], event_class: type[Provider.Event]) -> None:
    """Record an event the way 1.0 accepted it, without 1.1's judgement."""
    envelope = _envelope(ev)
    fields: dict[str, Any] = {
        "ce_id": envelope.id,
        "ce_source": envelope.source,
        "data": envelope.data,
        "recorded_at": NOW,
    }
    if issubclass(event_class, Provider.ApplicationEvent):
        fields.update(payload_version=1, address={"city": "杭州"})
    provider.trigger_event(event_class, timestamp=envelope.time, **fields)


def _judged(provider: Provider, ev: dict[str, Any]) -> tuple[str, list[str]]:
    judgement = judge(provider, _envelope(ev), NOW)
    return judgement.outcome, judgement.codes


def _expelled_under_review() -> Provider:
    first = judge(None, _envelope(applied(U, START)), NOW).provider
    assert first is not None
    for ev in (admitted(U, plus(START, 1)), expelled(U, EXPELLED, "A1.2.2-4")):
        assert _judged(first, ev) == ("accepted", [])
    return first


def test_A1_4_a_review_survives_an_application_that_1_0_accepted_and_then_declined():
    p = _expelled_under_review()
    _legacy(p, applied(U, plus(EXPELLED, 1)), Provider.Reapplied)  # 1.0 let it through
    assert _judged(p, declined(U, plus(EXPELLED, 2))) == ("accepted", [])
    assert p.eligibility(plus(EXPELLED, 3)).can_apply is None
    assert _judged(p, applied(U, plus(EXPELLED, 3))) == ("refused", ["A1.4"])
    assert _judged(p, readmission_decided(U, plus(EXPELLED, 4))) == ("accepted", [])
    assert _judged(p, applied(U, plus(EXPELLED, 4))) == ("accepted", [])


def test_A1_4_a_dated_restriction_in_force_refuses_first_with_its_A1_3_clause():
    p = _expelled_under_review()
    back = plus(EXPELLED, 1)
    _legacy(p, applied(U, back), Provider.Reapplied)
    _legacy(p, admitted(U, back), Provider.Admitted)
    leave = plus(back, 10)
    assert _judged(p, exited(U, leave)) == ("accepted", [])
    # inside the A1.3-5 cooldown: A1.3-5; after it: the pending review, A1.4
    assert _judged(p, applied(U, plus(leave, 179))) == ("refused", ["A1.3-5"])
    e = p.eligibility(plus(leave, 179))
    assert (e.can_apply, e.clause, e.from_) == (False, "A1.3-5", leave + COOLDOWN)
    assert _judged(p, applied(U, plus(leave, 180))) == ("refused", ["A1.4"])
    assert p.eligibility(plus(leave, 180)).can_apply is None


def test_A1_4_a_permanent_restriction_in_force_refuses_first_with_its_A1_3_clause():
    first = judge(None, _envelope(applied(U, START)), NOW).provider
    assert first is not None
    assert _judged(first, admitted(U, plus(START, 1))) == ("accepted", [])
    assert _judged(first, expelled(U, "2025-02-01", "A1.2.2-3")) == ("accepted", [])
    _legacy(first, applied(U, "2025-03-01"), Provider.Reapplied)
    _legacy(first, admitted(U, "2025-03-02"), Provider.Admitted)
    assert _judged(first, expelled(U, EXPELLED, "A3-2")) == ("accepted", [])
    assert _judged(first, applied(U, plus(EXPELLED, 1))) == ("refused", ["A1.3-4"])
    # the review is still pending and can be decided; the ban stays
    assert _judged(first, readmission_decided(U, plus(EXPELLED, 2))) == ("accepted", [])
    assert _judged(first, applied(U, plus(EXPELLED, 3))) == ("refused", ["A1.3-4"])
