"""The lifecycle rules end to end through ``lifecycle.evaluate.evaluate``.

Each test names the RULEBOOK clause or CONTRACT row it checks. Dates are computed
from the rule (D + 180) rather than copied from the implementation.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from tests.factories import (
    CLEARED,
    COOLDOWN,
    DEPOSIT_FEN,
    EXPULSION_GROUNDS,
    PERMANENT,
    admitted,
    applied,
    declined,
    deposit_deducted,
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
    violation,
)

U = uscc(21)
V = uscc(22)
START = "2025-01-01"  # onboard: applied 01-01, admitted 01-02, deposit 01-03
EXIT = date(2026, 3, 1)


def state(report: dict[str, Any], subject: str = U) -> dict[str, Any]:
    return report["providers"][subject]


def active_then(*events: dict[str, Any], as_of: str | date = "2026-06-01") -> dict[str, Any]:
    return run([*onboard(U, START), *events], as_of=as_of)


# --- A1.1.1-3: the deposit -------------------------------------------------------------


def test_A1_1_1_3_admission_does_not_wait_for_the_deposit():
    report = run([applied(U, "2026-01-01"), admitted(U, "2026-01-02")])
    assert outcomes(report) == ["accepted", "accepted"]
    assert state(report)["status"] == "admitted"
    assert state(report)["deposit_balance_fen"] == 0


def test_A1_1_1_3_active_only_when_the_balance_reaches_the_full_deposit():
    report = run(
        [
            applied(U, "2026-01-01"),
            admitted(U, "2026-01-02"),
            deposit_paid(U, "2026-01-03", DEPOSIT_FEN - 1),
        ]
    )
    assert state(report)["status"] == "admitted"
    assert state(report)["deposit_balance_fen"] == DEPOSIT_FEN - 1
    report = run(
        [
            applied(U, "2026-01-01"),
            admitted(U, "2026-01-02"),
            deposit_paid(U, "2026-01-03", DEPOSIT_FEN - 1),
            deposit_paid(U, "2026-01-04", 1),
        ]
    )
    assert state(report)["status"] == "active"
    assert state(report)["deposit_balance_fen"] == DEPOSIT_FEN


def test_A1_1_1_3_a_deposit_paid_before_admission_counts_once_admitted():
    report = run([applied(U, "2026-01-01"), deposit_paid(U, "2026-01-02")])
    assert state(report)["status"] == "applied"
    assert state(report)["deposit_balance_fen"] == DEPOSIT_FEN
    report = run([applied(U, "2026-01-01"), deposit_paid(U, "2026-01-02"), admitted(U)])
    assert state(report)["status"] == "active"


def test_A1_1_1_3_a_deduction_below_the_deposit_is_a_shortfall_not_an_exit():
    report = active_then(deposit_deducted(U, "2026-02-01", 1))
    assert outcomes(report)[-1] == "accepted"
    assert state(report)["status"] == "admitted"
    assert state(report)["deposit_balance_fen"] == DEPOSIT_FEN - 1
    # still a tenure: not free to apply again, and it may still exit voluntarily
    assert eligibility_of(report, U)["clause"] == "STATE"
    assert eligibility_of(report, U)["can_apply"] is False


def test_A1_1_1_3_topping_up_after_a_shortfall_makes_it_active_again():
    report = active_then(
        deposit_deducted(U, "2026-02-01", 3_000_000), deposit_paid(U, "2026-02-05", 3_000_000)
    )
    assert state(report)["status"] == "active"
    assert state(report)["deposit_balance_fen"] == DEPOSIT_FEN


def test_A1_1_1_3_a_deduction_that_leaves_the_full_deposit_keeps_it_active():
    report = active_then(
        deposit_paid(U, "2026-02-01", 5_000_000), deposit_deducted(U, amount_fen=5_000_000)
    )
    assert state(report)["status"] == "active"
    assert state(report)["deposit_balance_fen"] == DEPOSIT_FEN


def test_A1_1_1_3_an_admitted_provider_with_a_shortfall_can_still_exit():
    report = active_then(deposit_deducted(U, "2026-02-01", 1), exited(U, EXIT))
    assert outcomes(report)[-1] == "accepted"
    assert state(report)["status"] == "exited"


def test_deposit_belongs_to_a_tenure_and_a_new_one_starts_from_zero():
    back = plus(EXIT, 180)
    report = active_then(exited(U, EXIT), applied(U, back), as_of=back)
    assert outcomes(report)[-1] == "accepted"
    assert state(report)["status"] == "applied"
    assert state(report)["deposit_balance_fen"] == 0


def test_violations_are_counted_across_tenures():
    back = plus(EXIT, 180)
    report = active_then(
        violation(U, "2026-02-01"),
        violation(U, "2026-02-02", "A2.1-1", "minor"),
        exited(U, EXIT),
        *onboard(U, back),
        violation(U, plus(back, 5), "A2.3-2"),
        as_of=plus(back, 10),
    )
    assert set(outcomes(report)) == {"accepted"}
    assert state(report)["violations"] == 3
    assert state(report)["status"] == "active"


# --- A1.2.1: voluntary exit -----------------------------------------------------------


def test_A1_2_1_both_conditions_met_the_provider_exits():
    report = active_then(exited(U, EXIT))
    assert outcomes(report)[-1] == "accepted"
    assert state(report)["status"] == "exited"
    assert state(report)["deposit_balance_fen"] == 0


def test_A1_2_1_1_merchant_fees_not_settled_is_refused():
    report = active_then(exited(U, EXIT, settled=False))
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["A1.2.1-1"]
    assert state(report)["status"] == "active"


def test_A1_2_1_2_transaction_obligations_not_fulfilled_is_refused():
    report = active_then(exited(U, EXIT, fulfilled=False))
    assert last(report)["codes"] == ["A1.2.1-2"]
    assert state(report)["status"] == "active"


def test_A1_2_1_1_and_2_both_unmet_cite_both_clauses():
    report = active_then(exited(U, EXIT, settled=False, fulfilled=False))
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["A1.2.1-1", "A1.2.1-2"]
    assert last(report)["reason"]


# --- A1.2.2 and A3-2: expulsion -------------------------------------------------------


@pytest.mark.parametrize("ground", EXPULSION_GROUNDS)
def test_A1_2_2_expulsion_on_each_ground_closes_the_tenure(ground: str):
    report = active_then(expelled(U, EXIT, ground, readmission=until("2026-09-01")))
    assert outcomes(report)[-1] == "accepted"
    assert state(report)["status"] == "expelled"
    assert state(report)["deposit_balance_fen"] == 0


@pytest.mark.parametrize("ground", EXPULSION_GROUNDS)
def test_A1_2_2_an_admitted_provider_without_deposit_can_be_expelled(ground: str):
    report = run([applied(U, START), admitted(U, plus(START, 1)), expelled(U, EXIT, ground)])
    assert outcomes(report) == ["accepted"] * 3


def test_A3_2_expulsion_carries_article_2_clauses():
    report = active_then(
        violation(U, "2026-02-01", "A2.2-4"),
        expelled(U, EXIT, "A3-2", violations=["A2.2-4", "A2.1-1"], readmission=until("2027-03-01")),
        as_of=plus(EXIT, 1),
    )
    assert outcomes(report)[-1] == "accepted"
    assert state(report)["status"] == "expelled"
    e = eligibility_of(report, U)
    assert (e["can_apply"], e["from"], e["permanent"], e["clause"]) == (
        False,
        "2027-03-01",
        False,
        "A1.3-1",
    )


# --- A1.3-1: as the Institution Management Specification restricts it ------------------


def test_A1_3_1_until_date_becomes_from_and_applies_from_that_day():
    restricted = date(2026, 11, 15)
    events = [expelled(U, EXIT, "A1.2.2-4", readmission=until(restricted))]
    before = active_then(*events, as_of=plus(restricted, -1))
    e = eligibility_of(before, U)
    assert (e["can_apply"], e["from"], e["permanent"], e["clause"]) == (
        False,
        restricted.isoformat(),
        False,
        "A1.3-1",
    )
    on = eligibility_of(active_then(*events, as_of=restricted), U)
    assert on["can_apply"] is True
    assert on["from"] is None  # README: once the restriction has passed, from/clause are null

    refused = active_then(*events, applied(U, plus(restricted, -1)))
    assert last(refused)["outcome"] == "refused"
    assert last(refused)["codes"] == ["A1.3-1"]
    accepted = active_then(*events, applied(U, restricted))
    assert last(accepted)["outcome"] == "accepted"


def test_A1_3_1_permanent_restriction_never_lifts():
    events = [expelled(U, EXIT, "A1.2.2-4", readmission=PERMANENT)]
    far = date(2040, 1, 1)
    e = eligibility_of(active_then(*events, as_of=far), U)
    assert (e["can_apply"], e["permanent"], e["from"], e["clause"]) == (False, True, None, "A1.3-1")
    report = active_then(*events, applied(U, far))
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["A1.3-1"]


@pytest.mark.parametrize("ground", ["A1.2.2-4", "A3-2"])
def test_A1_3_1_no_restriction_with_the_event_means_manual_review(ground: str):
    report = active_then(expelled(U, EXIT, ground), as_of=plus(EXIT, 1000))
    e = eligibility_of(report, U)
    assert e["can_apply"] is None
    assert e["permanent"] is False
    assert "manual review" in e["reason"]


@pytest.mark.parametrize("ground", ["A1.2.2-4", "A3-2"])
def test_A1_4_an_application_during_manual_review_is_refused(ground: str):
    # 1.1 (was: accepted, "the review is the platform's, upstream"): manual review is a
    # state; every application is refused with A1.4 until provider.ReadmissionDecided.
    report = active_then(expelled(U, EXIT, ground), applied(U, plus(EXIT, 1)))
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["A1.4"]
    assert "manual review" in last(report)["reason"]
    assert state(report)["status"] == "expelled"


# --- A1.3-2: after an A1.2.2-1 expulsion, once A1.1 is met again -----------------------


def test_A1_3_2_can_apply_requires_A1_1():
    report = active_then(expelled(U, EXIT, "A1.2.2-1"), as_of=plus(EXIT, 1))
    e = eligibility_of(report, U)
    assert e["can_apply"] is True
    assert e["clause"] == "A1.3-2"
    assert e["requires"] == "A1.1"
    assert e["from"] is None and e["permanent"] is False


def test_A1_3_2_reapplication_still_failing_A1_1_is_refused():
    report = active_then(
        expelled(U, EXIT, "A1.2.2-1"),
        applied(U, plus(EXIT, 1), registered_capital_fen=49_999_999),
    )
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["A1.3-2"]
    assert "A1.1.1-2b" in last(report)["reason"]
    assert state(report)["status"] == "expelled"


def test_A1_3_2_reapplication_meeting_A1_1_is_accepted_at_once():
    report = active_then(expelled(U, EXIT, "A1.2.2-1"), applied(U, EXIT))
    assert last(report)["outcome"] == "accepted"
    assert state(report)["status"] == "applied"


def test_A1_3_2_a_refused_reapplication_can_be_fixed_and_resent():
    report = active_then(
        expelled(U, EXIT, "A1.2.2-1"),
        applied(U, plus(EXIT, 1), is_store_account=True),
        applied(U, plus(EXIT, 2)),
        admitted(U, plus(EXIT, 3)),
    )
    assert outcomes(report)[-3:] == ["refused", "accepted", "accepted"]
    assert state(report)["status"] == "admitted"


def test_A1_3_2_is_discharged_by_a_later_admission():
    # 1.1: once admitted again, the A1.2.2-1 condition no longer binds; the later exit
    # brings its own restriction (A1.3-5), and after it an application failing A1.1 is
    # simply recorded (A1.1 is judged at admission).
    back = plus(EXIT, 1)
    leave = plus(back, 30)
    events = [expelled(U, EXIT, "A1.2.2-1"), *onboard(U, back), exited(U, leave)]
    cooling = active_then(*events, applied(U, plus(leave, 179), registered_capital_fen=1))
    assert last(cooling)["codes"] == ["A1.3-5"]
    report = active_then(
        *events,
        applied(U, plus(leave, 180), registered_capital_fen=1),
        as_of=plus(leave, 180),
    )
    assert last(report)["outcome"] == "accepted"
    e = eligibility_of(active_then(*events, as_of=plus(leave, 180)), U)
    assert (e["can_apply"], e["clause"], e["requires"]) == (True, None, None)


def test_A1_3_2_binds_until_the_admission_not_just_the_application():
    # A declined application after the expulsion does not discharge A1.3-2.
    report = active_then(
        expelled(U, EXIT, "A1.2.2-1"),
        applied(U, plus(EXIT, 1)),
        declined(U, plus(EXIT, 2)),
        applied(U, plus(EXIT, 3), service_city="上海"),
        as_of=plus(EXIT, 3),
    )
    assert outcomes(report)[-3:] == ["accepted", "accepted", "refused"]
    assert last(report)["codes"] == ["A1.3-2"]
    assert eligibility_of(report, U)["requires"] == "A1.1"


def test_A1_3_2_a_second_A1_2_2_1_expulsion_binds_again():
    back = plus(EXIT, 1)
    again = plus(back, 30)
    report = active_then(
        expelled(U, EXIT, "A1.2.2-1"),
        *onboard(U, back),
        expelled(U, again, "A1.2.2-1"),
        applied(U, plus(again, 1), is_store_account=True),
        as_of=plus(again, 1),
    )
    assert last(report)["codes"] == ["A1.3-2"]
    e = eligibility_of(report, U)
    assert (e["clause"], e["requires"]) == ("A1.3-2", "A1.1")


# --- A1.3-3 and A1.3-5: 180 days -----------------------------------------------------


COOLDOWNS = [
    pytest.param(lambda d: exited(U, d), "A1.3-5", id="A1.3-5-voluntary-exit"),
    pytest.param(lambda d: expelled(U, d, "A1.2.2-2"), "A1.3-3", id="A1.3-3-assessment"),
]


@pytest.mark.parametrize(("exit_event", "clause"), COOLDOWNS)
def test_A1_3_cooldown_application_on_day_179_is_refused(exit_event, clause: str):
    report = active_then(exit_event(EXIT), applied(U, plus(EXIT, 179)))
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == [clause]
    assert state(report)["status"] in ("exited", "expelled")


@pytest.mark.parametrize(("exit_event", "clause"), COOLDOWNS)
def test_A1_3_cooldown_application_on_day_180_is_accepted(exit_event, clause: str):
    report = active_then(exit_event(EXIT), applied(U, plus(EXIT, 180)), as_of=plus(EXIT, 180))
    assert last(report)["outcome"] == "accepted"
    assert state(report)["status"] == "applied"


@pytest.mark.parametrize(("exit_event", "clause"), COOLDOWNS)
def test_A1_3_cooldown_eligibility_as_of_day_179_and_180(exit_event, clause: str):
    d180 = EXIT + COOLDOWN
    before = eligibility_of(active_then(exit_event(EXIT), as_of=plus(EXIT, 179)), U)
    assert (before["can_apply"], before["from"], before["clause"]) == (
        False,
        d180.isoformat(),
        clause,
    )
    assert before["permanent"] is False
    after = eligibility_of(active_then(exit_event(EXIT), as_of=d180), U)
    assert after["can_apply"] is True
    assert after["from"] is None and after["clause"] is None


@pytest.mark.parametrize(("exit_event", "clause"), COOLDOWNS)
def test_A1_3_cooldown_eligibility_on_the_exit_day_itself(exit_event, clause: str):
    e = eligibility_of(active_then(exit_event(EXIT), as_of=EXIT), U)
    assert e["can_apply"] is False
    assert e["from"] == (EXIT + COOLDOWN).isoformat()


def test_A1_3_eligibility_before_the_exit_considers_only_history_up_to_that_day():
    # README: eligibility as of a date considers only the history up to that date.
    e = eligibility_of(active_then(exited(U, EXIT), as_of=plus(EXIT, -1)), U)
    assert e["can_apply"] is False
    assert e["clause"] == "STATE"


# --- A1.3-4: never --------------------------------------------------------------------


def test_A1_3_4_law_or_major_incident_expulsion_is_permanent():
    events = [expelled(U, EXIT, "A1.2.2-3")]
    for as_of in (EXIT, plus(EXIT, 180), date(2099, 12, 31)):
        e = eligibility_of(active_then(*events, as_of=as_of), U)
        assert (e["can_apply"], e["permanent"], e["clause"], e["from"]) == (
            False,
            True,
            "A1.3-4",
            None,
        )
    report = active_then(*events, applied(U, "2036-01-01"))
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["A1.3-4"]


def test_A1_3_4_a_permanent_ban_holds_even_with_a_readmission_date_in_the_event():
    events = [expelled(U, EXIT, "A1.2.2-3", readmission=until(plus(EXIT, 30)))]
    report = active_then(*events, applied(U, plus(EXIT, 31)), as_of=plus(EXIT, 31))
    assert last(report)["codes"] == ["A1.3-4"]
    assert eligibility_of(report, U)["permanent"] is True


def test_A1_3_4_an_application_backdated_before_the_first_one_is_still_refused():
    # A permanently banned entity must never open a tenure again (RULEBOOK: "an admission
    # of a permanently banned entity ... is refused"). An Applied whose business time
    # predates every milestone of the history must not slip past the ban. 1.1: it is
    # refused with ORDER alone (it was A1.3-4), before the table's rows are looked at.
    report = active_then(
        expelled(U, EXIT, "A1.2.2-3"),
        applied(U, "2024-06-01"),
        admitted(U, "2026-03-05"),
        deposit_paid(U, "2026-03-06"),
        as_of="2026-04-01",
    )
    assert outcomes(report)[4] == "refused"
    assert report["outcomes"][4]["codes"] == ["ORDER"]
    assert outcomes(report)[5:] == ["refused", "refused"]
    assert state(report)["status"] == "expelled"


# --- several exits --------------------------------------------------------------------


def test_A1_3_several_exits_the_latest_restriction_applies():
    back = EXIT + COOLDOWN
    second = plus(back, 30)
    report = active_then(
        exited(U, EXIT),
        *onboard(U, back),
        expelled(U, second, "A1.2.2-2"),
        as_of=plus(second, 1),
    )
    assert set(outcomes(report)) == {"accepted"}
    e = eligibility_of(report, U)
    assert (e["can_apply"], e["from"], e["clause"]) == (
        False,
        (second + COOLDOWN).isoformat(),
        "A1.3-3",
    )


def test_A1_3_several_exits_a_later_until_beyond_an_earlier_cooldown_wins():
    back = EXIT + COOLDOWN
    second = plus(back, 10)
    report = active_then(
        exited(U, EXIT),
        *onboard(U, back),
        expelled(U, second, "A1.2.2-4", readmission=until("2028-01-01")),
        as_of=plus(second, 1),
    )
    e = eligibility_of(report, U)
    assert (e["can_apply"], e["from"], e["clause"]) == (False, "2028-01-01", "A1.3-1")


def test_A1_3_several_exits_permanent_beats_an_earlier_cooldown():
    back = EXIT + COOLDOWN
    second = plus(back, 10)
    report = active_then(
        exited(U, EXIT),
        *onboard(U, back),
        expelled(U, second, "A1.2.2-3"),
        as_of=plus(second, 1),
    )
    e = eligibility_of(report, U)
    assert (e["can_apply"], e["permanent"], e["clause"]) == (False, True, "A1.3-4")


def test_A1_3_several_exits_an_old_permanent_ban_is_never_forgotten():
    # A1.2.2-4 with a permanent restriction still bars an application 400 days later.
    report = active_then(
        expelled(U, EXIT, "A1.2.2-4", readmission=PERMANENT),
        applied(U, plus(EXIT, 400)),
        as_of=plus(EXIT, 500),
    )
    assert last(report)["codes"] == ["A1.3-1"]
    assert eligibility_of(report, U)["permanent"] is True


def test_A1_3_after_manual_review_reentry_a_later_cooldown_applies():
    # 1.1: the re-entry needs the platform's decision first (it was accepted without one).
    back = plus(EXIT, 1)
    later = plus(back, 60)
    report = active_then(
        expelled(U, EXIT, "A3-2", violations=["A2.2-6"]),
        readmission_decided(U, back, CLEARED),
        *onboard(U, back),
        exited(U, later),
        applied(U, plus(later, 179)),
        as_of=plus(later, 179),
    )
    assert outcomes(report)[-1] == "refused"
    assert last(report)["codes"] == ["A1.3-5"]
    assert eligibility_of(report, U)["from"] == (later + COOLDOWN).isoformat()


# --- boundaries: Asia/Shanghai calendar dates ----------------------------------------


def test_exit_at_20h_utc_counts_from_the_next_day_in_shanghai():
    # 2026-01-01T20:00:00Z is 2026-01-02 04:00 in Shanghai: D = 2026-01-02, D+180 = 2026-07-01.
    exit_ = exited(U, "2026-01-01T20:00:00Z")
    e = eligibility_of(active_then(exit_, as_of="2026-06-30"), U)
    assert (e["can_apply"], e["from"], e["clause"]) == (False, "2026-07-01", "A1.3-5")
    assert eligibility_of(active_then(exit_, as_of="2026-07-01"), U)["can_apply"] is True

    too_early = active_then(exit_, applied(U, "2026-06-30T15:59:59Z"))  # 06-30 23:59:59 CST
    assert last(too_early)["outcome"] == "refused"
    assert last(too_early)["codes"] == ["A1.3-5"]
    in_time = active_then(exit_, applied(U, "2026-06-30T16:00:00Z"))  # 07-01 00:00 CST
    assert last(in_time)["outcome"] == "accepted"


def test_exit_just_before_midnight_shanghai_counts_from_that_day():
    exit_ = exited(U, "2026-01-01T15:59:59Z")  # 2026-01-01 23:59:59 in Shanghai
    e = eligibility_of(active_then(exit_, as_of="2026-06-29"), U)
    assert e["from"] == "2026-06-30"
    assert eligibility_of(active_then(exit_, as_of="2026-06-30"), U)["can_apply"] is True


def test_offsets_other_than_shanghai_are_converted_before_counting():
    exit_ = exited(U, "2026-01-01T12:00:00-08:00")  # 2026-01-02 04:00 in Shanghai
    assert eligibility_of(active_then(exit_, as_of="2026-06-30"), U)["from"] == "2026-07-01"


# --- CONTRACT.md refusal table ---------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param([applied(U, START)], id="applied"),
        pytest.param([applied(U, START), admitted(U, plus(START, 1))], id="admitted"),
        pytest.param(onboard(U, START), id="active"),
    ],
)
def test_refusal_Applied_while_a_tenure_is_open_is_STATE(prefix):
    report = run([*prefix, applied(U, "2026-01-01")])
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["STATE"]


@pytest.mark.parametrize(
    ("exit_event", "code"),
    [
        (expelled(U, EXIT, "A1.2.2-4", readmission=until("2026-12-01")), "A1.3-1"),
        (expelled(U, EXIT, "A1.2.2-2"), "A1.3-3"),
        (expelled(U, EXIT, "A1.2.2-3"), "A1.3-4"),
        (exited(U, EXIT), "A1.3-5"),
    ],
)
def test_refusal_Applied_while_a_past_exit_restricts(exit_event, code: str):
    report = active_then(exit_event, applied(U, plus(EXIT, 100)))
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == [code]
    assert last(report)["reason"]


def test_refusal_Applied_after_A1_2_2_1_failing_A1_1_is_A1_3_2():
    report = active_then(expelled(U, EXIT, "A1.2.2-1"), applied(U, EXIT, service_city="上海"))
    assert last(report)["codes"] == ["A1.3-2"]


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param([], id="never-applied"),
        pytest.param([applied(U, START), admitted(U, plus(START, 1))], id="already-admitted"),
        pytest.param(onboard(U, START), id="active"),
        pytest.param([*onboard(U, START), exited(U, EXIT)], id="exited"),
        pytest.param([*onboard(U, START), expelled(U, EXIT)], id="expelled"),
        pytest.param([applied(U, START), declined(U, plus(START, 1))], id="declined"),
    ],
)
def test_refusal_Admitted_without_an_open_application_is_STATE(prefix):
    report = run([*prefix, admitted(U, "2026-05-01")])
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["STATE"]


def test_refusal_Admitted_failing_A1_1_cites_each_failing_clause():
    report = run(
        [
            applied(U, START, registered_capital_fen=1, entity_city="杭州", service_city="宁波"),
            admitted(U, plus(START, 1)),
        ]
    )
    assert last(report)["codes"] == ["A1.1.1-2b", "A1.1.1-5"]
    assert state(report)["status"] == "applied"


NO_TENURE = [
    pytest.param([], id="never-applied"),
    pytest.param([*onboard(U, START), exited(U, EXIT)], id="exited"),
    pytest.param([*onboard(U, START), expelled(U, EXIT, "A1.2.2-1")], id="expelled"),
    pytest.param([applied(U, START), declined(U, plus(START, 1))], id="declined"),
]


@pytest.mark.parametrize("prefix", NO_TENURE)
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: deposit_paid(U, "2026-05-01"), id="DepositPaid"),
        pytest.param(lambda: deposit_deducted(U, "2026-05-01"), id="DepositDeducted"),
        pytest.param(lambda: violation(U, "2026-05-01"), id="ViolationRecorded"),
    ],
)
def test_refusal_money_and_violations_without_an_open_tenure_are_STATE(prefix, make):
    report = run([*prefix, make()])
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["STATE"]
    if prefix:
        assert state(report)["deposit_balance_fen"] == 0
        assert state(report)["violations"] == 0


def test_violation_and_deduction_while_only_applied_are_accepted():
    report = run(
        [
            applied(U, START),
            deposit_paid(U, plus(START, 1)),
            deposit_deducted(U, plus(START, 2), 100),
            violation(U, plus(START, 3)),
        ]
    )
    assert set(outcomes(report)) == {"accepted"}
    assert state(report)["deposit_balance_fen"] == DEPOSIT_FEN - 100
    assert state(report)["violations"] == 1


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param([], id="never-applied"),
        pytest.param([applied(U, START)], id="applied"),
        pytest.param([*onboard(U, START), exited(U, EXIT)], id="exited"),
        pytest.param([*onboard(U, START), expelled(U, EXIT)], id="expelled"),
        pytest.param([applied(U, START), declined(U, plus(START, 1))], id="declined"),
    ],
)
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: exited(U, "2026-05-01"), id="Exited"),
        pytest.param(lambda: exited(U, "2026-05-01", settled=False), id="Exited-unsettled"),
        pytest.param(lambda: expelled(U, "2026-05-01", "A1.2.2-3"), id="Expelled"),
    ],
)
def test_refusal_exit_or_expulsion_when_not_admitted_or_active_is_STATE(prefix, make):
    report = run([*prefix, make()])
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["STATE"]


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param([], id="never-applied"),
        pytest.param([applied(U, START), admitted(U, plus(START, 1))], id="admitted"),
        pytest.param(onboard(U, START), id="active"),
        pytest.param([*onboard(U, START), exited(U, EXIT)], id="exited"),
        pytest.param([applied(U, START), declined(U, plus(START, 1))], id="declined"),
    ],
)
def test_refusal_ApplicationDeclined_when_not_applied_is_STATE(prefix):
    report = run([*prefix, declined(U, "2026-05-01")])
    assert last(report)["outcome"] == "refused"
    assert last(report)["codes"] == ["STATE"]


def test_application_declined_closes_the_tenure_and_a_new_application_is_allowed():
    report = run(
        [
            applied(U, START),
            deposit_paid(U, plus(START, 1)),
            declined(U, plus(START, 2)),
            applied(U, plus(START, 3)),
        ],
        as_of=plus(START, 3),
    )
    assert set(outcomes(report)) == {"accepted"}
    assert state(report)["status"] == "applied"
    assert state(report)["deposit_balance_fen"] == 0


def test_declined_status_and_eligibility():
    report = run([applied(U, START), declined(U, plus(START, 1))], as_of=plus(START, 2))
    assert state(report)["status"] == "declined"
    assert state(report)["deposit_balance_fen"] == 0
    assert eligibility_of(report, U)["can_apply"] is True


def test_a_refused_event_is_reported_with_codes_and_reason_and_never_applied():
    report = active_then(exited(U, EXIT, settled=False), deposit_paid(U, plus(EXIT, 1), 5))
    refused = report["outcomes"][-2]
    assert set(refused) == {"id", "outcome", "codes", "reason"}
    assert refused["reason"]
    # the exit was not applied: the tenure is still open and takes the deposit
    assert state(report)["deposit_balance_fen"] == DEPOSIT_FEN + 5


# --- eligibility states from CONTRACT.md ------------------------------------------------


def test_eligibility_never_applied_can_apply():
    # A subject seen only through refused events: never applied.
    report = run([admitted(U, "2026-01-01")], as_of="2026-01-02")
    assert state(report)["status"] is None
    assert eligibility_of(report, U)["can_apply"] is True
    assert eligibility_of(report, U)["clause"] is None


@pytest.mark.parametrize(
    "prefix", [[applied(U, START)], onboard(U, START)], ids=["applied", "active"]
)
def test_eligibility_with_an_open_tenure_is_STATE(prefix):
    e = eligibility_of(run(prefix, as_of="2026-01-01"), U)
    assert (e["can_apply"], e["clause"], e["permanent"]) == (False, "STATE", False)


def test_eligibility_has_the_contract_shape():
    e = eligibility_of(active_then(exited(U, EXIT), as_of=plus(EXIT, 1)), U)
    assert set(e) == {"can_apply", "from", "permanent", "clause", "requires", "reason"}
    assert isinstance(e["reason"], str) and e["reason"]


# --- duplicates ------------------------------------------------------------------------


def test_duplicate_applied_id_is_a_duplicate_without_effect():
    first = applied(U, START, id="a-1")
    report = run([first, dict(first), admitted(U, plus(START, 1))])
    assert outcomes(report) == ["accepted", "duplicate", "accepted"]
    assert report["outcomes"][1] == {"id": "a-1", "outcome": "duplicate"}


def test_duplicate_deposit_paid_twice_with_the_same_id_counts_once():
    pay = deposit_paid(U, plus(START, 2), DEPOSIT_FEN // 2, id="pay-1")
    report = run([applied(U, START), admitted(U, plus(START, 1)), pay, pay])
    assert outcomes(report)[-2:] == ["accepted", "duplicate"]
    assert state(report)["deposit_balance_fen"] == DEPOSIT_FEN // 2
    assert state(report)["status"] == "admitted"


def test_duplicate_id_with_a_different_body_is_still_a_duplicate():
    pay = deposit_paid(U, plus(START, 2), 1, id="pay-1")
    again = deposit_paid(U, plus(START, 3), DEPOSIT_FEN, id="pay-1")
    report = run([applied(U, START), admitted(U, plus(START, 1)), pay, again])
    assert outcomes(report)[-1] == "duplicate"
    assert state(report)["deposit_balance_fen"] == 1


def test_duplicate_of_an_accepted_exit_is_a_duplicate_not_a_refusal():
    leave = exited(U, EXIT, id="x-1")
    report = active_then(leave, leave)
    assert outcomes(report)[-2:] == ["accepted", "duplicate"]


def test_duplicate_violation_is_counted_once():
    v = violation(U, "2026-02-01", id="v-1")
    report = active_then(v, v, v)
    assert outcomes(report)[-3:] == ["accepted", "duplicate", "duplicate"]
    assert state(report)["violations"] == 1


def test_a_refused_id_sent_again_is_a_duplicate():
    # CONTRACT.md: a repeated id is a duplicate, whatever became of the first.
    early = admitted(U, START, id="adm-1")
    report = run([early, applied(U, START), early])
    assert outcomes(report) == ["refused", "accepted", "duplicate"]
    assert state(report)["status"] == "applied"


def test_an_operator_resubmission_judges_a_refused_id_again():
    from lifecycle.application import InboundMessage, ProviderLifecycle

    app = ProviderLifecycle(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    early = admitted(U, START, id="adm-1")
    first = app.process(
        [InboundMessage(line(early), "t:0"), InboundMessage(line(applied(U, START)), "t:1")]
    )
    again = app.process([InboundMessage(line(early), "t:2", resubmitted=True)])
    repeat = app.process([InboundMessage(line(early), "t:3")])
    assert [r.outcome for r in (*first, *again, *repeat)] == [
        "refused",
        "accepted",
        "accepted",
        "duplicate",
    ]


def test_the_same_source_and_id_for_another_provider_is_a_duplicate():
    # CONTRACT.md 1.1: (source, id) is the key across all providers (1.0: judged again).
    report = run([applied(U, START, id="shared"), applied(V, START, id="shared")])
    assert outcomes(report) == ["accepted", "duplicate"]
    assert state(report, U)["status"] == "applied"
    assert V not in report["providers"]  # only subjects with an accepted or refused record


def test_the_same_id_from_another_source_is_judged():
    other = {**applied(V, START, id="shared"), "source": "/taobao-live/risk-control"}
    report = run([applied(U, START, id="shared"), other])
    assert outcomes(report) == ["accepted", "accepted"]
    assert state(report, V)["status"] == "applied"


def test_a_duplicate_is_remembered_across_tenures():
    first = applied(U, START, id="app-1")
    report = run(
        [
            first,
            admitted(U, plus(START, 1)),
            deposit_paid(U, plus(START, 2)),
            exited(U, EXIT),
            first,
        ]
    )
    # the first application's id comes back after the exit: no second effect
    assert last(report)["outcome"] == "duplicate"
    assert state(report)["status"] == "exited"


def test_providers_are_independent():
    report = run(
        [
            *onboard(U, START),
            applied(V, START, general_taxpayer=False),
            expelled(U, EXIT, "A1.2.2-3"),
            admitted(V, plus(START, 1)),
        ],
        as_of=plus(EXIT, 1),
    )
    assert state(report)["status"] == "expelled"
    assert state(report, V)["status"] == "applied"
    assert last(report)["codes"] == ["A1.1.1-2a"]
    assert eligibility_of(report, V)["clause"] == "STATE"
