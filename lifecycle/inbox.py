"""The inbox use cases: records that were not accepted, listed and re-submitted.

The CLI (``lifecycle inbox``), the read API (``POST /v1/inbox/{id}/resubmit``) and the
dashboard all go through :class:`Inbox`, so the rules hold everywhere: only a *refused*
or *malformed* record goes back to the inbound topic, every re-submission is noted on
the record in the store, and a record whose re-submission is still in flight cannot be
re-submitted again (CONTRACT.md; :class:`AlreadyResubmitted`): the consumer notes on the
record when its copy comes back (``InboundRecord.Returned``). Sending is a port
(:class:`Sender`); ``consumers.resubmit`` is its Kafka adapter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from lifecycle.application import ProviderLifecycle
from lifecycle.records import InboundRecord

#: The outcomes an operator may send back to be judged again.
RESUBMITTABLE: Final = ("refused", "malformed")


class Sender(Protocol):
    """Produces records' original bytes and key to the inbound topic again, marked as a
    re-submission (so a refused id is judged again); returns how many were sent."""

    def __call__(self, records: Sequence[InboundRecord], by: str) -> int: ...


class RecordNotFound(LookupError):
    """No inbox record has this id."""


class NotResubmittable(ValueError):
    """The record was accepted or was a duplicate: there is nothing to judge again."""


class AlreadyResubmitted(NotResubmittable):
    """The record's last re-submission has not come back from the inbound topic yet."""


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
    #: The last re-submission has not come back yet: it cannot be re-submitted now.
    in_flight: bool = False

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
            "in_flight": self.in_flight,
        }


class Inbox:
    """List, find and re-submit the records that were not accepted."""

    def __init__(self, app: ProviderLifecycle, send: Sender) -> None:
        self.app = app
        self.send = send

    def entries(
        self, outcome: str | None = None, code: str | None = None, subject: str | None = None
    ) -> Iterator[InboxEntry]:
        """Refused and malformed records in store order, filtered."""
        resubmissions: dict[UUID, int] = {}
        in_flight: set[UUID] = set()
        received: list[InboundRecord.Received] = []
        for event in self.app.iter_events():
            if isinstance(event, InboundRecord.Received) and event.outcome in RESUBMITTABLE:
                received.append(event)
            elif isinstance(event, InboundRecord.Resubmitted):
                resubmissions[event.originator_id] = resubmissions.get(event.originator_id, 0) + 1
                if event.awaits_return:
                    in_flight.add(event.originator_id)
            elif isinstance(event, InboundRecord.Returned):
                in_flight.discard(event.originator_id)
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
                r.originator_id in in_flight,
            )

    def find(self, record_id: UUID) -> InboundRecord:
        """The inbox record ``record_id`` (``RecordNotFound`` for anything else)."""
        try:
            found: Any = self.app.repository.get(record_id)
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, InboundRecord):
            raise RecordNotFound(f"no inbox record {record_id}")
        return found

    def resubmit(self, records: Sequence[InboundRecord], by: str) -> int:
        """Send ``records`` to be judged again, then note the re-submission on each.

        ``NotResubmittable`` (nothing sent) if any of them is not refused or malformed;
        ``AlreadyResubmitted`` (nothing sent) if the last re-submission of any of them has
        not come back yet.
        """
        for r in records:
            if r.outcome not in RESUBMITTABLE:
                raise NotResubmittable(f"a {r.outcome} record cannot be re-submitted")
        for r in records:
            if r.in_flight:
                raise AlreadyResubmitted(
                    f"record {r.id} was re-submitted and has not come back from the inbound "
                    "topic yet; it can be re-submitted again once it has been judged"
                )
        sent = self.send(records, by)
        now = self.app.clock()
        for r in records:
            r.resubmit(by, now)
        self.app.save(*records)
        return sent
