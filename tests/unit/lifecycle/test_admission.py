"""A1.1 admission standards: direct checks and the Admitted refusals they cause."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from lifecycle.admission import Unmet, anniversary, unmet_requirements
from lifecycle.contract import Applied
from tests.factories import (
    ADDRESS,
    CAPABILITIES,
    MIN_CAPITAL_FEN,
    admitted,
    applied,
    applied_data,
    applied_v2,
    last,
    outcomes,
    run,
    uscc,
)

U = uscc(11)
APPLIED_ON = date(2026, 3, 10)


def unmet(applied_on: date = APPLIED_ON, **overrides: Any) -> list[Unmet]:
    return unmet_requirements(Applied.model_validate(applied_data(**overrides)), applied_on)


def clauses(applied_on: date = APPLIED_ON, **overrides: Any) -> list[str]:
    return [str(u.clause) for u in unmet(applied_on, **overrides)]


def admission(when: str = "2026-03-10", **overrides: Any) -> dict[str, Any]:
    """Apply with ``overrides`` on ``when``, then ask for admission; the Admitted outcome."""
    report = run([applied(U, when, **overrides), admitted(U, "2026-03-11")])
    assert report["outcomes"][0]["outcome"] == "accepted"  # an application is always recorded
    return last(report)


# --- the admission check itself -------------------------------------------------------


def test_A1_1_a_fully_qualifying_application_has_no_unmet_requirement():
    assert unmet() == []


def test_A1_1_admission_check_lists_every_unmet_requirement_with_clause_and_reason():
    result = unmet(
        entity_type="individual",
        real_name_verified=False,
        general_taxpayer=False,
        registered_capital_fen=MIN_CAPITAL_FEN - 1,
        registered_on="2026-01-01",
        advantage_statement=None,
        is_store_account=True,
        entity_city="杭州",
        service_city="义乌",
        capabilities=["training"],
    )
    assert [str(u.clause) for u in result] == [
        "A1.1.1-1",
        "A1.1.1-2a",
        "A1.1.1-2b",
        "A1.1.1-2c",
        "A1.1.1-4",
        "A1.1.1-5",
        "A1.1.2",
    ]
    assert all(isinstance(u, Unmet) and u.reason.strip() for u in result)
    by_clause = {str(u.clause): u.reason for u in result}
    assert "individual" in by_clause["A1.1.1-1"]
    assert "real-name" in by_clause["A1.1.1-1"]
    assert str(MIN_CAPITAL_FEN - 1) in by_clause["A1.1.1-2b"]
    assert "2026-01-01" in by_clause["A1.1.1-2c"]
    assert "义乌" in by_clause["A1.1.1-5"]
    for missing in set(CAPABILITIES) - {"training"}:
        assert missing in by_clause["A1.1.2"]


def test_A1_1_1_3_the_deposit_is_not_part_of_the_admission_check():
    # Nothing in the payload says anything about the deposit, and nothing unmet cites it.
    assert "A1.1.1-3" not in clauses(entity_type="other")


# --- A1.1.1-1 -------------------------------------------------------------------------


@pytest.mark.parametrize("entity_type", ["individual_business", "individual", "other"])
def test_A1_1_1_1_not_an_enterprise_is_refused(entity_type: str):
    assert clauses(entity_type=entity_type) == ["A1.1.1-1"]
    outcome = admission(entity_type=entity_type)
    assert outcome["outcome"] == "refused"
    assert outcome["codes"] == ["A1.1.1-1"]


def test_A1_1_1_1_not_real_name_verified_is_refused():
    assert clauses(real_name_verified=False) == ["A1.1.1-1"]
    assert admission(real_name_verified=False)["codes"] == ["A1.1.1-1"]


def test_A1_1_1_1_both_failures_cite_the_clause_once():
    outcome = admission(entity_type="other", real_name_verified=False)
    assert outcome["codes"] == ["A1.1.1-1"]


# --- A1.1.1-2a/b/c --------------------------------------------------------------------


def test_A1_1_1_2a_not_a_general_taxpayer_is_refused():
    assert clauses(general_taxpayer=False) == ["A1.1.1-2a"]
    assert admission(general_taxpayer=False)["codes"] == ["A1.1.1-2a"]


def test_A1_1_1_2b_capital_exactly_500k_is_enough():
    assert clauses(registered_capital_fen=50_000_000) == []
    assert admission(registered_capital_fen=50_000_000)["outcome"] == "accepted"


def test_A1_1_1_2b_capital_one_fen_short_is_refused():
    assert clauses(registered_capital_fen=49_999_999) == ["A1.1.1-2b"]
    outcome = admission(registered_capital_fen=49_999_999)
    assert outcome["outcome"] == "refused"
    assert outcome["codes"] == ["A1.1.1-2b"]


def test_A1_1_1_2b_zero_capital_is_refused():
    assert clauses(registered_capital_fen=0) == ["A1.1.1-2b"]


def test_A1_1_1_2c_registered_exactly_one_year_before_is_enough():
    assert clauses(APPLIED_ON, registered_on="2025-03-10") == []
    assert admission("2026-03-10", registered_on="2025-03-10")["outcome"] == "accepted"


def test_A1_1_1_2c_one_day_less_than_a_year_is_refused():
    assert clauses(APPLIED_ON, registered_on="2025-03-11") == ["A1.1.1-2c"]
    outcome = admission("2026-03-10", registered_on="2025-03-11")
    assert outcome["outcome"] == "refused"
    assert outcome["codes"] == ["A1.1.1-2c"]


def test_A1_1_1_2c_less_than_a_year_with_an_advantage_statement_is_enough():
    statement = "区域头部服务团队,已服务 300 家产业带商家"
    assert clauses(APPLIED_ON, registered_on="2026-03-01", advantage_statement=statement) == []
    outcome = admission("2026-03-10", registered_on="2026-03-01", advantage_statement=statement)
    assert outcome["outcome"] == "accepted"


def test_A1_1_1_2c_an_empty_advantage_statement_is_no_statement():
    assert clauses(APPLIED_ON, registered_on="2026-03-01", advantage_statement="") == ["A1.1.1-2c"]


def test_A1_1_1_2c_counts_from_the_application_day_in_shanghai():
    # 2026-03-09T16:30Z is 2026-03-10 00:30 in Shanghai: exactly one year after 2025-03-10.
    ok = admission("2026-03-09T16:30:00Z", registered_on="2025-03-10")
    assert ok["outcome"] == "accepted"
    # 2026-03-09T15:30Z is still 2026-03-09 in Shanghai: one day short.
    short = admission("2026-03-09T15:30:00Z", registered_on="2025-03-10")
    assert short["codes"] == ["A1.1.1-2c"]


def test_A1_1_1_2c_counts_from_the_application_not_from_the_admission():
    # Applied one day short of a year; admitted long after the anniversary: still short.
    report = run([applied(U, "2026-03-09", registered_on="2025-03-10"), admitted(U, "2026-09-01")])
    assert last(report)["codes"] == ["A1.1.1-2c"]


def test_anniversary_of_29_february_is_a_date_in_the_next_year():
    assert anniversary(date(2024, 2, 29), 1) in (date(2025, 2, 28), date(2025, 3, 1))
    assert anniversary(date(2024, 3, 1), 1) == date(2025, 3, 1)
    assert anniversary(date(2023, 12, 31), 1) - date(2023, 12, 31) == timedelta(days=366)


# --- A1.1.1-4, A1.1.1-5 ---------------------------------------------------------------


def test_A1_1_1_4_a_store_account_is_refused():
    assert clauses(is_store_account=True) == ["A1.1.1-4"]
    assert admission(is_store_account=True)["codes"] == ["A1.1.1-4"]


def test_A1_1_1_5_entity_city_differs_from_service_city_is_refused():
    assert clauses(entity_city="杭州", service_city="温州") == ["A1.1.1-5"]
    assert admission(entity_city="杭州", service_city="温州")["codes"] == ["A1.1.1-5"]


def test_A1_1_1_5_same_city_is_enough():
    assert clauses(entity_city="义乌", service_city="义乌") == []


# --- A1.1.1-5 as 1.1 states it: NFKC, trimmed, one trailing 市 ignored, blank never -------


@pytest.mark.parametrize(
    ("entity_city", "service_city"),
    [
        ("杭州", "杭州市"),
        ("杭州市", "杭州"),
        ("杭州市", "杭州市"),
        (" 杭州 ", "杭州"),
        ("\u3000杭州市\u3000", "杭州"),  # ideographic spaces are trimmed
        ("杭州\n", "\t杭州市"),
        ("\u2fa6华", "金华市"),  # KANGXI RADICAL GOLD: NFKC makes it 金
        ("ＨＡＮＧＺＨＯＵ", "HANGZHOU"),  # full-width Latin
    ],
)
def test_A1_1_1_5_cities_are_compared_after_nfkc_and_trimming_ignoring_one_trailing_shi(
    entity_city: str, service_city: str
):
    assert clauses(entity_city=entity_city, service_city=service_city) == []
    assert admission(entity_city=entity_city, service_city=service_city)["outcome"] == "accepted"


@pytest.mark.parametrize(
    ("entity_city", "service_city"),
    [
        ("杭州市市", "杭州"),  # only one trailing 市 is ignored
        ("杭州", "杭州县"),
        ("市杭州", "杭州"),  # a leading 市 is part of the name
        ("杭 州", "杭州"),  # inner spaces count
        ("hangzhou", "HANGZHOU"),  # no case folding
    ],
)
def test_A1_1_1_5_other_differences_still_count(entity_city: str, service_city: str):
    assert clauses(entity_city=entity_city, service_city=service_city) == ["A1.1.1-5"]


@pytest.mark.parametrize(
    ("entity_city", "service_city"),
    [("", ""), ("  ", "  "), ("\u3000", "\u3000"), ("市", "市"), ("", "杭州"), ("杭州", " ")],
)
def test_A1_1_1_5_a_blank_city_never_meets_it(entity_city: str, service_city: str):
    [u] = unmet(entity_city=entity_city, service_city=service_city)
    assert u.clause == "A1.1.1-5" and "blank" in u.reason
    assert admission(entity_city=entity_city, service_city=service_city)["codes"] == ["A1.1.1-5"]


@pytest.mark.parametrize(
    ("city", "service_city", "codes"),
    [
        ("杭州市", "杭州", None),
        ("杭州", "杭州市", None),
        ("宁波", "杭州", ["A1.1.1-5"]),
        ("  ", "  ", ["A1.1.1-5"]),
    ],
)
def test_A1_1_1_5_for_applied_v2_compares_address_city(
    city: str, service_city: str, codes: list[str] | None
):
    address = {**ADDRESS, "city": city}
    report = run(
        [
            applied_v2(U, "2026-03-10", address=address, service_city=service_city),
            admitted(U, "2026-03-11"),
        ]
    )
    assert report["outcomes"][0]["outcome"] == "accepted"
    assert last(report).get("codes") == codes


# --- A1.1.2 ---------------------------------------------------------------------------


@pytest.mark.parametrize("missing", CAPABILITIES)
def test_A1_1_2_each_missing_capability_is_refused(missing: str):
    have = [c for c in CAPABILITIES if c != missing]
    result = unmet(capabilities=have)
    assert [str(u.clause) for u in result] == ["A1.1.2"]
    assert missing in result[0].reason
    outcome = admission(capabilities=have)
    assert outcome["outcome"] == "refused"
    assert outcome["codes"] == ["A1.1.2"]
    assert missing in outcome["reason"]


def test_A1_1_2_no_capability_at_all_is_refused():
    assert clauses(capabilities=[]) == ["A1.1.2"]


def test_A1_1_2_repeating_capabilities_does_not_make_up_for_missing_ones():
    assert clauses(capabilities=["operations"] * 6) == ["A1.1.2"]


def test_A1_1_2_all_six_in_any_order_are_enough():
    assert clauses(capabilities=list(reversed(CAPABILITIES))) == []


# --- refusal of Admitted: each failing clause ------------------------------------------


def test_admitted_refusal_lists_each_failing_clause_in_rule_order():
    outcome = admission(
        general_taxpayer=False, is_store_account=True, capabilities=list(CAPABILITIES[:5])
    )
    assert outcome["outcome"] == "refused"
    assert outcome["codes"] == ["A1.1.1-2a", "A1.1.1-4", "A1.1.2"]
    for code in outcome["codes"]:
        assert code in outcome["reason"]


def test_an_application_failing_A1_1_is_still_recorded_as_applied():
    report = run([applied(U, "2026-03-10", general_taxpayer=False), admitted(U, "2026-03-11")])
    assert outcomes(report) == ["accepted", "refused"]
    assert report["providers"][U]["status"] == "applied"
