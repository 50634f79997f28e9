"""CONTRACT.md 1.1, refusal ``ORDER``: business dates never go backwards for one provider.

An event whose Asia/Shanghai business date is earlier than that of the provider's last
*accepted* event is refused with ``ORDER`` alone; the same business day in any order is
fine. Judged after the duplicate check and before every row of the refusal table
(RULEBOOK, "How the service reads these rules"): a back-dated event can never shorten a
cooldown.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import (
    COOLDOWN,
    DEPOSIT_FEN,
    admitted,
    applied,
    declined,
    deposit_paid,
    eligibility_of,
    exited,
    expelled,
    last,
    onboard,
    outcomes,
    plus,
    readmission_decided,
    run,
    uscc,
    violation,
)

U = uscc(61)
V = uscc(62)
START = "2025-01-01"  # onboard: applied 01-01, admitted 01-02, deposit 01-03
SHANGHAI = ZoneInfo("Asia/Shanghai")


def state(report: dict[str, Any], subject: str = U) -> dict[str, Any]:
    return report["providers"][subject]


def active_then(*events: dict[str, Any], as_of: str | date = "2026-06-01") -> dict[str, Any]:
    return run([*onboard(U, START), *events], as_of=as_of)


def refused_order(outcome: dict[str, Any]) -> bool:
    return outcome["outcome"] == "refused" and outcome["codes"] == ["ORDER"]


# --- the day before / the same day -----------------------------------------------------


def test_ORDER_an_event_dated_the_day_before_the_last_accepted_one_is_refused():
    report = active_then(
        violation(U, "2026-02-01T00:00:00+08:00"),
        violation(U, "2026-01-31T23:59:59+08:00", "A2.1-1"),
    )
    assert refused_order(last(report))
    assert "ORDER" in last(report)["reason"]
    assert "2026-01-31" in last(report)["reason"] and "2026-02-01" in last(report)["reason"]
    assert state(report)["violations"] == 1


def test_ORDER_the_same_business_day_in_either_order_is_accepted():
    late_then_early = active_then(
        violation(U, "2026-02-01T23:59:59+08:00"),
        violation(U, "2026-02-01T00:00:00+08:00", "A2.1-1"),
    )
    early_then_late = active_then(
        violation(U, "2026-02-01T00:00:00+08:00"),
        violation(U, "2026-02-01T23:59:59+08:00", "A2.1-1"),
    )
    for report in (late_then_early, early_then_late):
        assert outcomes(report)[-2:] == ["accepted", "accepted"]
        assert state(report)["violations"] == 2


def test_ORDER_counts_in_shanghai_dates_for_times_given_in_utc():
    # 2026-02-01T16:30:00Z is 2026-02-02 00:30 in Shanghai.
    after_midnight = violation(U, "2026-02-01T16:30:00Z")
    # 15:59:59Z is 2026-02-01 23:59:59 in Shanghai: the day before.
    before = active_then(after_midnight, violation(U, "2026-02-01T15:59:59Z", "A2.1-1"))
    assert refused_order(last(before))
    # 16:00:00Z is 2026-02-02 00:00 in Shanghai: the same day, although earlier in UTC.
    same_day = active_then(after_midnight, violation(U, "2026-02-01T16:00:00Z", "A2.1-1"))
    assert last(same_day)["outcome"] == "accepted"
    # +08:00 in the evening and UTC in the morning of the next UTC day: same Shanghai day.
    evening = active_then(
        violation(U, "2026-02-02T07:00:00+08:00"), violation(U, "2026-02-01T22:00:00Z", "A2.1-1")
    )
    assert last(evening)["outcome"] == "accepted"  # 2026-02-02 06:00 in Shanghai


def test_ORDER_other_offsets_are_converted_before_comparing():
    # 2026-02-01T12:00:00-08:00 is 2026-02-02 04:00 in Shanghai.
    report = active_then(
        violation(U, "2026-02-01T12:00:00-08:00"), violation(U, "2026-02-01T20:00:00+08:00")
    )
    assert refused_order(last(report))


# --- what ORDER protects, and its place in the order of judgement ------------------------


def test_ORDER_a_back_dated_expulsion_cannot_shorten_a_cooldown():
    # An A1.2.2-2 expulsion back-dated to 2025-06-01 would allow an application from
    # 2025-11-28 (D+180): accepted, the entity could re-apply at once. It is refused.
    report = active_then(
        violation(U, "2026-02-01"),
        expelled(U, "2025-06-01", "A1.2.2-2"),
        applied(U, "2026-02-02"),
        as_of="2026-02-02",
    )
    assert refused_order(report["outcomes"][-2])
    assert last(report)["codes"] == ["STATE"]  # the tenure is still open
    assert state(report)["status"] == "active"
    # sent again with its real date, the cooldown counts from that date
    fixed = active_then(
        violation(U, "2026-02-01"),
        expelled(U, "2026-02-03", "A1.2.2-2"),
        applied(U, plus("2026-02-03", 179)),
        as_of="2026-02-04",
    )
    assert last(fixed)["codes"] == ["A1.3-3"]
    assert eligibility_of(fixed, U)["from"] == (date(2026, 2, 3) + COOLDOWN).isoformat()


def test_ORDER_a_back_dated_exit_cannot_move_the_cooldown_earlier():
    report = active_then(
        deposit_paid(U, "2026-03-01", 1),
        exited(U, "2026-02-01"),
        as_of="2026-03-02",
    )
    assert refused_order(last(report))
    assert state(report)["status"] == "active"
    assert state(report)["deposit_balance_fen"] == DEPOSIT_FEN + 1


def test_ORDER_carries_that_code_alone_whatever_rows_the_event_also_breaks():
    report = active_then(
        exited(U, "2026-03-01"),
        # also inside the A1.3-5 cooldown, and an Admitted without an open application
        applied(U, "2026-02-01", registered_capital_fen=1),
        admitted(U, "2026-02-01"),
        exited(U, "2026-02-28", settled=False),
        as_of="2026-03-02",
    )
    assert [o["codes"] for o in report["outcomes"][-3:]] == [["ORDER"]] * 3
    assert state(report)["status"] == "exited"


def test_ORDER_is_judged_after_the_duplicate_check():
    first = violation(U, "2026-02-01", id="v-1")
    report = active_then(first, violation(U, "2026-03-01", "A2.1-1"), first)
    assert last(report) == {"id": "v-1", "outcome": "duplicate"}


def test_ORDER_only_accepted_events_set_the_date():
    # A refused event dated later does not move the provider's last business date.
    report = active_then(
        admitted(U, "2026-05-01"),  # refused: STATE
        violation(U, "2026-04-01"),
        as_of="2026-06-01",
    )
    assert report["outcomes"][-2]["codes"] == ["STATE"]
    assert last(report)["outcome"] == "accepted"


def test_ORDER_an_entity_without_an_accepted_event_has_no_date_yet():
    report = run([admitted(U, "2026-05-01"), applied(U, "2026-01-01")], as_of="2026-06-01")
    assert outcomes(report) == ["refused", "accepted"]


def test_ORDER_is_per_provider():
    report = run(
        [*onboard(U, "2026-03-01"), applied(V, "2026-01-01"), declined(V, "2026-01-02")],
        as_of="2026-06-01",
    )
    assert set(outcomes(report)) == {"accepted"}


def test_ORDER_applies_to_ReadmissionDecided_too():
    report = active_then(
        expelled(U, "2026-03-01", "A3-2"),
        readmission_decided(U, "2026-02-28"),
        as_of="2026-03-02",
    )
    assert refused_order(last(report))
    assert eligibility_of(report, U)["can_apply"] is None  # still under review


# --- property: whatever the stream, no accepted event goes back in business date --------


def _moment(day: date, minute: int, utc: bool) -> str:
    at = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI) + timedelta(minutes=minute)
    return at.astimezone(ZoneInfo("UTC")).isoformat() if utc else at.isoformat()


@given(
    st.lists(
        st.tuples(
            st.dates(min_value=date(2025, 1, 1), max_value=date(2025, 3, 31)),
            st.integers(0, 24 * 60 - 1),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    )
)
@settings(max_examples=100, deadline=None)
def test_ORDER_accepted_business_dates_never_go_backwards(stamps: list[tuple[date, int, bool]]):
    events = [applied(U, _moment(date(2025, 1, 1), 0, False))]
    events += [violation(U, _moment(d, minute, utc)) for d, minute, utc in stamps]
    report = run(events, as_of="2025-06-01")
    accepted_days: list[date] = []
    for (d, _, _), outcome in zip(stamps, report["outcomes"][1:], strict=True):
        if outcome["outcome"] == "accepted":
            accepted_days.append(d)
        else:
            assert refused_order(outcome)
            assert accepted_days and d < accepted_days[-1]
            continue
        assert accepted_days == sorted(accepted_days)
    assert state(report)["violations"] == len(accepted_days)
