"""The inbox: records that were not accepted, listed and re-submitted."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from lifecycle.application import ProviderLifecycle
from lifecycle.records import InboundRecord
from service.produce import produce
from service.settings import Settings


@dataclass(frozen=True)
class InboxEntry:
    record_id: UUID
    outcome: str
    position: str
    id: str | None
    subject: str | None
    event_type: str | None
    codes: list[str]
    reason: str | None
    recorded_at: datetime
    resubmissions: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "record": str(self.record_id),
            "outcome": self.outcome,
            "position": self.position,
            "id": self.id,
            "subject": self.subject,
            "type": self.event_type,
            "codes": self.codes,
            "reason": self.reason,
            "recorded_at": self.recorded_at.isoformat(),
            "resubmissions": self.resubmissions,
        }


def inbox_entries(
    app: ProviderLifecycle,
    outcome: str | None = None,
    code: str | None = None,
    subject: str | None = None,
) -> Iterator[InboxEntry]:
    """Refused and malformed records in store order, filtered."""
    resubmissions: dict[UUID, int] = {}
    received: list[InboundRecord.Received] = []
    for event in app.iter_events():
        if isinstance(event, InboundRecord.Received) and event.outcome in ("refused", "malformed"):
            received.append(event)
        elif isinstance(event, InboundRecord.Resubmitted):
            resubmissions[event.originator_id] = resubmissions.get(event.originator_id, 0) + 1
    for r in received:
        if outcome and r.outcome != outcome:
            continue
        if code and code not in r.codes:
            continue
        if subject and r.subject != subject:
            continue
        yield InboxEntry(
            r.originator_id,
            r.outcome,
            r.position,
            r.ce_id,
            r.subject,
            r.event_type,
            r.codes,
            r.reason,
            r.recorded_at,
            resubmissions.get(r.originator_id, 0),
        )


def resubmit(
    app: ProviderLifecycle, settings: Settings, records: Sequence[InboundRecord], by: str
) -> int:
    """Produce the original bytes and key again, then note the re-submission in the store."""
    sent = asyncio.run(
        produce(
            settings.kafka_bootstrap,
            settings.inbound_topic,
            ((r.key, r.raw, [("x-resubmit-of", str(r.id).encode())]) for r in records),
        )
    )
    now = datetime.now(UTC)
    for r in records:
        r.resubmit(by, now)
    app.save(*records)
    return sent
