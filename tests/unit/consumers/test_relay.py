"""The relay without a broker: what it publishes (headers, extensions, a bounded ``x-error``)
and what it does with a record Kafka will not take (set aside, the others go on) or when
Kafka is not there (raise, so ``run`` waits and publishes the page again, in order).

A fake broker stands in for faststream's (the real one is exercised by
``tests/integration/test_poison_after_store.py``).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from hypothesis import given
from hypothesis import strategies as st

from consumers import relay as relay_module
from consumers.outgoing import (
    CONTENT_TYPE,
    X_ERROR_MAX_BYTES,
    Outgoing,
    bounded_header,
    outbound_event,
)
from consumers.relay import Relay, RelayConfig, relay_set_aside
from lifecycle.application import InboundMessage, ProviderLifecycle
from lifecycle.provider import Provider
from lifecycle.records import InboundRecord, b64
from store.url import persistence_env
from tests.factories import admitted, applied, deposit_paid, event, line, onboard, uscc

CONFIG = RelayConfig("kafka:9", "out", "refused", "dlq", page=100)
A, B = uscc(801), uscc(802)

# --- x-error ----------------------------------------------------------------------------------


@given(st.text(max_size=3000))
def test_x_error_is_at_most_1_kib_of_valid_utf8_and_a_prefix_of_the_reason(reason: str) -> None:
    header = bounded_header(reason)
    assert len(header) <= X_ERROR_MAX_BYTES
    text = header.decode("utf-8")  # never a cut character
    whole = reason.encode("utf-8", "replace").decode("utf-8")
    if len(reason.encode("utf-8", "replace")) <= X_ERROR_MAX_BYTES:
        assert text == whole
    else:
        assert text.endswith("…") and whole.startswith(text[:-1])
        # Cut as late as a character boundary allows.
        assert len(header) > X_ERROR_MAX_BYTES - 3 - 4


def test_x_error_cuts_a_long_reason_on_a_character_boundary() -> None:
    assert bounded_header("a" * 1024) == b"a" * 1024
    assert bounded_header("a" * 1025) == b"a" * 1021 + "…".encode()
    # 3-byte characters: 340 of them (1020 bytes) fit before the ellipsis.
    cut = bounded_header("名" * 600)
    assert cut.decode() == "名" * 340 + "…" and len(cut) == 1023


# --- a store to relay ---------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ProviderLifecycle]:
    app = ProviderLifecycle(env=persistence_env(f"sqlite:///{tmp_path}/store.db"))
    yield app
    app.close()


_offsets = iter(range(1_000_000))


def ingest(app: ProviderLifecycle, *records: dict[str, Any] | bytes) -> None:
    app.process(
        [InboundMessage(line(r), f"kafka:in:0:{next(_offsets)}", key=b"k") for r in records]
    )


def test_a_dead_letter_keeps_the_bytes_and_key_and_a_bounded_reason(
    store: ProviderLifecycle,
) -> None:
    poison = json.dumps(event("provider." + "X" * 600_000, A, {})).encode()
    # 1.1 parsing keeps every reason short; a store written before it may hold a 600 KB one.
    store.save(
        InboundRecord(
            "malformed",
            "kafka:in:0:0",
            None,
            None,
            None,
            [],
            "unknown_type: " + "provider." + "X" * 600_000,
            b64(poison) or "",
            b64(b"k"),
            None,
            datetime(2026, 1, 1, tzinfo=UTC),
        )
    )
    notifications = store.process_recorder.select_notifications(1, 10)
    [letter] = Relay(store, CONFIG).translate(notifications)
    assert letter.topic == "dlq" and letter.value == poison and letter.key == b"k"
    headers = dict(letter.headers)
    assert len(headers["x-error"]) <= X_ERROR_MAX_BYTES
    assert headers["x-error"].decode().startswith("unknown_type: ")
    assert headers["x-error"].decode().endswith("…")
    assert headers["x-original-topic"] == b"in" and headers["x-original-partition"] == b"0"
    # Raw bytes are not a CloudEvent of the service's: no content-type of its own.
    assert "content-type" not in headers


def test_outbound_and_refused_records_say_they_are_cloudevents_json(
    store: ProviderLifecycle,
) -> None:
    ingest(store, *onboard(A), applied(A, "2026-03-01"))  # the last one is refused (STATE)
    out = Relay(store, CONFIG).translate(store.process_recorder.select_notifications(1, 100))
    topics = [o.topic for o in out]
    assert topics.count("out") == 3 and topics.count("refused") == 1
    for o in out:
        assert o.headers == [CONTENT_TYPE]
        assert CONTENT_TYPE == ("content-type", b"application/cloudevents+json; charset=UTF-8")
        json.loads(o.value)


def test_outbound_events_carry_the_inbound_extension_attributes(
    store: ProviderLifecycle,
) -> None:
    ingest(store, applied(A))
    [first] = [e for e in store.events.get(store.provider(A).id)]  # type: ignore[union-attr]
    assert isinstance(first, Provider.Event)
    assert "traceparent" not in outbound_event(first, A)  # stored before 1.1: none
    extensions = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "partitionkey": 7,
        "replayed": False,
        "sequence": 99,  # the service's own: never taken from the inbound event
        "id": "not-this",
    }
    first.__dict__["ce_extensions"] = extensions
    published = outbound_event(first, A)
    assert published["traceparent"] == extensions["traceparent"]
    assert published["partitionkey"] == 7 and published["replayed"] is False
    assert published["sequence"] == 1 and published["id"] == first.ce_id
    assert list(published)[-3:] == ["sequence", "recordedtime", "data"]


def test_a_notification_that_cannot_be_translated_is_set_aside_and_the_page_goes_on(
    store: ProviderLifecycle, tmp_path: Path
) -> None:
    ingest(store, *onboard(A), *onboard(B))
    # Since 1.1 every judged key also stores an EventKey marker (never published), so the
    # store's rows no longer alternate as they did; the rows are found by topic: A's
    # admission is broken, and every other provider event must still be published.
    published = [
        n.id
        for n in store.process_recorder.select_notifications(1, 100)
        if n.topic.startswith("lifecycle.provider:Provider.")
    ]
    assert len(published) == 6
    broken = published[1]  # A's Admitted
    with sqlite3.connect(tmp_path / "store.db") as conn:  # bytes no longer JSON
        conn.execute("UPDATE stored_events SET state = X'ff' WHERE rowid = ?", (broken,))
    store.clear_cache()
    page = Relay(store, CONFIG).translate_page(store.process_recorder.select_notifications(1, 100))
    [entry] = page.set_aside
    assert entry.notification_id == broken and entry.topic is None
    assert entry.reason.startswith("untranslatable: MapperDeserialisationError")
    assert [o.notification_id for o in page.outgoing] == [n for n in published if n != broken]
    assert [o.topic for o in page.outgoing] == ["out"] * 5


# --- publishing with a fake broker -----------------------------------------------------------


class FakeBroker:
    """The relay's view of the process's broker (``consumers.relay.Broker``): acknowledges
    every record, except those ``refuse(record)`` names an exception for; records a refused
    record's batch-mates as refused too (Kafka refuses a whole batch)."""

    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka
        self.running = False
        self.producer_connected = False

    async def start(self) -> None:
        await self.renew_producer()
        self.running = True

    async def stop(self) -> None:
        self.running = self.producer_connected = False

    async def renew_producer(self) -> None:
        self.kafka.starts += 1
        self.producer_connected = False
        if self.kafka.down:
            raise KafkaConnectionError("no broker")
        self.producer_connected = True

    async def publish(
        self,
        message: bytes,
        topic: str = "",
        *,
        key: bytes | None = None,
        headers: dict[str, str] | None = None,
        no_confirm: bool = False,
    ) -> asyncio.Future[Any]:
        assert no_confirm and isinstance(message, bytes)
        assert all(isinstance(v, str) for v in (headers or {}).values())
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self.kafka.pending:
            # What is sent before the relay next waits forms one batch (as ``linger_ms``).
            loop.call_soon(self.kafka.flush)
        self.kafka.pending.append((topic, key, message, future))
        self.kafka.headers.append(dict(headers or {}))
        return future


