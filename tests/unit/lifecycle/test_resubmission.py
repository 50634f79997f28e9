"""Re-submission in flight (CONTRACT.md: "a record whose re-submission is still in flight
cannot be re-submitted again").

``Inbox.resubmit`` refuses (``AlreadyResubmitted``) while the record's last re-submission
has not come back; the consumer notes on the record when its copy is consumed
(``InboundRecord.Returned``, found through the ``x-resubmit-of`` header), and from then on it
may be re-submitted again. The projection of the inbox and the audit history read the new
event without harm.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from consumers.inbound import resubmitted_record
from lifecycle.application import InboundMessage, ProviderLifecycle
from lifecycle.inbox import AlreadyResubmitted, Inbox, NotResubmittable
from lifecycle.records import InboundRecord, record_id
from projections.projection import Projection
from tests.factories import admitted, applied, line, uscc

U = uscc(71)
NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


class Sender:
    """The inbox's sending port: remembers each copy as the consumer would receive it."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, UUID]] = []

    def __call__(self, records: Sequence[InboundRecord], by: str) -> int:
        self.sent += [(r.raw, r.id) for r in records]
        return len(records)


@pytest.fixture
def app() -> ProviderLifecycle:
    return ProviderLifecycle(env={"PERSISTENCE_MODULE": "store.memory:Factory"}, clock=lambda: NOW)


_offsets = iter(range(10**6))


def consume_copies(app: ProviderLifecycle, sender: Sender) -> list[str]:
    """The consumer takes the re-submitted copies off the topic (``x-resubmit-of`` set)."""
    messages = [
        InboundMessage(raw, f"kafka:in:0:{100 + next(_offsets)}", None, True, original)
        for raw, original in sender.sent
    ]
    sender.sent.clear()
    return [r.outcome for r in app.process(messages)]


def refused_record(app: ProviderLifecycle) -> InboundRecord:
    early = admitted(U, "2026-01-02", id="adm")
    app.process([InboundMessage(line(early), "kafka:in:0:0", U.encode())])
    return app.record(record_id("kafka:in:0:0"))


def test_a_record_in_flight_cannot_be_resubmitted_until_its_copy_comes_back(
    app: ProviderLifecycle,
) -> None:
    sender = Sender()
    inbox = Inbox(app, sender)
    record = refused_record(app)
    assert inbox.resubmit([record], by="ops") == 1
    assert app.record(record.id).in_flight
    with pytest.raises(AlreadyResubmitted, match="has not come back"):
        inbox.resubmit([app.record(record.id)], by="ops")
    assert len(sender.sent) == 1  # nothing sent the second time
    assert {e.record_id: e.in_flight for e in inbox.entries()} == {record.id: True}

    assert consume_copies(app, sender) == ["refused"]  # still never applied
    back = app.record(record.id)
    assert not back.in_flight and back.resubmissions == 1
    # the original is back; its copy, refused again, is a record of its own
    assert [(e.record_id == record.id, e.in_flight) for e in inbox.entries()] == [
        (True, False),
        (False, False),
    ]
    assert inbox.resubmit([back], by="ops") == 1  # again, now that it came back
    assert app.record(record.id).resubmissions == 2


def test_the_return_is_noted_whatever_the_copy_becomes(app: ProviderLifecycle) -> None:
    sender = Sender()
    inbox = Inbox(app, sender)
    record = refused_record(app)
    app.process([InboundMessage(line(applied(U, "2026-01-01")), "kafka:in:0:1")])
    inbox.resubmit([record], by="ops")
    assert consume_copies(app, sender) == ["accepted"]
    returned = [e for e in app.iter_events() if isinstance(e, InboundRecord.Returned)]
    assert [(e.originator_id, e.outcome, e.returned_at) for e in returned] == [
        (record.id, "accepted", NOW)
    ]
    # accepted at last: a further re-submission is allowed, and is a duplicate
    inbox.resubmit([app.record(record.id)], by="ops")
    assert consume_copies(app, sender) == ["duplicate"]
    assert not app.record(record.id).in_flight


