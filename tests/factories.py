"""Builders for CloudEvents of the wire contract (CONTRACT.md), to keep tests short.

Every builder returns a plain ``dict`` (the JSON object of one Kafka record) so a test
can still break it on purpose; ``line`` turns it into the bytes the service consumes.
Days given as ``"YYYY-MM-DD"`` become 10:00 in Asia/Shanghai that day; a full RFC 3339
string is used as is.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lifecycle.application import InboundMessage, ProviderLifecycle, Result
from lifecycle.evaluate import evaluate
from lifecycle.records import InboundRecord, b64
from lifecycle.uscc import check_character

#: Values straight from the rulebook (RULEBOOK.md), in fen, not imported from the code.
DEPOSIT_FEN = 10_000_000  # A1.1.1-3: CNY 100,000
MIN_CAPITAL_FEN = 50_000_000  # A1.1.1-2b: CNY 500,000
COOLDOWN = timedelta(days=180)  # A1.3-3 / A1.3-5

SOURCE = "/taobao-live/provider-admin"
CAPABILITIES = (
    "bd_expansion",
    "operations",
    "accompanied_running",
    "training",
    "paid_traffic",
    "goods_distribution",
)
EXPULSION_GROUNDS = ("A1.2.2-1", "A1.2.2-2", "A1.2.2-3", "A1.2.2-4", "A3-2")
ARTICLE_2 = (
    "A2.1-1",
    "A2.1-2",
    *(f"A2.2-{n}" for n in range(1, 8)),
    "A2.3-1",
    "A2.3-2",
    "A2.3-3",
)

_ids = itertools.count(1)
_positions = itertools.count(1)


# --- USCC -----------------------------------------------------------------------------


def uscc(n: int = 1) -> str:
    """A valid USCC: an enterprise (91) in Hangzhou (330100) with a numbered org code."""
    first17 = f"91330100{n:09d}"
    return first17 + check_character(first17)


def bad_check_uscc(n: int = 1) -> str:
    """A USCC of the right shape whose check character is wrong."""
    good = uscc(n)
    wrong = "1" if good[-1] != "1" else "2"
    return good[:17] + wrong


# --- dates ----------------------------------------------------------------------------


def day(value: str | date) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def at(when: str | date) -> str:
    """RFC 3339 business time: a bare day means 10:00 Asia/Shanghai that day."""
    if isinstance(when, date):
        return f"{when.isoformat()}T10:00:00+08:00"
    return when if "T" in when else f"{when}T10:00:00+08:00"


def plus(value: str | date, days: int) -> date:
    return day(value) + timedelta(days=days)


# --- envelope and payloads ------------------------------------------------------------


def next_id(prefix: str = "e") -> str:
    return f"{prefix}-{next(_ids)}"


def event(
    type_: str,
    subject: str,
    data: dict[str, Any],
    when: str | date = "2026-01-01",
    *,
    id: str | None = None,
    **envelope: Any,
) -> dict[str, Any]:
    """A CloudEvents 1.0 envelope (JSON structured mode)."""
    ev: dict[str, Any] = {
        "specversion": "1.0",
        "id": id if id is not None else next_id(type_.removeprefix("provider.")),
        "source": SOURCE,
        "type": type_,
        "subject": subject,
        "time": at(when),
        "datacontenttype": "application/json",
        "data": data,
    }
    ev.update(envelope)
    return ev


def applied_data(**overrides: Any) -> dict[str, Any]:
    """A payload that meets every A1.1 requirement (deposit aside)."""
    data: dict[str, Any] = {
        "company_name": "杭州示例直播服务有限公司",
        "entity_type": "enterprise",
        "real_name_verified": True,
        "general_taxpayer": True,
        "registered_capital_fen": MIN_CAPITAL_FEN * 2,
        "registered_on": "2020-05-01",
        "advantage_statement": None,
        "is_store_account": False,
        "entity_city": "杭州",
        "service_city": "杭州",
        "capabilities": list(CAPABILITIES),
        "contact": {"name": "张三", "phone": "13800000000"},
    }
    data.update(overrides)
    return data


def applied(subject: str, when: str | date = "2026-01-01", *, id: str | None = None, **kw: Any):
    return event("provider.Applied", subject, applied_data(**kw), when, id=id)


#: ``provider.Applied`` v2's address (its ``city`` is what A1.1.1-5 compares).
ADDRESS: dict[str, str | None] = {
    "province": "浙江省",
    "city": "杭州",
    "district": "西湖区",
    "street": "文三路 1 号",
}


def applied_v2(
    subject: str,
    when: str | date = "2026-01-01",
    *,
    address: dict[str, Any] | None = None,
    id: str | None = None,
    **kw: Any,
):
    """``provider.Applied`` v2 (``dataschema`` …``provider.Applied.v2``): ``address``
    replaces v1's ``entity_city``."""
    data = applied_data(**kw)
    data.pop("entity_city")
    data["address"] = dict(address or ADDRESS)
    schema = "urn:provider-lifecycle:schema:provider.Applied.v2"
    return event("provider.Applied", subject, data, when, id=id, dataschema=schema)


def admitted(subject: str, when: str | date = "2026-01-02", *, id: str | None = None):
    return event("provider.Admitted", subject, {"decided_by": "ops-1"}, when, id=id)