class FakeKafka:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes | None, bytes]] = []
        self.headers: list[dict[str, str]] = []
        self.pending: list[tuple[str, bytes | None, bytes, asyncio.Future[Any]]] = []
        self.poison: set[bytes] = set()
        self.down = False
        self.outage = False
        self.starts = 0

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if self.outage:
            for *_, future in batch:
                future.set_exception(KafkaConnectionError("broker went away"))
            return
        refused = any(value in self.poison for _, _, value, _ in batch)
        for topic, key, value, future in batch:
            if refused:
                future.set_exception(MessageSizeTooLargeError())
            else:
                self.published.append((topic, key, value))
                future.set_result(None)


def fake_relay(app: ProviderLifecycle, kafka: FakeKafka, **limits: int) -> Relay:
    relay = Relay(app, CONFIG, FakeBroker(kafka))
    relay.owns_broker = True  # started and stopped by the relay, as without a broker given
    relay.limits = dict(limits)
    return relay


async def publish(relay: Relay, outgoing: list[Outgoing]) -> list[Any]:
    await relay._connect()
    return await relay.publish(outgoing)


def records(n: int, topic: str = "out") -> list[Outgoing]:
    return [Outgoing(topic, b"k", f"record {i}".encode(), [], i + 1) for i in range(n)]


