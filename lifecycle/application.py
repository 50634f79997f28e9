"""``ProviderLifecycle``: the thin application service around the domain.

It takes inbound records (raw bytes plus where they came from), parses them with the
contract, judges them with the :class:`~lifecycle.provider.Provider` aggregate, and
saves in **one transaction** the accepted events, the records that were not accepted
(with their reasons), the idempotency keys judged and the tracking position. Aggregates
are cached between batches; a failed save drops the cache, so the next batch starts from
the store.

Idempotency (CONTRACT.md 1.1): a repeated (``source``, ``id``) of an event that was accepted
or refused, for any provider, is a duplicate, recognised before anything else. Every key
judged gets an :class:`~lifecycle.records.EventKey` marker in the judgement's transaction; a
batch asks for the markers of its keys in one query. Two processes judging one key at once
both write its marker: the store refuses the second batch and it is judged again, as a
duplicate. A store written before 1.1 gets the markers of what it judged once, before its
first 1.1 batch (:meth:`ProviderLifecycle.index_event_keys`).

Nothing in one record can stall a batch: whatever goes wrong while parsing, judging or
encoding a record, unless it is the store's own failure, makes that record ``malformed``
with reason ``internal_error: …`` (:func:`internal_error`); the others are judged as usual.
Only store failures propagate (the consumer rewinds and retries).
"""

from __future__ import annotations

import logging
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final, Literal
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    ProcessRecorder,
    StoredEvent,
    Tracking,
)
from eventsourcing.utils import get_topic

from lifecycle.contract import Envelope
from lifecycle.failures import (
    Unjudgeable,
    internal_error,
    is_store_failure,
    readable,
    storable,
    subject_of,
)
from lifecycle.parsing import Malformed, parse_record
from lifecycle.ports import Position, PositionedRecorder
from lifecycle.provider import Provider, judge
from lifecycle.records import (
    EVENT_KEYS_INDEXED,
    EventKey,
    InboundRecord,
    b64,
    event_key,
    key_noted,
)
from lifecycle.uscc import provider_id

log = logging.getLogger(__name__)

Outcome = Literal["accepted", "refused", "malformed", "duplicate"]
OUTCOMES: tuple[Outcome, ...] = ("accepted", "refused", "malformed", "duplicate")


@dataclass(frozen=True)
class InboundMessage:
    """One consumed record: its bytes, key and a unique position (e.g. ``kafka:t:0:42``)."""

    value: bytes
    position: str
    key: bytes | None = None
    #: Re-submitted by an operator from the inbox: a refused event is judged again.
    resubmitted: bool = False
    #: The inbox record this is a re-submission of (Kafka header ``x-resubmit-of``), when
    #: known: its re-submission is noted as come back (``InboundRecord.Returned``).
    resubmit_of: UUID | None = None


@dataclass(frozen=True)
class Result:
    """The outcome of one inbound record."""

    outcome: Outcome
    position: str
    id: str | None
    subject: str | None = None
    codes: list[str] = field(default_factory=list)
    reason: str | None = None


Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Batch:
    """What one batch has judged so far; dropped with the cache when the batch is not stored."""

    stored: list[StoredEvent] = field(default_factory=list)
    #: Providers changed in this batch, and their new events (to rebuild one after an error).
    touched: dict[str, Provider] = field(default_factory=dict)
    accepted: dict[str, list[Any]] = field(default_factory=dict)
    #: Providers whose state could not be rebuilt: their later records are internal errors.
    unjudgeable: set[str] = field(default_factory=set)
    #: Keys judged in this batch, the markers created, and those built or loaded (to judge
    #: a re-submission).
    judged: set[UUID] = field(default_factory=set)
    noted: dict[UUID, EventKey.Noted] = field(default_factory=dict)
    keys: dict[UUID, EventKey] = field(default_factory=dict)
    #: Inbox records whose re-submitted copies are in this batch (``None``: not found).
    originals: dict[UUID, InboundRecord | None] = field(default_factory=dict)
    #: A new store: this batch says that no key judged before 1.1 needs a marker.
    index_keys: bool = False


