"""Ingest with a consumer group of several processes (the service's way to scale out).

Each worker process runs the production ``InboundConsumer`` with its own
``ProviderLifecycle`` in one Kafka consumer group; partitions are shared among them
and exactly-once still rests on the store (positions and events in one transaction).
Workers report to the parent through a queue; ``time.perf_counter`` is the system-wide
monotonic clock on Linux, so their timestamps compare.

The group is formed before anyone fetches: each worker pauses the partitions it is
assigned (right after seeking them to the stored positions) and reports them; once the
latest assignments of all workers cover every partition exactly once, the parent lets
them go and they resume. Otherwise the first worker to join would consume every
partition until the others joined, then lose half of them in a rebalance, with stale
batches refused and rewound: the run would time the group's start-up, not its ingest.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from aiokafka import TopicPartition

from bench.legacy_inbound import LegacyInbound
from consumers.inbound import InboundConfig, InboundConsumer, position_name
from lifecycle.application import ProviderLifecycle, Result
from store.url import persistence_env


class _ReportingMixin:
    consumer: Any

    def __init__(self, *args: Any, reports: Any, index: int, go: MpEvent, **kwargs: Any) -> None:
        super().__init__(*args, on_results=self._stored, **kwargs)  # type: ignore[call-arg]
        self.reports = reports
        self.index = index
        self.go = go
        self.first_sent = False

    async def seek_to_stored(self, partitions: Sequence[TopicPartition]) -> None:
        await super().seek_to_stored(partitions)  # type: ignore[misc]
        if not self.go.is_set():  # hold until the whole group is assigned
            self.consumer.pause(*partitions)
            assigned = tuple(sorted(tp.partition for tp in self.consumer.assignment()))
            self.reports.put(("assigned", time.perf_counter(), (self.index, assigned)))

    async def release(self, halt: MpEvent) -> None:
        """Resume the paused partitions once the parent says the group is formed."""
        while not self.go.is_set() and not halt.is_set():
            await asyncio.sleep(0.01)
        self.consumer.resume(*self.consumer.paused())

    def _stored(self, results: list[Result]) -> None:
        self.reports.put(("done", time.perf_counter(), len(results)))

    async def handle(self, batch: Any) -> list[Result]:
        if not self.first_sent:
            self.reports.put(("first", time.perf_counter(), 0))
            self.first_sent = True
        return await super().handle(batch)  # type: ignore[misc, no-any-return]


class _Reporting(_ReportingMixin, InboundConsumer):
    """The production consumer (a faststream subscriber on its own broker)."""


class _LegacyReporting(_ReportingMixin, LegacyInbound):
    """The consumer before faststream (``--compare-legacy``)."""


def _worker(
    store: str,
    config: InboundConfig,
    reports: Any,
    halt: MpEvent,
    go: MpEvent,
    index: int,
    legacy: bool = False,
) -> None:
    app = ProviderLifecycle(env=persistence_env(store))

    async def main() -> None:
        # aiokafka needs the loop
        kind = _LegacyReporting if legacy else _Reporting
        consumer = kind(app, config, reports=reports, index=index, go=go)
        releaser = asyncio.create_task(consumer.release(halt))
        stop = asyncio.Event()

        async def watch() -> None:
            while not halt.is_set():
                await asyncio.sleep(0.05)
            stop.set()

        watcher = asyncio.create_task(watch())
        await consumer.run(stop)
        await watcher
        await releaser

    asyncio.run(main())


@dataclass
class GroupRun:
    consumers: int
    seconds: float
    events: int


def ingest_group(
    store: str,
    bootstrap: str,
    topic: str,
    batch_size: int,
    expected: int,
    ends: dict[int, int],
    consumers: int = 2,
    timeout: float = 300.0,
    legacy: bool = False,
) -> GroupRun:
    """Consume ``expected`` records with ``consumers`` processes; time first fetch → last stored."""
    ctx = mp.get_context("spawn")
    reports = ctx.Queue()
    halt = ctx.Event()
    go = ctx.Event()
    config = InboundConfig(bootstrap, topic, f"bench-group-{uuid.uuid4().hex[:12]}", batch_size)
    workers = [
        ctx.Process(target=_worker, args=(store, config, reports, halt, go, i, legacy))
        for i in range(consumers)
    ]
    partitions = sorted(ends)
    assignments: dict[int, tuple[int, ...]] = {}
    for w in workers:
        w.start()
    first: float | None = None
    last = 0.0
    done = 0
    deadline = time.monotonic() + timeout
    try:
        while done < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"group of {consumers}: {done} of {expected} after {timeout}s")
            try:
                kind, at, count = reports.get(timeout=1.0)
            except queue.Empty:
                if not all(w.is_alive() for w in workers):
                    raise RuntimeError("a bench worker died") from None
                continue
            if kind == "assigned":
                index, assigned = count
                assignments[index] = assigned
                held = sorted(p for a in assignments.values() for p in a)
                if len(assignments) == consumers and held == partitions:
                    go.set()
            elif kind == "first":
                first = at if first is None else min(first, at)
            else:
                done += count
                last = max(last, at)
    finally:
        halt.set()
        for w in workers:
            w.join(timeout=60)
    assert first is not None
    app = ProviderLifecycle(env=persistence_env(store))
    for partition, end in ends.items():  # every partition's stored position is its last offset
        stored = app.position(position_name(topic, partition))
        if stored != end - 1:
            raise RuntimeError(f"group: partition {partition} at {stored}, end {end}")
    return GroupRun(consumers, last - first, done)