def test_a_malformed_record_comes_back_too(app: ProviderLifecycle) -> None:
    sender = Sender()
    inbox = Inbox(app, sender)
    app.process([InboundMessage(b"{not json", "kafka:in:0:5")])
    record = app.record(record_id("kafka:in:0:5"))
    inbox.resubmit([record], by="ops")
    assert consume_copies(app, sender) == ["malformed"]
    assert not app.record(record.id).in_flight


def test_a_bulk_resubmission_refuses_everything_if_one_is_in_flight(
    app: ProviderLifecycle,
) -> None:
    sender = Sender()
    inbox = Inbox(app, sender)
    first = refused_record(app)
    app.process([InboundMessage(b"[]", "kafka:in:0:9")])
    other = app.record(record_id("kafka:in:0:9"))
    inbox.resubmit([first], by="ops")
    with pytest.raises(AlreadyResubmitted):
        inbox.resubmit([other, app.record(first.id)], by="ops")
    assert len(sender.sent) == 1 and app.record(other.id).resubmissions == 0
    assert issubclass(AlreadyResubmitted, NotResubmittable)  # every caller refuses it already


def test_two_copies_of_one_record_in_one_batch_are_both_noted(app: ProviderLifecycle) -> None:
    record = refused_record(app)
    record.resubmit("ops", NOW)
    app.save(record)
    copies = [
        InboundMessage(record.raw, f"kafka:in:0:{n}", None, True, record.id) for n in (20, 21)
    ]
    assert [r.outcome for r in app.process(copies)] == ["refused", "refused"]
    back = app.record(record.id)
    assert not back.in_flight and back.version == 4  # received, re-submitted, back, back


def test_a_header_naming_no_record_is_judged_as_a_resubmission_all_the_same(
    app: ProviderLifecycle,
) -> None:
    refused_record(app)
    app.process([InboundMessage(line(applied(U, "2026-01-01")), "kafka:in:0:1")])
    stray = InboundMessage(
        line(admitted(U, "2026-01-02", id="adm")), "kafka:in:0:2", None, True, record_id("x")
    )
    assert [r.outcome for r in app.process([stray])] == ["accepted"]


def test_the_consumer_reads_the_record_id_from_the_header() -> None:
    some = record_id("kafka:in:0:0")
    assert resubmitted_record([str(some).encode()]) == some
    assert resubmitted_record([]) is None
    assert resubmitted_record([b"not an id"]) is None
    assert resubmitted_record([b"\xff"]) is None
    assert resubmitted_record([None]) is None


def test_a_resubmission_stored_before_1_1_awaits_nothing(app: ProviderLifecycle) -> None:
    # The copy of a 1.0 re-submission was consumed by code that did not note returns.
    record = refused_record(app)
    record.resubmit("ops", NOW)
    [event] = record.collect_events()
    stored = app.mapper.to_stored_event(event)
    v1 = json.loads(stored.state)
    del v1["awaits_return"], v1["class_version"]
    state = json.dumps(v1, separators=(",", ":")).encode()
    app.recorder.insert_events([StoredEvent(stored.originator_id, 2, stored.topic, state)])
    old = app.record(record.id)
    assert (old.resubmissions, old.in_flight) == (1, False)
    assert Inbox(app, Sender()).resubmit([old], by="ops") == 1


def test_the_projection_counts_resubmissions_and_reads_returns(app: ProviderLifecycle) -> None:
    sender = Sender()
    inbox = Inbox(app, sender)
    record = refused_record(app)
    inbox.resubmit([record], by="ops")
    consume_copies(app, sender)
    notifications = app.process_recorder.select_notifications(1, 100)
    changes = Projection(app).apply(notifications)
    assert changes.resubmissions[str(record.id)] == 1
    assert changes.outcomes == {"refused": 2}  # the record and its copy


def test_the_history_shows_the_resubmission(app: ProviderLifecycle) -> None:
    from audit.history import history

    sender = Sender()
    record = refused_record(app)
    Inbox(app, sender).resubmit([record], by="ops")
    consume_copies(app, sender)
    store: Any = app.recorder
    entries = history(app, store, U)["entries"]
    assert [e["outcome"] for e in entries] == ["refused", "refused"]
    assert entries[0]["resubmissions"] == [{"by": "ops", "at": NOW.isoformat()}]
    assert date.fromisoformat(entries[0]["recorded_at"][:10]) == NOW.date()