@dataclass(frozen=True)
class _Verdict:
    result: Result
    events: list[Any]
    provider: Provider | None = None  # accepted: the provider with its new event
    #: The key judged, with its marker when it was judged before (a re-submission).
    key: UUID | None = None
    marker: EventKey | None = None


_PROVIDER_TOPICS: Final = get_topic(Provider) + "."
_RECEIVED_TOPIC: Final = get_topic(InboundRecord.Received)


class ProviderLifecycle(Application[UUID]):
    """Records provider lifecycle events with exactly-once effect."""

    name = "provider_lifecycle"
    cache_size = 50_000

    def __init__(self, env: Mapping[str, str] | None = None, clock: Clock = _utc_now) -> None:
        super().__init__(env)
        self.clock = clock
        self._cache: OrderedDict[str, Provider] = OrderedDict()
        self._absent: set[str] = set()  # entities known to have no stream yet
        self._keys: set[UUID] = set()  # key markers known to be stored
        self._keys_indexed = False  # every key judged before 1.1 has its marker

    def construct_recorder(self) -> ProcessRecorder:
        # A process recorder writes events and tracking in one transaction;
        # a plain application recorder would silently drop the tracking.
        return self.factory.process_recorder()

    @property
    def process_recorder(self) -> ProcessRecorder:
        recorder = self.recorder
        assert isinstance(recorder, ProcessRecorder)
        return recorder

    # --- writing ----------------------------------------------------------------------

    def process(
        self, messages: Sequence[InboundMessage], positions: Sequence[Position] = ()
    ) -> list[Result]:
        """Judge a batch in memory and save everything it produced in one transaction.

        One result per message, in order. Raises only when the store fails (nothing of the
        batch is stored then; judge it again).
        """
        recorded_at = self.clock()
        batch = _Batch()
        try:
            self._prepare_keys(batch)
            parsed = [self._parse(message) for message in messages]
            self._prefetch({p.subject for p, _ in parsed if isinstance(p, Envelope)})
            self._prefetch_keys({k for _, k in parsed if k is not None})
            results = [
                self._judge_one(message, item, key, recorded_at, batch)
                for message, (item, key) in zip(messages, parsed, strict=True)
            ]
            self._save_with_positions(batch, positions)
        except Exception:
            # Cached aggregates may hold events that were never stored.
            self.clear_cache()
            raise
        self._keys.update(batch.judged)
        if batch.index_keys:
            self._keys_indexed = True
        return results

    def _save_with_positions(self, batch: _Batch, positions: Sequence[Position]) -> None:
        # Straight to the recorder: the library's save() path builds recordings and
        # notifications this service never uses (~15 µs an event at 200k events).
        stored = batch.stored
        kwargs: dict[str, Any] = {}
        if batch.index_keys:
            kwargs["tracking"] = Tracking(EVENT_KEYS_INDEXED, 0)
        recorder = self.recorder
        if isinstance(recorder, PositionedRecorder):
            recorder.insert_events(stored, positions=positions, **kwargs)
        elif positions:
            # The library's own recorders would silently ignore the positions.
            raise TypeError(f"{type(recorder).__name__} cannot record input positions")
        else:
            self.process_recorder.insert_events(stored, **kwargs)

    def _encode(self, events: Iterable[Any]) -> list[StoredEvent]:
        return [self.mapper.to_stored_event(event) for event in events]

    def _parse(self, message: InboundMessage) -> tuple[Envelope | Malformed, UUID | None]:
        """The record parsed, and its key's marker id; never raises but for the store."""
        try:
            parsed = parse_record(message.value)
            if isinstance(parsed, Envelope):
                provider_id(parsed.subject)
                return parsed, event_key(parsed.source, parsed.id)
            return parsed, None
        except Exception as exc:
            if is_store_failure(exc):
                raise
            self._log_internal_error(message, exc)
            return Malformed(internal_error(exc)), None

    def _judge_one(
        self,
        message: InboundMessage,
        item: Envelope | Malformed,
        key: UUID | None,
        recorded_at: datetime,
        batch: _Batch,
    ) -> Result:
        """Judge one record and stage what it produced; an internal error stays its own."""
        subject = item.subject if isinstance(item, Envelope) else None
        staged = batch.keys[key].version if key in batch.keys else None
        try:
            verdict = self._judge(message, item, key, recorded_at, batch)
            stored = self._encode(verdict.events)
            if verdict.key is not None and isinstance(item, Envelope):
                # The key's marker last: nothing shared has changed if anything above failed.
                stored += self._mark_key(verdict, item, recorded_at, batch)
        except Exception as exc:
            if is_store_failure(exc):
                raise
            self._log_internal_error(message, exc)
            if subject is not None:
                self._restore(subject, batch)
            if key in batch.keys and batch.keys[key].version != staged:
                del batch.keys[key]  # changed but not staged: read it again when needed
            result, stored = self._internal_error_record(message, item, exc, recorded_at)
        else:
            result = verdict.result
            if verdict.provider is not None:
                uscc = verdict.provider.uscc
                batch.touched[uscc] = verdict.provider
                batch.accepted.setdefault(uscc, []).extend(
                    e for e in verdict.events if isinstance(e, Provider.Event)
                )
                self._remember(verdict.provider)
            if verdict.key is not None:
                batch.judged.add(verdict.key)
        batch.stored.extend(stored)
        if message.resubmitted and message.resubmit_of is not None:
            self._note_return(message, result, recorded_at, batch)
        return result

    def _judge(
        self,
        message: InboundMessage,
        parsed: Envelope | Malformed,
        key: UUID | None,
        recorded_at: datetime,
        batch: _Batch,
    ) -> _Verdict:
        if isinstance(parsed, Malformed):
            result = Result(
                "malformed",
                message.position,
                readable(parsed.id),
                subject_of(parsed.subject),
                [],
                storable(parsed.reason),
            )
            record = self._keep_record(message, result, None, recorded_at)
            return _Verdict(result, list(record.collect_events()))
        envelope: Envelope = parsed
        assert key is not None
        marker: EventKey | None = None
        if key in self._keys or key in batch.judged:
            # Judged before (accepted or refused, for any provider): a duplicate, unless an
            # operator re-submits a refused event whose key was never accepted since.
            if message.resubmitted:
                marker = self._key_marker(key, batch)
            if marker is None or not self._judged_again(message, marker, batch):
                result = Result("duplicate", message.position, envelope.id, envelope.subject)
                event = envelope.model_dump(mode="json", exclude_none=True)
                record = self._keep_record(message, result, event, recorded_at)
                return _Verdict(result, list(record.collect_events()))
        if envelope.subject in batch.unjudgeable:
            raise Unjudgeable(f"the state of provider {envelope.subject} could not be rebuilt")
        provider = batch.touched.get(envelope.subject) or self._load(envelope.subject)
        judgement = judge(provider, envelope, recorded_at)
        if judgement.outcome == "accepted":
            assert judgement.provider is not None
            events = list(judgement.provider.collect_events())
            result = Result("accepted", message.position, envelope.id, envelope.subject)
            return _Verdict(result, events, judgement.provider, key, marker)
        result = Result(
            judgement.outcome,
            message.position,
            envelope.id,
            envelope.subject,
            judgement.codes,
            judgement.reason,
        )
        event = envelope.model_dump(mode="json", exclude_none=True)
        record = self._keep_record(message, result, event, recorded_at)
        judged = key if judgement.outcome == "refused" else None
        return _Verdict(result, list(record.collect_events()), None, judged, marker)

    def _mark_key(
        self, verdict: _Verdict, envelope: Envelope, at: datetime, batch: _Batch
    ) -> list[StoredEvent]:
        """The marker's events: created at the key's first judgement; ``Accepted`` when a
        re-submitted refused event is accepted at last."""
        outcome = verdict.result.outcome
        if verdict.marker is None:
            assert verdict.key is not None
            noted = key_noted(
                verdict.key, envelope.source, envelope.id, outcome, envelope.subject, at
            )
            stored = self._encode([noted])
            batch.noted[verdict.key] = noted
            return stored
        if outcome == "accepted":
            verdict.marker.accept(envelope.subject)
            return self._encode(verdict.marker.collect_events())
        return []  # refused again: the key is noted already

    def _judged_again(self, message: InboundMessage, marker: EventKey, batch: _Batch) -> bool:
        """An operator's re-submission of a refused event is judged again (CONTRACT.md 1.1),
        unless its key was accepted meanwhile; a re-submitted malformed record whose key
        another record has taken since is a duplicate like any other."""
        if not message.resubmitted or marker.accepted:
            return False
        original = self._original(message, batch)
        return original is None or original.outcome == "refused"

    def _key_marker(self, key: UUID, batch: _Batch) -> EventKey:
        marker = batch.keys.get(key)
        if marker is None:
            noted = batch.noted.get(key)
            built: EventKey | None = noted.mutate(None) if noted is not None else None
            if built is None:
                built = self.repository.get(key)
            batch.keys[key] = marker = built
        return marker

    def _keep_record(
        self,
        message: InboundMessage,
        result: Result,
        event: dict[str, Any] | None,
        recorded_at: datetime,
    ) -> InboundRecord:
        return InboundRecord(
            outcome=result.outcome,
            position=message.position,
            ce_id=result.id,
            subject=result.subject,
            event_type=event["type"] if event else None,
            codes=list(result.codes),
            reason=result.reason,
            raw_b64=b64(message.value) or "",
            key_b64=b64(message.key),
            event=event,
            recorded_at=recorded_at,
        )

    # --- internal errors: the record is malformed, the batch goes on ---------------------

    def _internal_error_record(
        self,
        message: InboundMessage,
        item: Envelope | Malformed,
        exc: Exception,
        recorded_at: datetime,
    ) -> tuple[Result, list[StoredEvent]]:
        reason = internal_error(exc)
        result = Result(
            "malformed", message.position, readable(item.id), subject_of(item.subject), [], reason
        )
        try:
            record = self._keep_record(message, result, None, recorded_at)
            return result, self._encode(record.collect_events())
        except Exception as again:
            if is_store_failure(again):
                raise
            # Even its id or subject cannot be stored: keep the bytes and the reason.
            bare = Result("malformed", message.position, None, None, [], reason)
            record = self._keep_record(message, bare, None, recorded_at)
            return bare, self._encode(record.collect_events())

    def _restore(self, uscc: str, batch: _Batch) -> None:
        """After an internal error while judging for ``uscc``: its state as stored plus this
        batch's accepted events (the failed judgement may have changed the cached object)."""
        self._cache.pop(uscc, None)
        batch.touched.pop(uscc, None)
        try:
            provider = self.provider(uscc)
            for event in batch.accepted.get(uscc, ()):
                provider = event.mutate(provider)
        except Exception as exc:
            if is_store_failure(exc):
                raise
            log.warning("provider state not rebuilt after an internal error (%s)", type(exc))
            batch.unjudgeable.add(uscc)
            return
        if provider is not None:
            if uscc in batch.accepted:
                batch.touched[uscc] = provider
            self._remember(provider)

    def _log_internal_error(self, message: InboundMessage, exc: Exception) -> None:
        # The class and where in the code, never the message (it may hold personal data).
        where = "".join(traceback.format_tb(exc.__traceback__, limit=-3)).strip()
        log.error(
            "internal error judging %s: %s (dead-lettered as malformed)\n%s",
            message.position,
            type(exc).__name__,
            where,
        )

    # --- re-submissions come back --------------------------------------------------------

    def _original(self, message: InboundMessage, batch: _Batch) -> InboundRecord | None:
        """The inbox record ``message`` is a re-submission of (``None``: unknown)."""
        record_id = message.resubmit_of
        if record_id is None:
            return None
        if record_id not in batch.originals:
            found: Any = None
            try:
                found = self.repository.get(record_id)
            except AggregateNotFoundError:
                pass
            except Exception as exc:
                if is_store_failure(exc):
                    raise
                log.warning("re-submitted record %s not readable (%s)", record_id, type(exc))
            batch.originals[record_id] = found if isinstance(found, InboundRecord) else None
        return batch.originals[record_id]

    def _note_return(
        self, message: InboundMessage, result: Result, recorded_at: datetime, batch: _Batch
    ) -> None:
        """Note on the original inbox record that its re-submitted copy came back."""
        original = self._original(message, batch)
        if original is None:
            return
        try:
            original.returned(message.position, result.outcome, recorded_at)
            stored = self._encode(original.collect_events())
        except Exception as exc:
            if is_store_failure(exc):
                raise
            log.warning("return of re-submitted record %s not noted (%s)", original.id, type(exc))
            assert message.resubmit_of is not None
            batch.originals[message.resubmit_of] = None  # its version is unknown now
            return
        batch.stored.extend(stored)

    # --- the idempotency keys --------------------------------------------------------------

    def _present(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of ``ids`` have a stream: one query on a store with the port."""
        if not ids:
            return set()
        recorder = self.recorder
        if isinstance(recorder, PositionedRecorder):
            return set(recorder.select_present_originators(ids))
        # The library's own recorders (e.g. ``eventsourcing.popo`` for ``evaluate``).
        return {i for i in ids if recorder.select_events(i, limit=1)}

    def _prefetch_keys(self, keys: set[UUID]) -> None:
        """Learn in one query which of a batch's keys were judged before."""
        unknown = [k for k in keys if k not in self._keys]
        if len(self._keys) + len(unknown) > self.cache_size * 4:
            self._keys.clear()
            unknown = list(keys)
        self._keys.update(self._present(unknown))

    def _prepare_keys(self, batch: _Batch) -> None:
        """Before the first judgement: the keys judged before 1.1 must have their markers."""
        if self._keys_indexed:
            return
        if self.process_recorder.max_tracking_id(EVENT_KEYS_INDEXED) is not None:
            self._keys_indexed = True
        elif not self.process_recorder.select_notifications(1, 1):
            batch.index_keys = True  # a new store: noted with its first batch
        else:
            self.index_event_keys()

    def index_event_keys(self, page: int = 1000) -> int:
        """Write the :class:`EventKey` markers of a store written before contract 1.1.

        Once per store, before its first 1.1 judgement; nothing stored is rewritten. First
        every accepted event's (``ce_source``, ``ce_id``), then every refused record's
        (``event.source``, ``event.id``) not accepted: so a key's marker knows if it was ever
        accepted. Idempotent (markers present are left), and safe when two processes run it
        at once: the store refuses the second writer of a marker, which starts again and
        finds it. Done is noted in the tracking table (:data:`EVENT_KEYS_INDEXED`, with the
        last notification id of the store when the scan began). A 1.0 process must not write
        to the store any more meanwhile (stop the old version, then start this one).
        Returns how many markers it wrote.
        """
        written = 0
        for attempt in range(1, 11):
            if self.process_recorder.max_tracking_id(EVENT_KEYS_INDEXED) is not None:
                break
            try:
                upto, count = self._backfill_keys(page)
                written += count
                self.process_recorder.insert_events([], tracking=Tracking(EVENT_KEYS_INDEXED, upto))
                log.warning("idempotency keys indexed: %d markers up to %d", written, upto)
                break
            except IntegrityError:
                if attempt == 10:
                    raise
                log.info("another process indexes the idempotency keys too; again")
        self._keys_indexed = True
        return written

    def _backfill_keys(self, page: int) -> tuple[int, int]:
        owners: dict[Any, str] = {}  # provider id → USCC (from its first event)

        def accepted(event: Any) -> tuple[str, str, str, str | None] | None:
            if isinstance(event, Provider.Applied):
                owners[event.originator_id] = event.uscc
            if isinstance(event, Provider.Event):
                return event.ce_source, event.ce_id, "accepted", owners.get(event.originator_id)
            return None

        def refused(event: Any) -> tuple[str, str, str, str | None] | None:
            if not isinstance(event, InboundRecord.Received) or event.outcome != "refused":
                return None
            envelope = event.event if isinstance(event.event, dict) else {}
            source, ce_id = envelope.get("source"), envelope.get("id")
            if isinstance(source, str) and isinstance(ce_id, str):
                return source, ce_id, "refused", event.subject
            return None

        # What was stored before this scan began; what comes after is judged by 1.1 code.
        head = self.process_recorder.max_notification_id() or 0
        written = 0
        for prefix, read in ((_PROVIDER_TOPICS, accepted), (_RECEIVED_TOPIC, refused)):
            start = 1
            while start <= head and (
                notifications := self.process_recorder.select_notifications(start, page, head)
            ):
                found: dict[UUID, tuple[str, str, str, str | None]] = {}
                for notification in notifications:
                    if notification.id <= head and notification.topic.startswith(prefix):
                        key = read(self.mapper.to_domain_event(notification))
                        if key is not None:
                            found.setdefault(event_key(key[0], key[1]), key)
                present = self._present(list(found))
                now = self.clock()
                markers = [key_noted(i, *k, now) for i, k in found.items() if i not in present]
                if markers:
                    self.process_recorder.insert_events(self._encode(markers))
                    written += len(markers)
                start = notifications[-1].id + 1
        return head, written

    # --- the provider cache ---------------------------------------------------------------

    def clear_cache(self) -> None:
        """Forget cached aggregates (e.g. after a Kafka rebalance moved partitions)."""
        self._cache.clear()
        self._absent.clear()
        self._keys.clear()

    def _prefetch(self, subjects: set[str]) -> None:
        """Learn in one query which of a batch's unknown entities have no stream yet.

        Saves one empty repository read per new provider; other recorders than a
        :class:`~lifecycle.ports.PositionedRecorder` are asked one by one in ``_load``.
        """
        recorder = self.recorder
        unknown = [s for s in subjects if s not in self._cache and s not in self._absent]
        if not isinstance(recorder, PositionedRecorder) or not unknown:
            return
        present = set(recorder.select_present_originators([provider_id(s) for s in unknown]))
        if len(self._absent) > self.cache_size:
            self._absent.clear()
        self._absent.update(s for s in unknown if provider_id(s) not in present)

    def _load(self, uscc: str) -> Provider | None:
        cached = self._cache.get(uscc)
        if cached is not None:
            self._cache.move_to_end(uscc)
            return cached
        if uscc in self._absent:
            return None
        try:
            provider: Provider = self.repository.get(provider_id(uscc))
        except AggregateNotFoundError:
            return None
        self._remember(provider)
        return provider

    def _remember(self, provider: Provider) -> None:
        self._absent.discard(provider.uscc)
        self._cache[provider.uscc] = provider
        self._cache.move_to_end(provider.uscc)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # --- reading ----------------------------------------------------------------------

    def provider(self, uscc: str) -> Provider | None:
        try:
            provider: Provider = self.repository.get(provider_id(uscc))
        except AggregateNotFoundError:
            return None
        return provider

    def provider_by_id(self, aggregate_id: UUID) -> Provider:
        provider: Provider = self.repository.get(aggregate_id)
        return provider

    def provider_as_of(self, uscc: str, day: date) -> Provider | None:
        """Time travel: the provider with every event of business date ≤ ``day`` applied."""
        events = [
            e
            for e in self.events.get(provider_id(uscc))
            if isinstance(e, Provider.Event) and e.business_date <= day
        ]
        provider: Provider | None = None
        for event in events:
            if isinstance(event, Aggregate.Created):
                provider = event.mutate(None)
            elif provider is not None:
                # Events of later days are skipped, so versions may jump: apply directly.
                event.apply(provider)
                provider.version = event.originator_version
                provider.modified_on = event.timestamp
        return provider

    def record(self, record_id: UUID) -> InboundRecord:
        record: InboundRecord = self.repository.get(record_id)
        return record

    def position(self, tracking_name: str) -> int | None:
        """The last stored position of a tracked input (e.g. a Kafka partition)."""
        return self.process_recorder.max_tracking_id(tracking_name)

    def stats(self) -> dict[str, int]:
        """Outcome counts from the store: consumed is the sum of the other four."""
        counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        for event in self.iter_events():
            if isinstance(event, Provider.Event):
                counts["accepted"] += 1
            elif isinstance(event, InboundRecord.Received):
                counts[event.outcome] += 1
        return {"consumed": sum(counts.values()), **counts}

    def iter_events(self, start: int = 1, page: int = 1000) -> Iterable[Any]:
        """Every stored domain event in notification order."""
        while True:
            notifications = self.process_recorder.select_notifications(start, page)
            if not notifications:
                return
            for notification in notifications:
                yield self.mapper.to_domain_event(notification)
            start = notifications[-1].id + 1
