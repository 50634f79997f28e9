"""Inbound records that were not accepted: refused, malformed or duplicate.

Nothing consumed is lost: each such record is kept in the store (one small
aggregate per record) with its reason, the original bytes and key, and where it
came from, so an operator can list it and re-submit it after an upstream fix.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

RECORD_NAMESPACE = uuid5(NAMESPACE_URL, "urn:provider-lifecycle:inbound-record")


def record_id(position: str) -> UUID:
    """One record per inbound position (``kafka:<topic>:<partition>:<offset>``)."""
    return uuid5(RECORD_NAMESPACE, position)


class InboundRecord(Aggregate):
    """One consumed record that did not change any provider."""

    class Received(Aggregate.Created):
        outcome: str
        position: str
        ce_id: str | None
        subject: str | None
        event_type: str | None
        codes: list[str]
        reason: str | None
        raw_b64: str
        key_b64: str | None
        event: dict[str, Any] | None
        recorded_at: datetime

    class Resubmitted(Aggregate.Event):
        by: str
        resubmitted_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.resubmissions += 1

    def __init__(
        self,
        outcome: str,
        position: str,
        ce_id: str | None,
        subject: str | None,
        event_type: str | None,
        codes: list[str],
        reason: str | None,
        raw_b64: str,
        key_b64: str | None,
        event: dict[str, Any] | None,
        recorded_at: datetime,
    ) -> None:
        self.outcome = outcome
        self.position = position
        self.ce_id = ce_id
        self.subject = subject
        self.event_type = event_type
        self.codes = codes
        self.reason = reason
        self.raw_b64 = raw_b64
        self.key_b64 = key_b64
        self.event = event
        self.recorded_at = recorded_at
        self.resubmissions = 0

    @staticmethod
    def create_id(position: str, **_: Any) -> UUID:
        return record_id(position)

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.raw_b64)

    @property
    def key(self) -> bytes | None:
        return base64.b64decode(self.key_b64) if self.key_b64 is not None else None

    def resubmit(self, by: str, at: datetime) -> None:
        self.trigger_event(self.Resubmitted, by=by, resubmitted_at=at, timestamp=at)


def b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


def refused_id_marker(ce_id: str) -> UUID:
    """The id of the marker that remembers a refused CloudEvents ``id``."""
    return uuid5(RECORD_NAMESPACE, f"refused-id:{ce_id}")


class RefusedId(Aggregate):
    """Remembers that an event ``id`` was refused: a re-send is a duplicate (CONTRACT.md).

    Only an operator's re-submission from the inbox (``x-resubmit-of``) judges it again.
    """

    class Noted(Aggregate.Created):
        ce_id: str
        subject: str

    def __init__(self, ce_id: str, subject: str) -> None:
        self.ce_id = ce_id
        self.subject = subject

    @staticmethod
    def create_id(ce_id: str, **_: Any) -> UUID:
        return refused_id_marker(ce_id)
