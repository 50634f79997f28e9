"""The inbound consumer as it was before faststream (aiokafka driven by hand), kept for
``python -m bench.ingest --compare-legacy`` only: the old and the new path measured side
by side in one run (bench/README.md). Not used by the service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from consumers.inbound import (
    RESUBMIT_HEADER,
    InboundConfig,
    position_name,
    record_position,
    resubmitted_record,
    tune_gc,
)
from consumers.metrics import BATCH_SECONDS, CONSUMER_LAG, OUTCOMES
from lifecycle.application import InboundMessage, ProviderLifecycle, Result
from lifecycle.ports import Position

log = logging.getLogger(__name__)


class _LegacySeek(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue every partition right after the store's position."""

    def __init__(self, inbound: LegacyInbound) -> None:
        self.inbound = inbound

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self.inbound.seek_to_stored(assigned)


class LegacyInbound:
    def __init__(
        self,
        app: ProviderLifecycle,
        config: InboundConfig,
        on_results: Callable[[list[Result]], None] | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.on_results = on_results
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap,
            group_id=config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=config.batch_size,
            isolation_level="read_committed",
        )

    async def seek_to_stored(self, partitions: Sequence[TopicPartition]) -> None:
        # Another consumer may have written these providers meanwhile.
        self.app.clear_cache()
        # Read every position, then seek them all with no ``await`` in between: aiokafka
        # may fetch as soon as the listener yields, and a fetch from a stale position
        # would only be refused by the store and fetched again. Offset 0 on a partition
        # whose head was deleted is reset to the earliest by ``auto_offset_reset``.
        stored = {tp: self.app.position(position_name(tp.topic, tp.partition)) for tp in partitions}
        for tp, position in stored.items():
            self.consumer.seek(tp, 0 if position is None else position + 1)
        log.info("partitions assigned: %s", sorted(tp.partition for tp in partitions))

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished first."""
        tune_gc()
        self.consumer.subscribe([self.config.topic], listener=_LegacySeek(self))
        await self.consumer.start()
        backoff = 0.1
        try:
            while not stop.is_set():
                batch = await self.consumer.getmany(
                    timeout_ms=self.config.poll_ms, max_records=self.config.batch_size
                )
                if not batch:
                    continue
                try:
                    await self.handle(batch)
                    backoff = 0.1
                except Exception as exc:  # the store refused or failed: fetch again
                    log.warning("batch not stored (%s: %s); rewinding", type(exc).__name__, exc)
                    await self.seek_to_stored(list(self.consumer.assignment()))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=backoff)
                    backoff = min(backoff * 2, self.config.max_backoff_s)
        finally:
            await self.consumer.stop()

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
        assigned = self.consumer.assignment()
        try:
            await self.consumer.commit({tp: o for tp, o in offsets.items() if tp in assigned})
        except Exception as exc:  # a rebalance in progress; the store is the truth
            log.info("advisory commit skipped: %s", exc)
        for tp, offset in offsets.items():
            highwater = self.consumer.highwater(tp) if tp in assigned else None
            if highwater is not None:
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - offset))
        return results
