"""The process's one Kafka connection: a faststream ``KafkaBroker`` (ARCHITECTURE.md, "Traps").

``service/bootstrap.py`` builds it (:func:`make_broker`), the inbound subscriber
(``consumers/inbound.py``) is declared on it and the relay (``consumers/relay.py``) publishes
through it; ``service/runner.py`` starts it with :func:`start_broker` (a Kafka that is not
there at start-up is waited out) and stops it.

- The idempotent producer (``enable_idempotence=True``); topics are never auto-created (the
  service creates its own, ``consumers/topics.py``); no correlation ids.
- Records carry exactly the headers the service gives them: faststream's producer adds a
  ``content-type`` of its own to every record (``""`` for bytes), which a dead letter (the
  original bytes, not a CloudEvent of the service's) must not carry. :class:`_ExactHeaders`
  is faststream's ``publish`` without that header.
- Outages of any length are waited out with capped backoff, and logged once when they start,
  once when they end and at most once a minute while they last (:class:`Outage`); the Kafka
  client's own per-retry lines are limited likewise (:func:`limit_kafka_logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from faststream.kafka import KafkaBroker
from faststream.kafka.publisher.producer import AioKafkaFastProducerImpl

if TYPE_CHECKING:
    from faststream.kafka.response import KafkaPublishCommand

log = logging.getLogger(__name__)

#: faststream's own lines (a handler's error, a consume loop's Kafka error) go through the
#: service's logging; its per-message access lines at DEBUG only.
FASTSTREAM_LOG = logging.getLogger("consumers.faststream")

CLIENT_ID = "provider-lifecycle"

#: The largest request the producer sends: above any topic's ``max.message.bytes`` the
#: service creates (``consumers/topics.py``); a record larger than its topic takes is set
#: aside by the relay before it is sent.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


class _ExactHeaders(AioKafkaFastProducerImpl):
    """faststream's producer, sending the command's headers only (no empty ``content-type``)."""

    async def publish(self, cmd: KafkaPublishCommand) -> Any:
        message, content_type = await self.codec.encode(cmd.body, self.serializer)
        headers = {"content-type": content_type} if content_type else {}
        headers |= cmd.headers_to_publish()
        future = await self._producer.producer.send(
            topic=cmd.destination,
            value=message,
            key=cmd.key,
            partition=cmd.partition,
            timestamp_ms=cmd.timestamp_ms,
            headers=[(k, (v or "").encode()) for k, v in headers.items()],
        )
        return future if cmd.no_confirm else await future


class ServiceBroker(KafkaBroker):
    """The service's ``KafkaBroker``: faststream's, with exact headers and a producer that
    can be renewed (an idempotent producer whose batch Kafka refused has spent its sequence
    numbers for that partition)."""

    def __init__(self, bootstrap: str, **options: Any) -> None:
        super().__init__(
            bootstrap,
            client_id=CLIENT_ID,
            enable_idempotence=True,
            acks="all",
            allow_auto_create_topics=False,
            linger_ms=5,
            max_batch_size=256 * 1024,
            max_request_size=MAX_REQUEST_BYTES,
            graceful_timeout=15.0,
            id_generator=lambda: "",  # no correlation_id header
            logger=FASTSTREAM_LOG,
            log_level=logging.DEBUG,
            **options,
        )
        self.config.broker_config.producer = _ExactHeaders(parser=None, decoder=None)

    @property
    def producer_connected(self) -> bool:
        return bool(self.config.producer)

    async def renew_producer(self) -> None:
        """A fresh producer (and admin client) in place of the current one; raises when
        Kafka is not there (then :attr:`producer_connected` is false until it succeeds)."""
        with contextlib.suppress(Exception):
            await self.config.disconnect()
        try:
            await self.config.connect(**self._connection_kwargs)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.config.disconnect()
            raise


def make_broker(bootstrap: str, **options: Any) -> ServiceBroker:
    """The broker of one process (``service/bootstrap.py``), for the settings' bootstrap."""
    limit_kafka_logs()
    return ServiceBroker(bootstrap, **options)


