"""The relay: the store's notification log → Kafka (outbound, refused, dead letters).

It follows the notification log from its own tracking position (``relay:<name>``),
publishes each page through the process's faststream broker (``consumers/broker.py``: the
idempotent producer), one ``publish`` per record with its key and headers, waits for every
acknowledgement and only then stores the new position: at-least-once, in store order, no
gaps across restarts. Subscribers drop repeats by ``id`` or (``subject``, ``sequence``).

Whatever the store accepted never stops it (CONTRACT.md, "What the service publishes"):

- ``x-error`` holds at most 1 KiB (a longer reason is cut, UTF-8 safe, with ``…``), and the
  topics the service creates have room for a maximal inbound record plus its headers
  (``consumers/topics.py``);
- a notification that still cannot be published — it cannot be translated, it is larger than
  its topic takes, or Kafka refuses that record (any per-record error that is not an outage)
  — is *set aside*: logged (its id, topic and size, never its content), counted in
  ``lifecycle_relay_set_aside_total``, remembered in the store (``insert_set_aside``; shown
  by ``lifecycle projections status``), and the page goes on without it;
- a Kafka outage (or a store error) is waited out, however long: the page is published again
  from the stored position, in order, with capped backoff, and logged when it starts, at most
  once a minute while it lasts and when it ends (``consumers.broker.Outage``);
- a tracking conflict (another relay recorded a position at or past this page first) is never
  fatal: the relay continues from the stored position, so a page already recorded is never
  published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from aiokafka.errors import (
    CorruptRecordException,
    InvalidProducerEpoch,
    InvalidTimestampError,
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnknownError,
    UnknownProducerId,
    UnsupportedForMessageFormatError,
)
from eventsourcing.persistence import IntegrityError, Notification, PersistenceError, Tracking
from faststream.exceptions import IncorrectState
from prometheus_client import Counter

from consumers.broker import Backoff, Outage, make_broker, wait_or_stop
from consumers.metrics import RELAY_POSITION, RELAY_PUBLISHED
from consumers.outgoing import (
    CONTENT_TYPE,
    REASON_MAX_CHARS,
    Outgoing,
    dead_letter,
    json_bytes,
    outbound_event,
    refused_event,
    utc_now_iso,
)
from consumers.topics import DEFAULT_MAX_MESSAGE_BYTES, topic_limits
from lifecycle.application import ProviderLifecycle
from lifecycle.provider import Provider
from lifecycle.records import InboundRecord

log = logging.getLogger(__name__)

RELAY_SET_ASIDE = Counter(
    "lifecycle_relay_set_aside_total",
    "Notifications the relay could not publish and set aside (projections status)",
    ["topic"],
)

#: Kafka's answers about one record (or its batch), not about Kafka being there.
_RECORD_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    InvalidTimestampError,
    CorruptRecordException,
    UnsupportedForMessageFormatError,
    UnknownError,
)
#: What a batch refused for one record does to the next ones of its partition (the
#: idempotent producer's sequence): not an outage, not their fault.
_SEQUENCE_ERRORS: tuple[type[BaseException], ...] = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
)


def record_error(exc: BaseException) -> bool:
    """Whether ``exc`` is about the record itself (set it aside) rather than Kafka or the
    store being unavailable (wait and try again)."""
    if isinstance(exc, _RECORD_ERRORS):
        return True
    if not isinstance(exc, Exception):  # cancelled: the relay is stopping
        return False
    # IncorrectState: faststream's "the broker is not connected".
    return not isinstance(
        exc, KafkaError | OSError | TimeoutError | PersistenceError | IncorrectState
    )


class BrokerNotStarted(KafkaConnectionError):  # type: ignore[misc]
    """The process's broker is not started yet (its owner logs why, ``start_broker``)."""


