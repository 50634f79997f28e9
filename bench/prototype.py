"""Prototypes of the ingest fixes proposed in ``bench/README.md``, to measure them.

Nothing here is used by the service: ``python -m bench.ingest --prototype`` runs the
same timed ingest a second time with these classes, so the gain of the proposed diffs
(to ``lifecycle/application.py``, ``lifecycle/contract.py`` and ``consumers/inbound.py``)
is measured on the same data, store and broker. Each fix is independent:

1. **prefetch**: one ``SELECT originator_id … WHERE originator_id = ANY(%s) AND
   originator_version = 1`` per batch for the providers that are not cached, instead of
   one ``repository.get`` (a round trip that finds nothing) per new provider;
2. **direct save**: map the batch's new events and call
   ``recorder.insert_events(…, positions=…)`` directly, skipping ``ProcessingEvent``
   (a runtime-``Protocol`` ``isinstance`` check per event, slow: ``typing`` walks the
   protocol's attributes each time) and the ``Recording`` and ``Notification`` objects
   ``EventStore.put`` builds and ``process`` drops;
3. **fast parse**: ``TypeAdapter.validate_json`` (one pass in Rust) and the payload
   validated but not dumped and copied again, falling back to ``parse_record`` (same
   reasons) on any error; the USCC check is memoised;
4. **consumer**: outcome metrics counted per batch, not per record, and no ``await``
   between reading the stored positions and seeking (aiokafka starts fetching before
   the rebalance listener returns: a first batch could be stored, then fetched again
   and refused, which clears the aggregate cache);
5. **GC**: ``gc.freeze()`` after start-up and a higher first threshold, so the cyclic
   collector does not walk the whole aggregate cache every few batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from eventsourcing.domain import Aggregate
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

import lifecycle.application as application_module
import lifecycle.contract as contract_module
from consumers.inbound import InboundConsumer, position_name, record_position
from consumers.metrics import BATCH_SECONDS, CONSUMER_LAG, OUTCOMES
from lifecycle.application import InboundMessage, Position, ProviderLifecycle, Result
from lifecycle.contract import _ENVELOPE_JSON, PAYLOADS, Envelope, Malformed, parse_record
from lifecycle.uscc import provider_id, uscc_error

_uscc_error_cached = functools.lru_cache(maxsize=200_000)(uscc_error)


def fast_parse_record(raw: bytes | str) -> Envelope | Malformed:
    """``parse_record`` for the common case; anything else takes the original path."""
    try:
        envelope = _ENVELOPE_JSON.validate_json(raw)
        if envelope.dataschema is not None:  # versioned payloads: the original rules
            return parse_record(raw)
        # Every payload field is required and JSON-typed, so a valid payload's
        # ``model_dump(mode="json")`` equals its input: keep the parsed dict.
        PAYLOADS[envelope.type].model_validate(envelope.data)
    except Exception:  # invalid in any way: the original path says why, as before
        return parse_record(raw)
    return envelope


class FastLifecycle(ProviderLifecycle):
    """``ProviderLifecycle`` with fixes 1 to 3 (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._absent: set[str] = set()

    def process(
        self, messages: Sequence[InboundMessage], positions: Sequence[Position] = ()
    ) -> list[Result]:
        self._absent = self._prefetch_absent(messages)
        try:
            with (
                _patched(application_module, "parse_record", fast_parse_record),
                _patched(contract_module, "uscc_error", _uscc_error_cached),
            ):
                return super().process(messages, positions)
        finally:
            self._absent = set()

    def _load(self, uscc: str) -> Any:
        if uscc in self._absent and uscc not in self._cache:
            return None
        return super()._load(uscc)

    def _prefetch_absent(self, messages: Sequence[InboundMessage]) -> set[str]:
        """The batch's uncached subjects (from the record keys) with no stored events."""
        datastore = getattr(self.recorder, "datastore", None)
        if not isinstance(datastore, PostgresDatastore):
            return set()
        wanted: dict[UUID, str] = {}
        for message in messages:
            if message.key:
                uscc = message.key.decode(errors="replace")
                if uscc not in self._cache and not _uscc_error_cached(uscc):
                    wanted[provider_id(uscc)] = uscc
        if not wanted:
            return set()
        query = SQL(
            "SELECT originator_id FROM {0}.{1} "
            "WHERE originator_id = ANY(%s) AND originator_version = 1"
        )
        table = self.recorder.events_table_name  # type: ignore[attr-defined]
        with datastore.transaction(commit=False) as curs:
            curs.execute(
                query.format(Identifier(datastore.schema), Identifier(table)), (list(wanted),)
            )
            found = {row["originator_id"] for row in curs.fetchall()}
        return {uscc for pid, uscc in wanted.items() if pid not in found}

    def _save_with_positions(self, items: Sequence[Any], positions: Sequence[Position]) -> None:
        # ``items``: the batch's new domain events (or, in older code, the aggregates).
        if positions and not getattr(self.recorder, "supports_positions", False):
            raise TypeError(f"{type(self.recorder).__name__} cannot record input positions")
        events: list[Any] = []
        for item in items:
            if isinstance(item, Aggregate):
                events.extend(item.collect_events())
            else:
                events.append(item)
        to_stored = self.mapper.to_stored_event
        stored = [to_stored(e) for e in events]
        self.process_recorder.insert_events(stored, positions=list(positions))


@contextlib.contextmanager
def tuned_gc(threshold: tuple[int, int, int] = (50_000, 20, 10)) -> Iterator[None]:
    """Fix 5, for the duration of a run (the service would do it once, in ``serve``)."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*threshold)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


class FastInbound(InboundConsumer):
    """``InboundConsumer`` with fix 4 (see the module docstring)."""

    async def seek_to_stored(self, partitions: Sequence[TopicPartition]) -> None:
        # No ``await`` between reading the positions and seeking: otherwise ``getmany``
        # in ``run`` can return (and store) a first batch of a partition still to be
        # sought, which the seek then fetches again (one refused batch, a cleared cache).
        self.app.clear_cache()
        for tp in partitions:
            stored = self.app.position(position_name(tp.topic, tp.partition))
            self.consumer.seek(tp, 0 if stored is None else stored + 1)

    async def handle(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> list[Result]:
        messages: list[InboundMessage] = []
        positions: list[Position] = []
        for tp, records in batch.items():
            if not records:
                continue
            messages.extend(
                InboundMessage(
                    r.value or b"", record_position(tp.topic, tp.partition, r.offset), r.key
                )
                for r in records
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
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        with contextlib.suppress(Exception):
            await self.consumer.commit(offsets)
        for tp in batch:
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                    max(0, highwater - offsets.get(tp, 0))
                )
        return results
