"""The inbound subscriber's handler on faststream's in-memory broker (``TestKafkaBroker``):
hand-built records with real partitions and offsets, a small stand-in for the consumer
(assignment, seek, commit). Rebalances, commits and exactly-once across processes are
exercised on real Kafka (``tests/integration/test_ingest.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from eventsourcing.persistence import IntegrityError
from faststream.kafka import TestKafkaBroker

from consumers.broker import make_broker
from consumers.inbound import (
    RESUBMIT_HEADER,
    InboundConfig,
    InboundConsumer,
    position_name,
)
from lifecycle.application import ProviderLifecycle, Result
from store.url import persistence_env
from tests.factories import line, onboard, uscc

TOPIC = "in"
A, B = uscc(901), uscc(902)


class FakePartitions:
    """The subscriber's consumer as the handler uses it."""

    def __init__(self, *partitions: int) -> None:
        self.assigned = {TopicPartition(TOPIC, p) for p in partitions}
        self.seeks: list[tuple[int, int]] = []
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition.partition, offset))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    def highwater(self, partition: TopicPartition) -> int | None:
        return 100


def record(
    partition: int, offset: int, value: bytes, headers: list[tuple[str, Any]] | None = None
) -> ConsumerRecord:
    return ConsumerRecord(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=headers or [],
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ProviderLifecycle]:
    app = ProviderLifecycle(env=persistence_env(f"sqlite:///{tmp_path}/store.db"))
    yield app
    app.close()


def consumer(app: ProviderLifecycle, *partitions: int) -> tuple[InboundConsumer, list[Result]]:
    results: list[Result] = []
    inbound = InboundConsumer(
        app,
        InboundConfig("kafka:9", TOPIC, "g", max_backoff_s=0.01),
        on_results=results.extend,
        broker=make_broker("kafka:9"),
    )
    inbound.partitions = FakePartitions(*partitions)
    return inbound, results


def test_a_batch_across_partitions_is_judged_and_its_positions_stored_with_it(
    store: ProviderLifecycle,
) -> None:
    """Header values that faststream's parser cannot decode (null, not UTF-8) do not fail
    the batch; ``x-resubmit-of`` marks a resubmission; positions per partition; an advisory
    commit after the batch is stored."""
    inbound, results = consumer(store, 0, 1)
    a = [line(r) for r in onboard(A)]
    b = [line(r) for r in onboard(B)]
    batch = (
        record(0, 5, a[0], [("x-null", None), ("x-bin", b"\xff\xfe")]),
        record(1, 0, b[0]),
        record(0, 6, a[1], [(RESUBMIT_HEADER, b"not-a-uuid")]),
        record(1, 1, b[1]),
        record(0, 7, a[2]),
        record(1, 2, b[2]),
    )

    async def go() -> None:
        async with TestKafkaBroker(inbound.broker):
            await inbound.subscriber.process_message(batch)

    # A partition's first batch may start anywhere (a deleted head); then contiguous.
    asyncio.run(go())
    assert [r.position for r in results] == [
        "kafka:in:0:5",
        "kafka:in:0:6",
        "kafka:in:0:7",
        "kafka:in:1:0",
        "kafka:in:1:1",
        "kafka:in:1:2",
    ]
    assert all(r.outcome == "accepted" for r in results), results
    assert store.position(position_name(TOPIC, 0)) == 7
    assert store.position(position_name(TOPIC, 1)) == 2
    partitions = inbound.partitions
    assert isinstance(partitions, FakePartitions)
    assert partitions.commits == [{TopicPartition(TOPIC, 0): 8, TopicPartition(TOPIC, 1): 3}]
    assert partitions.seeks == []


def test_a_failed_store_transaction_rewinds_every_assigned_partition_then_raises(
    store: ProviderLifecycle,
) -> None:
    """faststream (``AckPolicy.MANUAL``) would fetch on from the consumer's position: the
    handler seeks every assigned partition — also those not in the batch — to the store's
    position + 1 (0 where the store has none), clears the cache, and raises."""
    inbound, _ = consumer(store, 0, 1, 2)
    store.process([], [])  # nothing stored yet
    first = [record(0, 0, line(onboard(A)[0])), record(2, 0, line(onboard(B)[0]))]

    async def go() -> None:
        async with TestKafkaBroker(inbound.broker):
            await inbound.subscriber.process_message(tuple(first))
            # Not contiguous with the store (offset 5 after 0): refused, the batch not stored.
            with pytest.raises(IntegrityError, match="batch starts at 5 but the store is at 0"):
                await inbound.subscriber.process_message((record(0, 5, b"{}"),))

    cleared: list[bool] = []
    original_clear = store.clear_cache
    store.clear_cache = lambda: (cleared.append(True), original_clear())[1]  # type: ignore[method-assign]
    asyncio.run(go())
    partitions = inbound.partitions
    assert isinstance(partitions, FakePartitions)
    assert sorted(partitions.seeks) == [(0, 1), (1, 0), (2, 1)]
    assert cleared
    assert store.position(position_name(TOPIC, 0)) == 0


def test_the_rebalance_listener_seeks_assigned_partitions_to_the_stored_position(
    store: ProviderLifecycle,
) -> None:
    inbound, _ = consumer(store, 0, 1)

    async def go() -> None:
        async with TestKafkaBroker(inbound.broker):
            await inbound.subscriber.process_message((record(1, 41, line(onboard(A)[0])),))
            await inbound.listener.on_partitions_assigned(
                [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
            )

    asyncio.run(go())
    partitions = inbound.partitions
    assert isinstance(partitions, FakePartitions)
    assert sorted(partitions.seeks) == [(0, 0), (1, 42)]