def deposit_paid(
    subject: str,
    when: str | date = "2026-01-03",
    amount_fen: int = DEPOSIT_FEN,
    *,
    id: str | None = None,
):
    data = {"amount_fen": amount_fen, "payment_ref": "PAY-1"}
    return event("provider.DepositPaid", subject, data, when, id=id)


def deposit_deducted(
    subject: str,
    when: str | date = "2026-02-01",
    amount_fen: int = 1,
    clause: str = "A4-1",
    *,
    id: str | None = None,
):
    data = {"amount_fen": amount_fen, "reason": "penalty", "clause": clause}
    return event("provider.DepositDeducted", subject, data, when, id=id)


def violation(
    subject: str,
    when: str | date = "2026-02-01",
    clause: str = "A2.2-4",
    severity: str = "serious",
    *,
    id: str | None = None,
):
    data = {
        "clause": clause,
        "severity": severity,
        "description": "data fabrication",
        "evidence_ref": None,
    }
    return event("provider.ViolationRecorded", subject, data, when, id=id)


def exited(
    subject: str,
    when: str | date = "2026-03-01",
    *,
    settled: bool = True,
    fulfilled: bool = True,
    id: str | None = None,
):
    data = {"merchant_fees_settled": settled, "transaction_obligations_fulfilled": fulfilled}
    return event("provider.Exited", subject, data, when, id=id)


def expelled(
    subject: str,
    when: str | date = "2026-03-01",
    ground: str = "A1.2.2-2",
    *,
    readmission: dict[str, Any] | None = None,
    violations: Iterable[str] = (),
    id: str | None = None,
):
    data = {"ground": ground, "violations": list(violations), "readmission": readmission}
    return event("provider.Expelled", subject, data, when, id=id)


def declined(subject: str, when: str | date = "2026-01-02", *, id: str | None = None):
    data = {"reason": "capital too low", "clauses": ["A1.1.1-2b"]}
    return event("provider.ApplicationDeclined", subject, data, when, id=id)


def until(value: str | date) -> dict[str, str]:
    return {"until": day(value).isoformat()}


PERMANENT: dict[str, bool] = {"permanent": True}
CLEARED: dict[str, bool] = {"cleared": True}  # ReadmissionDecided only


def readmission_decided(
    subject: str,
    when: str | date = "2026-04-01",
    readmission: dict[str, Any] | None = None,
    *,
    decided_by: str = "platform-review-1",
    id: str | None = None,
):
    """``provider.ReadmissionDecided`` (1.1): the platform ends a manual review (A1.4) with
    ``until(...)``, ``PERMANENT`` or ``CLEARED`` (the default)."""
    data = {"decided_by": decided_by, "readmission": readmission or CLEARED}
    return event("provider.ReadmissionDecided", subject, data, when, id=id)


def onboard(subject: str, start: str | date = "2025-01-01") -> list[dict[str, Any]]:
    """Applied, Admitted and the full deposit on consecutive days: an active provider."""
    return [
        applied(subject, day(start)),
        admitted(subject, plus(start, 1)),
        deposit_paid(subject, plus(start, 2)),
    ]


# --- running --------------------------------------------------------------------------


def line(ev: dict[str, Any] | bytes) -> bytes:
    return ev if isinstance(ev, bytes) else json.dumps(ev, ensure_ascii=False).encode()


def run(events: Iterable[dict[str, Any] | bytes], as_of: str | date = "2026-06-01"):
    """``lifecycle.evaluate.evaluate`` over the events, one line each."""
    return evaluate([line(e) + b"\n" for e in events], day(as_of))


def outcomes(report: dict[str, Any]) -> list[str]:
    return [o["outcome"] for o in report["outcomes"]]


def last(report: dict[str, Any]) -> dict[str, Any]:
    return report["outcomes"][-1]


def eligibility_of(report: dict[str, Any], subject: str) -> dict[str, Any]:
    return report["providers"][subject]["eligibility"]


def popo_app() -> ProviderLifecycle:
    return ProviderLifecycle(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def sqlite_env(path: str) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path}


def malformed_before_1_1(
    position: str,
    subject: str | None,
    reason: str = "invalid_subject: not a USCC",
    raw: bytes = b"",
    key: bytes | None = None,
    recorded_at: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> InboundRecord:
    """A malformed record as a store written before 1.1 may hold it (save it with
    ``app.save``): 1.0 kept any subject it could read, of any length and with U+0000, and
    any reason, however long. 1.1 keeps neither (``lifecycle.application._subject_of``, the
    JSON rules), but what reads the store must still handle the records it holds."""
    return InboundRecord(
        "malformed",
        position,
        None,
        subject,
        None,
        [],
        reason,
        b64(raw) or "",
        b64(key),
        None,
        recorded_at,
    )


def message(ev: dict[str, Any] | bytes, position: str | None = None) -> InboundMessage:
    subject = ev.get("subject") if isinstance(ev, dict) else None
    return InboundMessage(
        value=line(ev),
        position=position or f"test:{next(_positions)}",
        key=subject.encode() if isinstance(subject, str) else None,
    )


def process(app: ProviderLifecycle, *events: dict[str, Any] | bytes) -> list[Result]:
    return app.process([message(e) for e in events])
