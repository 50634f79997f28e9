"""The inbound subscriber: Kafka → judge → event store, with exactly-once effect.

Each ``getmany`` batch is parsed and judged in memory by ``ProviderLifecycle.process``,
which writes the accepted events, the refused / malformed / duplicate records and the
position of every partition in the batch in **one transaction**. Positions live in the
store: on assignment each partition is sought to its stored position + 1, and Kafka's
committed offsets are only advisory (for lag dashboards). A batch the store refuses
(another consumer got there first, a stale fetch after a rebalance) or cannot take
(database down) is rewound to the stored positions and fetched again, with backoff.
A poison record cannot block a partition: every record is judged, at worst malformed.

It is a faststream batch subscriber on the process's broker (``consumers/broker.py``) with
``AckPolicy.MANUAL`` (ARCHITECTURE.md, "Traps"): faststream neither commits nor seeks, and a
handler that raises only gets logged — so the handler itself seeks every assigned partition
back to the store's positions (through the subscriber's consumer) before it raises. Bytes
reach the handler undecoded (a raw-bytes decoder) and header values cannot fail the batch
(:func:`safe_parser`): every record is judged by the domain, at worst malformed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol
from uuid import UUID

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from pydantic import SkipValidation

from consumers.broker import Backoff, Outage, ServiceBroker, make_broker, start_broker, wait_or_stop
from consumers.metrics import BATCH_SECONDS, CONSUMER_LAG, OUTCOMES
from lifecycle.application import InboundMessage, ProviderLifecycle, Result
from lifecycle.ports import Position

log = logging.getLogger(__name__)

#: Set by ``lifecycle inbox resubmit``: the operator asks for a refused event to be judged again.
RESUBMIT_HEADER = "x-resubmit-of"


def resubmitted_record(values: Sequence[bytes | None]) -> UUID | None:
    """The inbox record an ``x-resubmit-of`` header names (``None``: absent or not an id)."""
    try:
        return UUID((values[0] or b"").decode("ascii")) if values else None
    except (ValueError, UnicodeDecodeError):
        return None


def position_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}:{partition}"


def record_position(topic: str, partition: int, offset: int) -> str:
    return f"kafka:{topic}:{partition}:{offset}"


def tune_gc() -> None:
    """Fewer full collections: the aggregate cache is large, long-lived and acyclic-heavy.

    Objects alive at start-up are frozen out of collection, and the young generation
    is collected less often (full collections walking the cache cost ~18% of ingest).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


@dataclass(frozen=True)
class InboundConfig:
    bootstrap: str
    topic: str
    group_id: str
    batch_size: int = 2000
    poll_ms: int = 200
    max_backoff_s: float = 5.0


def _utf8(value: bytes | None) -> bytes:
    return (value or b"").decode("utf-8", "replace").encode()


def _clean(record: ConsumerRecord) -> ConsumerRecord:
    """``record`` with header values faststream's parser can decode (UTF-8, never null)."""
    headers = record.headers
    if not headers:
        return record
    try:
        for _, value in headers:
            value.decode("utf-8")
    except (AttributeError, UnicodeDecodeError):
        return replace(record, headers=[(k, _utf8(v)) for k, v in headers])
    return record


async def safe_parser(
    records: Sequence[ConsumerRecord], original: Callable[[Any], Awaitable[Any]]
) -> Any:
    """faststream's batch parser on records whose header values cannot fail it (a null or
    non-UTF-8 value would fail the whole batch before the handler); the handler still gets
    the records as fetched (``msg.raw_message``)."""
    msg = await original(tuple(_clean(r) for r in records))
    msg.raw_message = records
    return msg


def raw_bytes(msg: Any) -> Any:
    """The decoder: the records' values as they are (the domain parses and judges them)."""
    return msg.body


class Partitions(Protocol):
    """What the consumer uses of the subscriber's ``AIOKafkaConsumer``."""

    def assignment(self) -> set[TopicPartition]: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...


class SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue every partition right after the store's position (passed to
    the subscriber as ``listener=``)."""

    def __init__(self, inbound: InboundConsumer) -> None:
        self.inbound = inbound

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self.inbound.seek_to_stored(assigned)


class InboundConsumer:
    """The inbound subscriber. ``broker``: the process's (started and stopped by its owner,
    ``service/runner.py``); without one, the consumer makes its own and :meth:`run` starts
    and stops it."""

    def __init__(
        self,
        app: ProviderLifecycle,
        config: InboundConfig,
        on_results: Callable[[list[Result]], None] | None = None,
        broker: ServiceBroker | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.on_results = on_results
        self.owns_broker = broker is None
        self.broker = broker if broker is not None else make_broker(config.bootstrap)
        self.backoff = Backoff(0.1, config.max_backoff_s)
        self.outage = Outage(log, f"inbound {config.topic}:", failing="batches not stored")
        self.stop = asyncio.Event()
        #: Stands in for the subscriber's consumer (tests of the handler only).
        self.partitions: Partitions | None = None
        self.listener = SeekToStoredPositions(self)
        self.subscriber = self.broker.subscriber(
            config.topic,
            group_id=config.group_id,
            batch=True,
            max_records=config.batch_size,
            max_poll_records=config.batch_size,
            batch_timeout_ms=config.poll_ms,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            ack_policy=AckPolicy.MANUAL,
            listener=self.listener,
            parser=safe_parser,
            decoder=raw_bytes,
            title=f"{config.topic}:consume",
            description="Inbound CloudEvents, judged and recorded exactly once",
        )
        self.subscriber(self.on_batch)

    @property
    def consumer(self) -> Any:
        """The subscriber's ``AIOKafkaConsumer`` (``None`` until it is started)."""
        return self.partitions or self.subscriber.consumer

    def assignment(self) -> set[TopicPartition]:
        consumer = self.consumer
        return set(consumer.assignment()) if consumer is not None else set()

    async def seek_to_stored(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        # Another consumer may have written these providers meanwhile.
        self.app.clear_cache()
        # Read every position, then seek them all with no ``await`` in between: aiokafka
        # may fetch as soon as the listener yields, and a fetch from a stale position
        # would only be refused by the store and fetched again. Offset 0 on a partition
        # whose head was deleted is reset to the earliest by ``auto_offset_reset``.
        stored = {tp: self.app.position(position_name(tp.topic, tp.partition)) for tp in partitions}
        consumer = self.consumer
        for tp, position in stored.items():
            consumer.seek(tp, 0 if position is None else position + 1)
        log.info("partitions assigned: %s", sorted(tp.partition for tp in partitions))

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished first. The
        subscriber runs on the broker: this starts and stops it only when it is the
        consumer's own (a Kafka not there at start-up is waited out)."""
        tune_gc()
        self.stop = stop
        if not self.owns_broker:
            await stop.wait()
            return
        if not await start_broker(self.broker, stop):
            return
        try:
            await stop.wait()
        finally:
            await self.broker.stop()  # waits for the batch in hand

    async def on_batch(self, body: SkipValidation[list[bytes]], msg: KafkaMessage) -> None:
        """The subscriber's handler: one ``getmany`` batch, across partitions."""
        batch: dict[TopicPartition, list[ConsumerRecord]] = {}
        for record in msg.raw_message:
            tp = TopicPartition(record.topic, record.partition)
            batch.setdefault(tp, []).append(record)
        try:
            await self.handle(batch)
        except Exception as exc:  # the store refused or failed: fetch it again
            delay = self.backoff.next()
            self.outage.failed(exc, delay)
            await self.rewind(delay)
            raise
        else:
            self.backoff.reset()
            self.outage.recovered()

    async def rewind(self, delay: float) -> None:
        """Seek every assigned partition to the store's position + 1 (faststream fetches on
        from the consumer's position otherwise, skipping the batch), after ``delay``. While
        the store cannot say its positions, try again: if it never does before the poll
        interval runs out, the store still refuses any batch that does not follow its
        position (and the next failure rewinds)."""
        deadline = time.monotonic() + 120.0
        while True:
            if await wait_or_stop(self.stop, delay):
                return  # stopping: the next start seeks to the stored positions
            try:
                await self.seek_to_stored(self.assignment())
                return
            except Exception as exc:
                if time.monotonic() >= deadline or self.stop.is_set():
                    log.warning("rewind not possible (%s: %s)", type(exc).__name__, exc)
                    return
                delay = self.backoff.next()

    async def handle(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> list[Result]:
        messages: list[InboundMessage] = []
        positions: list[Position] = []
        for tp, records in batch.items():
            if not records:
                continue
            for record in records:
                resubmit_of = [v for k, v in record.headers or () if k == RESUBMIT_HEADER]
                messages.append(
                    InboundMessage(
                        record.value or b"",
                        record_position(tp.topic, tp.partition, record.offset),
                        record.key,
                        resubmitted=bool(resubmit_of),
                        resubmit_of=resubmitted_record(resubmit_of),
                    )
                )
            positions.append(
                Position(
                    position_name(tp.topic, tp.partition), records[0].offset, records[-1].offset
                )
            )
        started = time.perf_counter()
        results = await asyncio.to_thread(self.app.process, messages, positions)
        BATCH_SECONDS.observe(time.perf_counter() - started)
        for outcome, count in Counter(r.outcome for r in results).items():
            OUTCOMES.labels(outcome).inc(count)
        if self.on_results:
            self.on_results(results)
        # The batch is stored: nothing below may fail it (a rebalance may have taken
        # partitions away meanwhile). Advisory only: lets Kafka tooling show the lag.
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        consumer = self.consumer
        try:
            assigned = consumer.assignment()
            await consumer.commit({tp: o for tp, o in offsets.items() if tp in assigned})
        except Exception as exc:  # a rebalance in progress; the store is the truth
            log.info("advisory commit skipped: %s", exc)
            return results
        for tp, offset in offsets.items():
            highwater = consumer.highwater(tp) if tp in assigned else None
            if highwater is not None:
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - offset))
        return results
