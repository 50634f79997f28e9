"""A1.1 admission standards: which requirements an application does not meet.

The deposit (A1.1.1-3) is left aside: it is paid after the application, and a
provider is *active* only once it is (see ``provider.py``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date

from lifecycle.contract import Applied
from lifecycle.rules import (
    MIN_REGISTERED_CAPITAL_FEN,
    MIN_REGISTERED_YEARS,
    REQUIRED_CAPABILITIES,
    Clause,
)


@dataclass(frozen=True)
class Unmet:
    """One unmet requirement: the clause and a human reason."""

    clause: Clause
    reason: str


def anniversary(day: date, years: int) -> date:
    """``day`` plus whole years; 29 February falls back to 28 February."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def city_key(city: str) -> str:
    """A1.1.1-5: the city as compared: NFKC-normalised, trimmed, one trailing 市 ignored
    ("杭州" and "杭州市" are one city). An empty key is a blank city."""
    return unicodedata.normalize("NFKC", city).strip().removesuffix("市")


def same_city(entity_city: str, service_city: str) -> bool:
    """A1.1.1-5: the entity's city equals the city it serves; a blank city never does."""
    entity, service = city_key(entity_city), city_key(service_city)
    return bool(entity) and entity == service


def unmet_requirements(application: Applied, applied_on: date) -> list[Unmet]:
    """Every A1.1 requirement the application fails (deposit aside), in clause order.

    ``applied_on`` is the Asia/Shanghai date of the application (A1.1.1-2c counts from it).
    """
    unmet: list[Unmet] = []
    if application.entity_type != "enterprise" or not application.real_name_verified:
        # A1.1.1-1
        what = []
        if application.entity_type != "enterprise":
            what.append(
                f"the entity is {application.entity_type.replace('_', ' ')}, not an enterprise"
            )
        if not application.real_name_verified:
            what.append("Taobao real-name verification is not completed")
        unmet.append(Unmet(Clause.A1_1_1_1, "; ".join(what)))
    if not application.general_taxpayer:
        # A1.1.1-2a
        unmet.append(Unmet(Clause.A1_1_1_2a, "the entity is not a general VAT taxpayer"))
    if application.registered_capital_fen < MIN_REGISTERED_CAPITAL_FEN:
        # A1.1.1-2b
        unmet.append(
            Unmet(
                Clause.A1_1_1_2b,
                f"registered capital {application.registered_capital_fen} fen is below "
                f"{MIN_REGISTERED_CAPITAL_FEN} fen (CNY 500,000)",
            )
        )
    one_year_on = anniversary(application.registered_on, MIN_REGISTERED_YEARS)
    if applied_on < one_year_on and not (application.advantage_statement or "").strip():
        # A1.1.1-2c
        unmet.append(
            Unmet(
                Clause.A1_1_1_2c,
                f"registered on {application.registered_on}, less than 1 year before "
                f"{applied_on}, and no advantage statement",
            )
        )
    if application.is_store_account:
        # A1.1.1-4
        unmet.append(Unmet(Clause.A1_1_1_4, "the applying account is a store account"))
    if not same_city(application.entity_city, application.service_city):
        # A1.1.1-5 (for Applied v2 the entity city is ``address.city``)
        if not city_key(application.entity_city) or not city_key(application.service_city):
            reason = (
                f"a blank city never meets A1.1.1-5 (entity city {application.entity_city!r}, "
                f"service city {application.service_city!r})"
            )
        else:
            reason = (
                f"entity city {application.entity_city} differs from service city "
                f"{application.service_city}"
            )
        unmet.append(Unmet(Clause.A1_1_1_5, reason))
    missing = sorted(REQUIRED_CAPABILITIES - set(application.capabilities))
    if missing:
        # A1.1.2
        unmet.append(
            Unmet(Clause.A1_1_2, "missing capabilities: " + ", ".join(c.value for c in missing))
        )
    return unmet