def test_a_record_larger_than_its_topic_takes_is_set_aside_and_the_others_published(
    store: ProviderLifecycle,
) -> None:
    kafka = FakeKafka()
    relay = fake_relay(store, kafka, dlq=200)
    big = Outgoing("dlq", None, b"x" * 300, [("x-error", b"e")], 2)
    small = Outgoing("dlq", None, b"x" * 10, [], 3)
    outgoing = [*records(1), big, small]
    set_aside = asyncio.run(publish(relay, outgoing))
    assert [(e.notification_id, e.topic) for e in set_aside] == [(2, "dlq")]
    assert set_aside[0].reason.startswith("too_large: ")
    assert [v for _, _, v in kafka.published] == [b"record 0", b"x" * 10]


def test_a_record_kafka_refuses_is_set_aside_alone_and_its_batch_mates_published_in_order(
    store: ProviderLifecycle,
) -> None:
    kafka = FakeKafka()
    relay = fake_relay(store, kafka)
    outgoing = records(5)
    kafka.poison = {b"record 2"}
    set_aside = asyncio.run(publish(relay, outgoing))
    assert [e.notification_id for e in set_aside] == [3]
    assert set_aside[0].reason.startswith("MessageSizeTooLargeError")
    # The batch was refused whole; each record was then sent alone, by a fresh producer.
    assert [v for _, _, v in kafka.published] == [
        b"record 0",
        b"record 1",
        b"record 3",
        b"record 4",
    ]
    assert kafka.starts == 2


def test_a_kafka_outage_is_raised_and_nothing_is_set_aside(store: ProviderLifecycle) -> None:
    kafka = FakeKafka()
    kafka.outage = True
    relay = fake_relay(store, kafka)
    with pytest.raises(KafkaConnectionError):
        asyncio.run(publish(relay, records(3)))
    assert kafka.published == [] and relay.set_aside == []


