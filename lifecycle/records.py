"""Inbound records that were not accepted: refused, malformed or duplicate; and the keys judged.

Nothing consumed is lost: each such record is kept in the store (one small
aggregate per record) with its reason, the original bytes and key, and where it
came from, so an operator can list it and re-submit it after an upstream fix.

Idempotency (CONTRACT.md 1.1, "A repeated (source, id) …"): every (``source``, ``id``) that
was judged, accepted or refused, for any provider, has an :class:`EventKey` marker whose id
is derived from the pair, written in the judgement's transaction. A batch finds the keys it
repeats with one query (``select_present_originators``). A malformed record reserves nothing.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Final
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

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
        """An operator sent the record back to the inbound topic (``x-resubmit-of``).

        v2 adds ``awaits_return``: the copy is in flight until :class:`Returned` notes that it
        was consumed (CONTRACT.md: "a record whose re-submission is still in flight cannot be
        re-submitted again"). A re-submission stored before 1.1 (v1) awaits nothing: its copy
        was consumed by code that did not note returns.
        """

        class_version = 2
        by: str
        resubmitted_at: datetime
        awaits_return: bool

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["awaits_return"] = False

        def apply(self, aggregate: Any) -> None:
            aggregate.resubmissions += 1
            if self.awaits_return:
                aggregate.in_flight = True

    class Returned(Aggregate.Event):
        """The re-submitted copy came back and was judged: it may be re-submitted again."""

        position: str
        outcome: str
        returned_at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.in_flight = False

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
        #: The last re-submission has not come back yet (see :class:`Resubmitted`).
        self.in_flight = False

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
        self.trigger_event(
            self.Resubmitted, by=by, resubmitted_at=at, awaits_return=True, timestamp=at
        )

    def returned(self, position: str, outcome: str, at: datetime) -> None:
        """The re-submitted copy was consumed at ``position`` and ended ``outcome``."""
        self.trigger_event(
            self.Returned, position=position, outcome=outcome, returned_at=at, timestamp=at
        )


def b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


def event_key(source: str, ce_id: str) -> UUID:
    """The id of the :class:`EventKey` marker of the idempotency key (``source``, ``id``).

    The name holds the length of ``source``, so no two pairs share one; a string that UTF-8
    cannot hold (a lone surrogate) is named by its code points' bytes, in hex.
    """
    name = f"event-key:{len(source)}:{source}:{ce_id}"
    try:
        return uuid5(RECORD_NAMESPACE, name)
    except UnicodeEncodeError:
        return uuid5(
            RECORD_NAMESPACE, "event-key-cp:" + name.encode("utf-8", "surrogatepass").hex()
        )


class EventKey(Aggregate):
    """An idempotency key (``source``, ``id``) that was judged (CONTRACT.md 1.1).

    Created with the first judgement of the key, accepted or refused, for whichever provider,
    in the same transaction: a repeat of the key is a duplicate. Only an operator's
    re-submission of a refused record judges it again; if that one is accepted, ``Accepted``
    notes it, and from then on every repeat is a duplicate, re-submitted or not.
    ``judged_for`` is the subject it was judged for (not named ``subject``: a marker is
    nobody's history, so the hash chain's subject index leaves it out).
    """

    class Noted(Aggregate.Created):
        source: str
        ce_id: str
        outcome: str
        judged_for: str | None

    class Accepted(Aggregate.Event):
        judged_for: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.accepted = True

    def __init__(self, source: str, ce_id: str, outcome: str, judged_for: str | None) -> None:
        self.source = source
        self.ce_id = ce_id
        self.outcome = outcome
        self.judged_for = judged_for
        self.accepted = outcome == "accepted"

    @staticmethod
    def create_id(source: str, ce_id: str, **_: Any) -> UUID:
        return event_key(source, ce_id)

    def accept(self, judged_for: str | None) -> None:
        """A re-submitted refused event was accepted: the key is an accepted one now."""
        self.trigger_event(self.Accepted, judged_for=judged_for)


_EVENT_KEY_TOPIC: Final = get_topic(EventKey)


def key_noted(
    key: UUID, source: str, ce_id: str, outcome: str, judged_for: str | None, at: datetime
) -> EventKey.Noted:
    """The event that creates the marker ``key`` (= ``event_key(source, ce_id)``), made
    directly: one per judged event, so the aggregate is built only when one is needed
    (``noted.mutate(None)``)."""
    fields: dict[str, Any] = {
        "originator_id": key,
        "originator_version": 1,
        "timestamp": at,
        "originator_topic": _EVENT_KEY_TOPIC,
        "source": source,
        "ce_id": ce_id,
        "outcome": outcome,
        "judged_for": judged_for,
    }
    return EventKey.Noted(**fields)


#: The tracking name that says every key judged before contract 1.1 has its :class:`EventKey`
#: (``ProviderLifecycle.index_event_keys``); its value is the last notification id scanned.
EVENT_KEYS_INDEXED: Final = "lifecycle:event-keys:1.1"


def refused_id_marker(ce_id: str) -> UUID:
    """The id of the 1.0 marker that remembered a refused CloudEvents ``id`` (no source)."""
    return uuid5(RECORD_NAMESPACE, f"refused-id:{ce_id}")


class RefusedId(Aggregate):
    """Contract 1.0's marker of a refused event ``id``, whatever its source. No longer written.

    Stores written before 1.1 hold them; they stay readable. 1.1 keys on (``source``, ``id``):
    see :class:`EventKey`, which ``ProviderLifecycle.index_event_keys`` writes for the
    refusals those stores hold (from the refused records themselves).
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
