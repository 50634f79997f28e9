"""The rulebook as data: every clause ID, threshold and period in one place.

Code cites clauses by these names (``Clause.A1_3_5``), never by bare strings, and
every threshold carries the clause it comes from. The text is a short English
rendering of ``RULEBOOK.md``; the Chinese original there is authoritative.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo


class Clause(StrEnum):
    """Clause IDs of the rulebook, plus ``STATE`` for lifecycle-order refusals."""

    # A1.1.1 basic qualifications
    A1_1_1_1 = "A1.1.1-1"
    A1_1_1_2a = "A1.1.1-2a"
    A1_1_1_2b = "A1.1.1-2b"
    A1_1_1_2c = "A1.1.1-2c"
    A1_1_1_3 = "A1.1.1-3"
    A1_1_1_4 = "A1.1.1-4"
    A1_1_1_5 = "A1.1.1-5"
    # A1.1.2 operating capabilities
    A1_1_2 = "A1.1.2"
    # A1.2.1 voluntary exit
    A1_2_1_1 = "A1.2.1-1"
    A1_2_1_2 = "A1.2.1-2"
    # A1.2.2 expulsion grounds
    A1_2_2_1 = "A1.2.2-1"
    A1_2_2_2 = "A1.2.2-2"
    A1_2_2_3 = "A1.2.2-3"
    A1_2_2_4 = "A1.2.2-4"
    # A1.3 re-admission
    A1_3_1 = "A1.3-1"
    A1_3_2 = "A1.3-2"
    A1_3_3 = "A1.3-3"
    A1_3_4 = "A1.3-4"
    A1_3_5 = "A1.3-5"
    # A1.4 precedence
    A1_4 = "A1.4"
    # Article 2 conduct
    A2_1_1 = "A2.1-1"
    A2_1_2 = "A2.1-2"
    A2_2_1 = "A2.2-1"
    A2_2_2 = "A2.2-2"
    A2_2_3 = "A2.2-3"
    A2_2_4 = "A2.2-4"
    A2_2_5 = "A2.2-5"
    A2_2_6 = "A2.2-6"
    A2_2_7 = "A2.2-7"
    A2_3_1 = "A2.3-1"
    A2_3_2 = "A2.3-2"
    A2_3_3 = "A2.3-3"
    # Article 3 handling violations
    A3_1 = "A3-1"
    A3_2 = "A3-2"
    # Article 4 deposit
    A4_1 = "A4-1"
    # Not a clause: the event does not fit the provider's lifecycle state (CONTRACT.md).
    STATE = "STATE"


#: Not a clause either (so no payload may cite it): the refusal code of an event whose
#: Asia/Shanghai business date is before that of the provider's last accepted event
#: (CONTRACT.md, "Lifecycle the service enforces"; RULEBOOK, "How the service reads these
#: rules"). An event refused with ``ORDER`` carries that code alone.
ORDER: Final = "ORDER"


CLAUSE_TEXT: Final[dict[Clause, str]] = {
    Clause.A1_1_1_1: "the operating entity is an enterprise with Taobao real-name verification",
    Clause.A1_1_1_2a: "the entity is a general VAT taxpayer",
    Clause.A1_1_1_2b: "registered capital is at least CNY 500,000",
    Clause.A1_1_1_2c: "registered at least 1 year before applying, or an advantage statement",
    Clause.A1_1_1_3: "the deposit of CNY 100,000 is paid in full",
    Clause.A1_1_1_4: "the applying account is not a store account",
    Clause.A1_1_1_5: "the entity's city equals the city it serves",
    Clause.A1_1_2: "all six operating capabilities at once",
    Clause.A1_2_1_1: "voluntary exit: service fees of all bound merchants settled",
    Clause.A1_2_1_2: "voluntary exit: Heat Wave Engine transaction obligations fulfilled",
    Clause.A1_2_2_1: "expulsion: no longer meets the admission requirements",
    Clause.A1_2_2_2: "expulsion: does not meet the platform's assessment requirements",
    Clause.A1_2_2_3: "expulsion: violated the law or a major incident with severe impact",
    Clause.A1_2_2_4: "expulsion: under the Institution Management Specification",
    Clause.A1_3_1: "re-admission restricted as the Institution Management Specification says",
    Clause.A1_3_2: "re-admission once the admission requirements are met again",
    Clause.A1_3_3: "re-admission 180 days after an assessment expulsion",
    Clause.A1_3_4: "never re-admitted after a law / major-incident expulsion",
    Clause.A1_3_5: "no re-admission within 180 days of a voluntary exit",
    Clause.A1_4: "periods left to other rulebooks must come with the event (or a later "
    "platform decision): until then, manual review",
    Clause.A2_1_1: "false institution qualifications",
    Clause.A2_1_2: "false talent / merchant information",
    Clause.A2_2_1: "improper gain",
    Clause.A2_2_2: "cooperation agreements not performed, unfair terms, unresolved disputes",
    Clause.A2_2_3: "broken commitments",
    Clause.A2_2_4: "disrupting platform order (data fabrication, cheating)",
    Clause.A2_2_5: "infringing others' rights",
    Clause.A2_2_6: "merchant recruitment in the platform's name",
    Clause.A2_2_7: "actual anchor differs from the submitted anchor identity",
    Clause.A2_3_1: "Institution Management Specification",
    Clause.A2_3_2: "operating assessment metrics",
    Clause.A2_3_3: "Institution-Anchor Binding Rules",
    Clause.A3_1: "penalties under the Institution Management Specification",
    Clause.A3_2: "Article 2 violation: the role may be revoked by severity",
    Clause.A4_1: "deposit under the Institution Deposit Management Rules, paid in full",
    Clause.STATE: "the event does not fit the provider's lifecycle state",
}

#: Article 2 clauses: what a ViolationRecorded or an A3-2 expulsion may cite.
ARTICLE_2: Final[frozenset[Clause]] = frozenset(c for c in Clause if c.value.startswith("A2."))

#: Grounds an Expelled event may carry (A1.2.2-1…4, or A3-2 for Article 2 violations).
EXPULSION_GROUNDS: Final[tuple[Clause, ...]] = (
    Clause.A1_2_2_1,
    Clause.A1_2_2_2,
    Clause.A1_2_2_3,
    Clause.A1_2_2_4,
    Clause.A3_2,
)

# --- thresholds and periods -----------------------------------------------------------

#: A1.1.1-2b: registered capital ≥ CNY 500,000, in fen.
MIN_REGISTERED_CAPITAL_FEN: Final = 500_000 * 100

#: A1.1.1-3 / A4-1: the deposit, CNY 100,000, in fen. Active needs a balance ≥ this.
DEPOSIT_FEN: Final = 100_000 * 100

#: A1.1.1-2c: registered at least this many years before the application.
MIN_REGISTERED_YEARS: Final = 1

#: A1.3-5: no new application within 180 days of a voluntary exit (allowed from D + 180).
VOLUNTARY_EXIT_COOLDOWN: Final = timedelta(days=180)

#: A1.3-3: an assessment expulsion (A1.2.2-2) allows a new application from D + 180.
ASSESSMENT_EXPULSION_COOLDOWN: Final = timedelta(days=180)


class Capability(StrEnum):
    """A1.1.2: the six operating capabilities a provider must have at once."""

    BD_EXPANSION = "bd_expansion"  # BD拓展
    OPERATIONS = "operations"  # 运营
    ACCOMPANIED_RUNNING = "accompanied_running"  # 陪跑
    TRAINING = "training"  # 培训
    PAID_TRAFFIC = "paid_traffic"  # 投流
    GOODS_DISTRIBUTION = "goods_distribution"  # 货品整合分发


#: A1.1.2: all six are required.
REQUIRED_CAPABILITIES: Final[frozenset[Capability]] = frozenset(Capability)

#: Day counting uses the calendar date in this zone (RULEBOOK "How the service reads").
BUSINESS_TZ: Final = ZoneInfo("Asia/Shanghai")


def business_date(moment: datetime) -> date:
    """The Asia/Shanghai calendar date of ``moment``: the day every period counts in."""
    return moment.astimezone(BUSINESS_TZ).date()
