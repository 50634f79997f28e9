"""Notifications applied in memory: what a batch changes in the views, before any SQL.

Provider events go to cached :class:`~lifecycle.provider.Provider` aggregates with the
domain's own ``mutate`` (a cache miss loads the aggregate from the repository at the
version just before the event), so every row equals a replay by construction.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Notification

from lifecycle.application import ProviderLifecycle
from lifecycle.provider import Provider
from lifecycle.records import InboundRecord
from lifecycle.rules import Clause, business_date
from projections import documents as d

#: Which per-day counter an accepted event increments.
DAILY_KIND: dict[type[Provider.Event], str] = {
    Provider.Applied: "applied",
    Provider.Reapplied: "applied",
    Provider.Admitted: "admitted",
    Provider.Exited: "exited",
    Provider.Expelled: "expelled",
    Provider.ApplicationDeclined: "declined",
}


def event_clauses(event: Provider.Event) -> list[str]:
    """The rulebook clauses an accepted event itself cites (for the timeline)."""
    data = event.data
    if isinstance(event, Provider.ViolationRecorded | Provider.DepositDeducted):
        return [str(data["clause"])]
    if isinstance(event, Provider.Expelled):
        return [str(data["ground"]), *(str(c) for c in data.get("violations") or [])]
    if isinstance(event, Provider.ApplicationDeclined):
        return [str(c) for c in data.get("clauses") or []]
    if isinstance(event, Provider.ReadmissionDecided):
        # A1.4: the decision ending a manual review; a restriction it sets is A1.3-1's.
        restricts = not (data.get("readmission") or {}).get("cleared")
        return [str(Clause.A1_4), *([str(Clause.A1_3_1)] if restricts else [])]
    return []


def _record_time(record: InboundRecord.Received) -> tuple[str | None, Any]:
    """The business time and day of a record's event, when it was parsed."""
    event = record.event or {}
    raw = event.get("time")
    if not isinstance(raw, str):
        return None, None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None, None
    if moment.tzinfo is None:
        return None, None
    return moment.isoformat(), business_date(moment)


@dataclass
class Changes:
    """What one batch does to the views."""

    first: int
    last: int
    touched: dict[str, Provider] = field(default_factory=dict)
    before: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    milestones: dict[str, int] = field(default_factory=dict)  # how many before the batch
    timeline: list[tuple[Any, ...]] = field(default_factory=list)
    inbox: list[tuple[Any, ...]] = field(default_factory=list)
    resubmissions: Counter[str] = field(default_factory=Counter)
    daily: Counter[tuple[Any, str]] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)


def city_status(p: Provider | None) -> tuple[str, str] | None:
    if p is None or p.status is None:
        return None
    return ((p.application or {}).get("service_city") or "", p.status)


class Projection:
    """Applies notifications to cached aggregates; knows nothing about SQL."""

    def __init__(self, app: ProviderLifecycle, cache_size: int = 100_000) -> None:
        self.app = app
        self.cache_size = cache_size
        self._cache: OrderedDict[UUID, Provider] = OrderedDict()
        self.loads = 0  # aggregates loaded from the repository (cache misses)

    def reset(self) -> None:
        self._cache.clear()

    def _aggregate(self, event: Provider.Event) -> Provider | None:
        if isinstance(event, Aggregate.Created):
            return None
        cached = self._cache.get(event.originator_id)
        if cached is not None and cached.version == event.originator_version - 1:
            return cached
        self.loads += 1
        provider: Provider = self.app.repository.get(
            event.originator_id, version=event.originator_version - 1
        )
        return provider

    def _remember(self, provider: Provider) -> None:
        self._cache[provider.id] = provider
        self._cache.move_to_end(provider.id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def apply(self, notifications: Sequence[Notification]) -> Changes:
        changes = Changes(notifications[0].id, notifications[-1].id)
        mapper = self.app.mapper
        for notification in notifications:
            event = mapper.to_domain_event(notification)
            if isinstance(event, Provider.Event):
                self._provider_event(notification.id, event, changes)
            elif isinstance(event, InboundRecord.Received):
                self._received(notification.id, event, changes)
            elif isinstance(event, InboundRecord.Resubmitted):
                changes.resubmissions[str(event.originator_id)] += 1
        return changes

    def _provider_event(self, nid: int, event: Provider.Event, changes: Changes) -> None:
        before = self._aggregate(event)
        before_key = city_status(before)  # before ``mutate`` changes the cached object in place
        before_milestones = len(before.milestones) if before is not None else -1
        provider = event.mutate(before)
        assert isinstance(provider, Provider)
        uscc = provider.uscc
        if uscc not in changes.touched:
            changes.before[uscc] = before_key
            changes.milestones[uscc] = before_milestones
        changes.touched[uscc] = provider
        self._remember(provider)
        changes.outcomes["accepted"] += 1
        kind = DAILY_KIND.get(type(event))
        if kind is not None:
            changes.daily[(event.business_date, kind)] += 1
        changes.timeline.append(
            (
                uscc,
                nid,
                event.originator_version,
                event.ce_id,
                event.WIRE_TYPE,
                event.timestamp.isoformat(),
                event.business_date,
                d.iso_utc(event.recorded_at),
                "accepted",
                "[]",
                None,
                d.dumps(event_clauses(event)),
                event.ce_source,
            )
        )

    def _received(self, nid: int, record: InboundRecord.Received, changes: Changes) -> None:
        changes.outcomes[record.outcome] += 1
        codes = d.dumps(list(record.codes))
        if record.outcome in ("refused", "malformed"):
            changes.inbox.append(
                (
                    str(record.originator_id),
                    nid,
                    record.outcome,
                    record.position,
                    record.ce_id,
                    record.subject,
                    record.event_type,
                    codes,
                    record.reason,
                    d.iso_utc(record.recorded_at),
                    0,
                )
            )
        if record.subject:
            when, day = _record_time(record)
            source = (record.event or {}).get("source")
            changes.timeline.append(
                (
                    record.subject,
                    nid,
                    None,
                    record.ce_id,
                    record.event_type,
                    when,
                    day,
                    d.iso_utc(record.recorded_at),
                    record.outcome,
                    codes,
                    record.reason,
                    "[]",
                    source if isinstance(source, str) else None,
                )
            )