def test_the_relay_sets_aside_what_cannot_be_published_remembers_it_and_goes_on(
    store: ProviderLifecycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``run``: a Kafka outage at start is waited out; a dead letter too large for
    the DLQ topic is set aside (log, metric, the store); every other record is published,
    in store order, and the position moves past them all."""
    huge = json.dumps(event("provider.Applied", "S" * 5000, {})).encode()  # malformed
    ingest(store, *onboard(A), huge, b"{not json", applied(B), admitted(B))
    ingest(store, deposit_paid(B, "2026-01-03", 25_000))
    head = store.process_recorder.max_notification_id()
    kafka = FakeKafka()

    async def limits(bootstrap: str, topics: list[str]) -> dict[str, int]:
        kafka.down = kafka.starts == 0  # down for the first start only
        return {"out": 10**6, "refused": 10**6, "dlq": 4000}

    monkeypatch.setattr(relay_module, "topic_limits", limits)
    relay = fake_relay(store, kafka)
    relay.config = RelayConfig("kafka:9", "out", "refused", "dlq", page=3, retry_max_seconds=0.01)
    before = relay_module.RELAY_SET_ASIDE.labels("dlq")._value.get()

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        while relay.position() < (head or 0):
            assert not task.done(), task
            await asyncio.sleep(0.01)  # polling the store's tracking position
        stop.set()
        await task

    asyncio.run(go())
    assert kafka.starts >= 2  # the first start met the outage
    published = [(t, json.loads(v) if t == "out" else v) for t, _, v in kafka.published]
    assert [t for t, _ in published] == ["out", "out", "out", "dlq", "out", "out", "out"]
    outbound = [p for t, p in published if t == "out"]
    assert [(e["subject"], e["sequence"]) for e in outbound] == [
        (A, 1),
        (A, 2),
        (A, 3),
        (B, 1),
        (B, 2),
        (B, 3),
    ]
    assert outbound[-1]["data"]["amount_fen"] == 25_000
    assert published[3][1] == b"{not json"
    # The huge dead letter: set aside, counted, and remembered in the store.
    [entry] = relay.set_aside
    assert entry.topic == "dlq" and entry.reason.startswith("too_large: ")
    assert relay_module.RELAY_SET_ASIDE.labels("dlq")._value.get() == before + 1
    report = relay_set_aside(store)
    assert report["set_aside_total"] == 1
    assert report["set_aside"] == [entry.as_dict()]


# --- the real broker's headers, the tracking conflict, an outage's log lines ------------------


class RecordingAioKafkaProducer:
    """What faststream's producer hands to aiokafka's ``send`` (no network)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._closed = False

    async def send(self, **kwargs: Any) -> asyncio.Future[Any]:
        self.sent.append(kwargs)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def stop(self) -> None:
        pass


def test_the_broker_sends_exactly_the_headers_of_the_record(store: ProviderLifecycle) -> None:
    """Through faststream's ``publish``: a CloudEvent carries its ``content-type``, a dead
    letter only its ``x-*`` headers (no empty ``content-type`` of faststream's), neither a
    ``correlation_id``; key, value and topic as given."""
    from faststream.kafka.publisher.state import RealProducer

    from consumers.broker import make_broker

    broker = make_broker("kafka:9")
    fake = RecordingAioKafkaProducer()
    broker.config.producer._producer = RealProducer(fake)  # type: ignore[attr-defined]
    broker.running = True
    relay = Relay(store, CONFIG, broker)
    letter = Outgoing("dlq", b"k", b"\xff raw", [("x-error", "名".encode()), ("x-a", b"1")], 1)
    event = Outgoing("out", b"S", b"{}", [CONTENT_TYPE], 2)

    async def go() -> list[Any]:
        return await relay.publish([letter, event])

    assert asyncio.run(go()) == []
    assert [(s["topic"], s["key"], s["value"]) for s in fake.sent] == [
        ("dlq", b"k", b"\xff raw"),
        ("out", b"S", b"{}"),
    ]
    assert fake.sent[0]["headers"] == [("x-error", "名".encode()), ("x-a", b"1")]
    assert fake.sent[1]["headers"] == [CONTENT_TYPE]


def test_a_tracking_conflict_is_not_fatal_and_no_recorded_page_is_published_again(
    store: ProviderLifecycle, caplog: pytest.LogCaptureFixture
) -> None:
    """Another relay records a position past this relay's page while it publishes it: the
    relay goes on from the stored position, alive, publishing only what comes after it."""
    from eventsourcing.persistence import Tracking

    ingest(store, *onboard(A), *onboard(B))
    head = store.process_recorder.max_notification_id() or 0
    kafka = FakeKafka()
    relay = fake_relay(store, kafka, out=10**6, refused=10**6, dlq=10**6)
    relay.config = RelayConfig("kafka:9", "out", "refused", "dlq", page=2, retry_max_seconds=0.01)
    first_flush = kafka.flush
    flushes = 0

    def flush() -> None:  # the other relay records the whole log while this page is in flight
        nonlocal flushes
        flushes += 1
        if flushes == 1:
            store.process_recorder.insert_tracking(Tracking(CONFIG.name, head))
        first_flush()

    kafka.flush = flush  # type: ignore[method-assign]

    async def limits(bootstrap: str, topics: list[str]) -> dict[str, int]:
        return relay.limits

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not kafka.published:  # the first page is out
            assert loop.time() < deadline and not task.done(), task
            await asyncio.sleep(0.01)
        published = len(kafka.published)
        ingest(store, deposit_paid(B, "2026-01-03", 25_000))  # a new notification after head
        while len(kafka.published) == published:
            assert loop.time() < deadline and not task.done(), task
            await asyncio.sleep(0.01)
        stop.set()
        await task

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(relay_module, "topic_limits", limits)
        asyncio.run(go())
    assert any("already recorded by another relay" in r.getMessage() for r in caplog.records)
    assert not any("unavailable" in r.getMessage() for r in caplog.records)  # no retry either
    # The first page, then only the event after the other relay's position.
    outbound = [json.loads(v) for t, _, v in kafka.published if t == "out"]
    assert len(outbound) <= 2 + 1
    assert outbound[-1]["data"]["amount_fen"] == 25_000
    assert relay.position() == store.process_recorder.max_notification_id()
    assert [(e["subject"], e["sequence"]) for e in outbound[:-1]] == [(A, 1), (A, 2)][
        : len(outbound) - 1
    ]


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    store: ProviderLifecycle, caplog: pytest.LogCaptureFixture
) -> None:
    """Many failed retries, two log lines of the relay's (not one per retry)."""
    ingest(store, *onboard(A))
    head = store.process_recorder.max_notification_id() or 0
    kafka = FakeKafka()
    kafka.outage = True
    relay = fake_relay(store, kafka, out=10**6, refused=10**6, dlq=10**6)
    relay.config = RelayConfig("kafka:9", "out", "refused", "dlq", retry_max_seconds=0.005)

    async def limits(bootstrap: str, topics: list[str]) -> dict[str, int]:
        return relay.limits

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while relay.outage.failures < 20:
            assert loop.time() < deadline and not task.done(), task
            await asyncio.sleep(0.01)
        kafka.outage = False
        while relay.position() < head:
            assert loop.time() < deadline and not task.done(), task
            await asyncio.sleep(0.01)
        stop.set()
        await task

    caplog.set_level("INFO", logger="consumers.relay")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(relay_module, "topic_limits", limits)
        asyncio.run(go())
    lines = [r.getMessage() for r in caplog.records if r.name == "consumers.relay"]
    assert len(lines) == 2, lines
    assert "unavailable (KafkaConnectionError" in lines[0]
    assert "back after" in lines[1] and "failed attempts" in lines[1]
    assert len(kafka.published) == 3