class Broker(Protocol):
    """What the relay uses of the process's broker (``consumers.broker.ServiceBroker``)."""

    running: bool

    @property
    def producer_connected(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def renew_producer(self) -> None: ...

    async def publish(
        self,
        message: Any,
        topic: str = "",
        *,
        key: bytes | None = None,
        headers: dict[str, str] | None = None,
        no_confirm: bool = False,
    ) -> Any: ...


@dataclass(frozen=True)
class RelayConfig:
    bootstrap: str
    outbound_topic: str
    refused_topic: str
    dlq_topic: str
    name: str = "relay:kafka"
    page: int = 1000
    idle_ms: int = 200
    retry_max_seconds: float = 30.0


@dataclass(frozen=True)
class SetAside:
    """A notification the relay could not publish."""

    notification_id: int
    topic: str | None  # where it was going (None: it could not be translated)
    reason: str
    at: str

    def as_tuple(self) -> tuple[int, str | None, str, str]:
        return (self.notification_id, self.topic, self.reason, self.at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "topic": self.topic,
            "reason": self.reason,
            "at": self.at,
        }


@runtime_checkable
class SetAsideLog(Protocol):
    """A store that remembers what a reader of its log set aside (store/sqlite.py,
    store/postgres.py)."""

    def insert_set_aside(
        self, consumer: str, entries: Sequence[tuple[int, str | None, str, str]]
    ) -> None: ...

    def select_set_aside(
        self, consumer: str, limit: int = 1000
    ) -> list[tuple[int, str | None, str, str]]: ...

    def count_set_aside(self, consumer: str) -> int: ...


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "…"


@dataclass
class Page:
    """A page of the log translated: the records to publish, and what cannot be."""

    outgoing: list[Outgoing] = field(default_factory=list)
    set_aside: list[SetAside] = field(default_factory=list)


class Relay:
    """``broker``: the process's (started and stopped by its owner, ``service/runner.py``);
    without one, the relay makes its own and starts and stops it itself."""

    def __init__(
        self, app: ProviderLifecycle, config: RelayConfig, broker: Broker | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.owns_broker = broker is None
        self.broker: Broker = broker if broker is not None else make_broker(config.bootstrap)
        #: The next publish needs a fresh producer (after a failed one, its sequence
        #: numbers may be spent).
        self._renew = False
        self._usccs: dict[Any, str] = {}
        #: Topic → the largest record batch it takes (``max.message.bytes``), read at start.
        self.limits: dict[str, int] = {}
        #: What this process set aside (also in the store, when it can remember it).
        self.set_aside: list[SetAside] = []
        self.outage = Outage(log, f"relay {config.name}: Kafka or the store")

    # --- translation --------------------------------------------------------------------

    def translate(self, notifications: Sequence[Notification]) -> list[Outgoing]:
        """The records to publish for ``notifications`` (raises on the first that cannot
        be translated; the relay itself uses :meth:`translate_page`)."""
        out: list[Outgoing] = []
        for notification in notifications:
            out.extend(self._translate(notification))
        return out

    def translate_page(self, notifications: Sequence[Notification]) -> Page:
        """The records to publish, and the notifications that cannot be translated."""
        page = Page()
        for notification in notifications:
            try:
                page.outgoing.extend(self._translate(notification))
            except Exception as exc:
                if not record_error(exc):
                    raise  # the store: wait and try again
                page.set_aside.append(
                    SetAside(
                        notification.id, None, f"untranslatable: {_reason(exc)}", utc_now_iso()
                    )
                )
        return page

    def _translate(self, notification: Notification) -> list[Outgoing]:
        event = self.app.mapper.to_domain_event(notification)
        nid = notification.id
        if isinstance(event, Provider.Event):
            uscc = self._uscc(event)
            return [
                Outgoing(
                    self.config.outbound_topic,
                    uscc.encode(),
                    json_bytes(outbound_event(event, uscc)),
                    [CONTENT_TYPE],
                    nid,
                )
            ]
        if isinstance(event, InboundRecord.Received):
            if event.outcome == "refused":
                return [
                    Outgoing(
                        self.config.refused_topic,
                        (event.subject or "").encode() or None,
                        json_bytes(refused_event(event)),
                        [CONTENT_TYPE],
                        nid,
                    )
                ]
            if event.outcome == "malformed" and event.position.startswith("kafka:"):
                letter = dead_letter(event, self.config.dlq_topic)
                return [Outgoing(letter.topic, letter.key, letter.value, letter.headers, nid)]
        return []

    def _uscc(self, event: Provider.Event) -> str:
        if isinstance(event, Provider.Applied):
            self._usccs[event.originator_id] = event.uscc
            return event.uscc
        uscc = self._usccs.get(event.originator_id)
        if uscc is None:
            provider = self.app.provider_by_id(event.originator_id)
            uscc = provider.uscc
            self._usccs[event.originator_id] = uscc
        return uscc

    # --- positions and what was set aside -----------------------------------------------

    def position(self) -> int:
        return self.app.position(self.config.name) or 0

    def remember(self, entries: Sequence[SetAside]) -> None:
        """Log, count and keep the notifications set aside (in the store when it can)."""
        if not entries:
            return
        for entry in entries:
            RELAY_SET_ASIDE.labels(entry.topic or "").inc()
            # The id, topic and the reason's kind only: the reason may quote the record.
            log.error(
                "notification %d (to %s) cannot be published: %s; set aside "
                "(lifecycle projections status)",
                entry.notification_id,
                entry.topic or "-",
                entry.reason.split(":", 1)[0],
            )
        self.set_aside = [*self.set_aside, *entries][-1000:]
        recorder = self.app.process_recorder
        if isinstance(recorder, SetAsideLog):
            recorder.insert_set_aside(self.config.name, [e.as_tuple() for e in entries])

    def _too_large(self, o: Outgoing) -> SetAside | None:
        limit = self.limits.get(o.topic, DEFAULT_MAX_MESSAGE_BYTES)
        size = o.size
        if size <= limit:
            return None
        return SetAside(
            o.notification_id,
            o.topic,
            f"too_large: {size} bytes, more than the {limit} the topic takes",
            utc_now_iso(),
        )

    # --- publishing ---------------------------------------------------------------------

    async def _connect(self) -> None:
        """The broker ready to publish: started (when the relay owns it) and with a
        producer (renewed after a failure). Raises when Kafka is not there."""
        broker = self.broker
        if not broker.running:
            if not self.owns_broker:
                raise BrokerNotStarted("the broker is not started (yet)")
            try:
                await broker.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await broker.stop()
                raise
            self._renew = False
        if self._renew or not broker.producer_connected:
            await broker.renew_producer()
            self._renew = False

    async def _disconnect(self) -> None:
        if self.owns_broker:
            with contextlib.suppress(Exception):
                await self.broker.stop()

    async def _send(self, o: Outgoing) -> asyncio.Future[Any]:
        if not self.broker.producer_connected:
            raise KafkaConnectionError("the broker's producer is not connected")
        # faststream's headers are str (UTF-8 encoded again): ``x-error`` is valid UTF-8
        # (``bounded_header``), the others ASCII.
        future: asyncio.Future[Any] = await self.broker.publish(
            o.value,
            topic=o.topic,
            key=o.key,
            headers={k: v.decode("utf-8", "replace") for k, v in o.headers},
            no_confirm=True,
        )
        return future

    async def publish(self, outgoing: Sequence[Outgoing]) -> list[SetAside]:
        """Publish ``outgoing`` in order and wait for every acknowledgement; what could not
        be published is returned (set aside). Raises when Kafka is not there."""
        set_aside: list[SetAside] = []
        sent: list[tuple[Outgoing, asyncio.Future[Any]]] = []
        failed: list[tuple[Outgoing, BaseException]] = []
        for o in outgoing:
            too_large = self._too_large(o)
            if too_large is not None:
                set_aside.append(too_large)
                continue
            try:
                sent.append((o, await self._send(o)))
            except Exception as exc:
                if not record_error(exc):
                    raise
                failed.append((o, exc))
        results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        for (o, _), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                if not (record_error(result) or isinstance(result, _SEQUENCE_ERRORS)):
                    raise result
                failed.append((o, result))
        if failed:
            set_aside += await self._isolate(sorted(failed, key=lambda f: f[0].notification_id))
        return set_aside

    async def _isolate(self, failed: Sequence[tuple[Outgoing, BaseException]]) -> list[SetAside]:
        """Kafka refused a batch: a fresh producer (its sequence numbers are spent) sends
        each record of it alone, so only the ones Kafka refuses on their own are set aside."""
        log.warning("Kafka refused %d records; sending each of them alone", len(failed))
        self._renew = True
        await self._connect()
        set_aside: list[SetAside] = []
        for o, _ in failed:
            try:
                await (await self._send(o))
            except Exception as exc:
                if not record_error(exc):
                    raise
                set_aside.append(SetAside(o.notification_id, o.topic, _reason(exc), utc_now_iso()))
        return set_aside

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the log until ``stop`` is set; Kafka or store outages of any length are
        waited out with capped backoff, from the stored position (so in order)."""
        backoff = Backoff(0.5, self.config.retry_max_seconds)
        try:
            while not stop.is_set():
                try:
                    await self._follow(stop, on_progress=backoff.reset)
                except Exception as exc:
                    self._renew = True
                    await self._disconnect()
                    delay = backoff.next()
                    if not isinstance(exc, BrokerNotStarted):
                        self.outage.failed(exc, delay)
                    await wait_or_stop(stop, delay)
        finally:
            await self._disconnect()

    async def _follow(self, stop: asyncio.Event, on_progress: Any = None) -> None:
        config = self.config
        topics = [config.outbound_topic, config.refused_topic, config.dlq_topic]
        self.limits = await topic_limits(config.bootstrap, topics)
        await self._connect()
        position = await asyncio.to_thread(self.position)
        while not stop.is_set():
            notifications = await asyncio.to_thread(
                self.app.process_recorder.select_notifications, position + 1, config.page
            )
            if not notifications:
                self.outage.recovered()  # connected, and the store answers
                await wait_or_stop(stop, config.idle_ms / 1000)
                continue
            page = await asyncio.to_thread(self.translate_page, notifications)
            set_aside = page.set_aside + await self.publish(page.outgoing)
            gone = {e.notification_id for e in set_aside}
            for o in page.outgoing:
                if o.notification_id not in gone:
                    RELAY_PUBLISHED.labels(o.topic).inc()
            # Remembered before the position moves past them.
            await asyncio.to_thread(self.remember, sorted(set_aside, key=_by_id))
            try:
                await asyncio.to_thread(
                    self.app.process_recorder.insert_tracking,
                    Tracking(config.name, notifications[-1].id),
                )
                position = notifications[-1].id
            except IntegrityError as exc:
                # Another relay recorded this page (or a later one) first: go on from the
                # stored position, never publishing again what it recorded.
                stored = await asyncio.to_thread(self.position)
                log.warning(
                    "relay %s: position %d already recorded by another relay (%s); "
                    "continuing after %d",
                    config.name,
                    notifications[-1].id,
                    type(exc).__name__,
                    stored,
                )
                position = max(position, stored)
            RELAY_POSITION.set(position)
            # Only a page published and recorded ends an outage: Kafka may take records'
            # connections for a while before it takes records (LeaderNotAvailable).
            self.outage.recovered()
            if on_progress is not None:
                on_progress()


def _by_id(entry: SetAside) -> int:
    return entry.notification_id


def relay_set_aside(
    app: ProviderLifecycle, name: str = "relay:kafka", limit: int = 100
) -> dict[str, Any]:
    """What the relay ``name`` set aside, as ``lifecycle projections status`` shows it."""
    recorder = app.process_recorder
    if not isinstance(recorder, SetAsideLog):
        return {"name": name, "set_aside_total": None, "set_aside": []}
    latest = [SetAside(*row).as_dict() for row in recorder.select_set_aside(name, limit)]
    return {"name": name, "set_aside_total": recorder.count_set_aside(name), "set_aside": latest}