class Backoff:
    """Doubling delays from ``first`` up to ``cap`` seconds; :meth:`reset` after a success."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first


class Outage:
    """Log lines for one dependency: one when it fails, one when it is back, and at most one
    reminder every ``remind_s`` while it lasts — never one per retry."""

    def __init__(self, logger: logging.Logger, what: str, remind_s: float = 60.0) -> None:
        self.log = logger
        self.what = what
        self.remind_s = remind_s
        self.since: float | None = None
        self.reminded = 0.0
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException, retry_in: float) -> None:
        now = time.monotonic()
        self.failures += 1
        if self.since is None:
            self.since = self.reminded = now
            self.log.warning(
                "%s unavailable (%s: %s); retrying with backoff", self.what, type(exc).__name__, exc
            )
        elif now - self.reminded >= self.remind_s:
            self.reminded = now
            self.log.warning(
                "%s still unavailable after %.0f s (%d attempts; last: %s: %s; next in %.1f s)",
                self.what,
                now - self.since,
                self.failures,
                type(exc).__name__,
                exc,
                retry_in,
            )

    def recovered(self) -> None:
        if self.since is not None:
            self.log.warning(
                "%s back after %.0f s (%d failed attempts)",
                self.what,
                time.monotonic() - self.since,
                self.failures,
            )
        self.since = None
        self.failures = 0


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; whether ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def start_broker(
    broker: KafkaBroker, stop: asyncio.Event, *, backoff: Backoff | None = None
) -> bool:
    """Start ``broker`` (its producer and every subscriber declared on it), waiting out a
    Kafka that is not there for as long as it takes; ``False`` when ``stop`` came first.

    faststream's ``start`` does not retry and leaves what it connected open when it fails:
    each failure is followed by ``broker.stop()`` before the next attempt."""
    backoff = backoff or Backoff(0.5, 30.0)
    outage = Outage(log, f"Kafka ({_servers(broker)})")
    while not stop.is_set():
        try:
            await broker.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await broker.stop()
            delay = backoff.next()
            outage.failed(exc, delay)
            if await wait_or_stop(stop, delay):
                return False
        else:
            outage.recovered()
            return True
    return False


def _servers(broker: KafkaBroker) -> str:
    servers = broker._connection_kwargs.get("bootstrap_servers", "")
    return ",".join(servers) if isinstance(servers, list) else str(servers)


class RateLimit(logging.Filter):
    """At most ``per_minute`` records a minute for each message template of a logger; the
    first one let through after a quiet spell says how many were dropped."""

    def __init__(self, per_minute: int = 6) -> None:
        super().__init__()
        self.per_minute = per_minute
        self.windows: dict[tuple[str, object], tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        start, count, dropped = self.windows.get(key, (now, 0, 0))
        if now - start >= 60.0:
            if dropped:
                record.msg = f"{record.msg} [{dropped} similar lines in the last minute not shown]"
            start, count, dropped = now, 0, 0
        if count >= self.per_minute:
            self.windows[key] = (start, count, dropped + 1)
            return False
        self.windows[key] = (start, count + 1, dropped)
        return True


_LIMITED: set[str] = set()

#: The client loggers that write a line per retry while Kafka is away.
KAFKA_LOGGERS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.client",
    "aiokafka.cluster",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
    "aiokafka.producer.message_accumulator",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.admin.client",
    "consumers.faststream",
)


def limit_kafka_logs(per_minute: int = 6) -> None:
    """A :class:`RateLimit` on each Kafka client logger (a filter applies to the records of
    its own logger only, so each one gets its own)."""
    for name in KAFKA_LOGGERS:
        if name not in _LIMITED:
            logging.getLogger(name).addFilter(RateLimit(per_minute))
            _LIMITED.add(name)
