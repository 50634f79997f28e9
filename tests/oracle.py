"""The oracle the projection tests compare against: a fresh replay of the store.

Everything expected here comes from the store through the domain, never from the
views' own code: each provider is loaded afresh from the repository, the inbox comes
from ``lifecycle.inbox.Inbox.entries``, the outcome counts from ``ProviderLifecycle.stats``
and the timeline from the notification log itself. ``assert_views_equal_replay`` is
shared by the unit (SQLite) and integration (PostgreSQL) tests.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from lifecycle.application import InboundMessage, ProviderLifecycle
from lifecycle.inbox import Inbox
from lifecycle.provider import Provider
from lifecycle.records import InboundRecord
from lifecycle.uscc import provider_id
from projections.model import InboxFilter, ProviderFilter
from projections.reader import SqlReadModel

ALL = 1_000_000


def _never_sent(records: object, by: str) -> int:
    raise AssertionError("listing the inbox sends nothing")


def ingest(app: ProviderLifecycle, raws: list[bytes], tag: str = "t") -> None:
    app.process([InboundMessage(raw, f"{tag}:{i}") for i, raw in enumerate(raws)])


def replayed_providers(app: ProviderLifecycle) -> dict[str, Provider]:
    """Every provider, loaded afresh from the store."""
    usccs = [e.uscc for e in app.iter_events() if isinstance(e, Provider.Applied)]
    found = {u: app.provider(u) for u in usccs}
    return {u: p for u, p in found.items() if p is not None}


def expected_timelines(app: ProviderLifecycle) -> dict[str, list[tuple[Any, ...]]]:
    """(sequence, id, outcome, codes) of every inbound record of each subject, in store order."""
    subjects: dict[Any, str] = {}
    out: dict[str, list[tuple[Any, ...]]] = {}
    for event in app.iter_events():
        if isinstance(event, Provider.Applied):
            subjects[event.originator_id] = event.uscc
        if isinstance(event, Provider.Event):
            subject = subjects[event.originator_id]
            out.setdefault(subject, []).append(
                (event.originator_version, event.ce_id, "accepted", [])
            )
        elif isinstance(event, InboundRecord.Received) and event.subject:
            out.setdefault(event.subject, []).append(
                (None, event.ce_id, event.outcome, list(event.codes))
            )
    return out


def expected_timeline(app: ProviderLifecycle, subject: str) -> list[tuple[Any, ...]]:
    return expected_timelines(app).get(subject, [])


def expected_per_day(app: ProviderLifecycle) -> dict[str, dict[str, int]]:
    kinds = {
        "provider.Admitted": "admitted",
        "provider.Exited": "exited",
        "provider.Expelled": "expelled",
        "provider.ApplicationDeclined": "declined",
        "provider.Applied": "applied",
    }
    days: dict[str, Counter[str]] = {}
    for event in app.iter_events():
        if isinstance(event, Provider.Event) and event.WIRE_TYPE in kinds:
            day = event.business_date.isoformat()
            days.setdefault(day, Counter())[kinds[event.WIRE_TYPE]] += 1
    return {day: dict(c) for day, c in days.items()}


def _usccs(read_model: SqlReadModel, f: ProviderFilter) -> set[str]:
    page = read_model.providers(f, limit=ALL)
    assert page.total == len(page.items)
    return {item["uscc"] for item in page.items}


def assert_views_equal_replay(
    app: ProviderLifecycle, read_model: SqlReadModel, dates: list[date]
) -> None:
    """Every view equals what a fresh replay of ``app``'s store gives."""
    today = read_model.today()
    providers = replayed_providers(app)
    timelines = expected_timelines(app)

    # provider view: the list, each document, and can_apply filtered in SQL at any date
    assert _usccs(read_model, ProviderFilter()) == set(providers)
    for u, p in providers.items():
        doc = read_model.provider(u)
        assert doc is not None, u
        application = p.application or {}
        assert doc["status"] == p.status
        assert doc["deposit_balance_fen"] == p.deposit_balance_fen
        assert doc["deposit_shortfall_fen"] == p.deposit_shortfall_fen
        assert doc["violations"] == len(p.violations)
        assert [(v["clause"], v["severity"], v["on"], v["id"]) for v in doc["violation_list"]] == [
            (v.clause, v.severity, v.on.isoformat(), v.ce_id) for v in p.violations
        ]
        assert doc["company_name"] == application.get("company_name")
        assert doc["city"] == application.get("service_city")
        assert doc["contact"] == application.get("contact")
        unmet = p.unmet_requirements() if p.status == "applied" else []
        assert doc["unmet"] == [{"clause": str(x.clause), "reason": x.reason} for x in unmet]
        assert doc["eligibility"] == p.eligibility(today).as_dict()
        timeline = [(t.get("sequence"), t["id"], t["outcome"], t["codes"]) for t in doc["timeline"]]
        assert timeline == timelines.get(u, []), u
        assert provider_id(u) == p.id
        assert doc["requirements"] is not None
    for day in dates:
        for can_apply in (True, False):
            expected = {
                u for u, p in providers.items() if p.eligibility(day).can_apply is can_apply
            }
            got = _usccs(read_model, ProviderFilter(can_apply=can_apply, as_of=day))
            assert got == expected, (day, can_apply)
    for status in {p.status for p in providers.values()}:
        got = _usccs(read_model, ProviderFilter(status=status))
        assert got == {u for u, p in providers.items() if p.status == status}

    # stats view
    stats = read_model.stats()
    assert stats["outcomes"] == app.stats()
    assert stats["by_status"] == dict(Counter(str(p.status) for p in providers.values()))
    assert stats["by_city"] == dict(
        Counter((p.application or {}).get("service_city") for p in providers.values())
    )
    per_day = {e["day"]: {k: v for k, v in e.items() if k != "day" and v} for e in stats["per_day"]}
    assert per_day == expected_per_day(app)

    # inbox view: newest first, as ``lifecycle inbox list`` lists them (oldest first)
    keys = ("record", "outcome", "position", "id", "subject", "type", "codes", "reason")
    expected_inbox = [
        {k: e.as_dict()[k] for k in (*keys, "resubmissions")}
        for e in Inbox(app, _never_sent).entries()
    ][::-1]
    page = read_model.inbox(InboxFilter(), limit=ALL)
    assert page.total == len(expected_inbox)
    assert [{k: i[k] for k in (*keys, "resubmissions")} for i in page.items] == expected_inbox
