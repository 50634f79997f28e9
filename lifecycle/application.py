"""``ProviderLifecycle``: the thin application service around the domain.

It takes inbound records (raw bytes plus where they came from), parses them with the
contract, judges them with the :class:`~lifecycle.provider.Provider` aggregate, and
saves in **one transaction** the accepted events, the records that were not accepted
(with their reasons) and the tracking position. Aggregates are cached between
batches; a failed save drops the cache, so the next batch starts from the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    ProcessRecorder,
)

from lifecycle.contract import Envelope, Malformed, parse_record
from lifecycle.ports import Position, PositionedRecorder
from lifecycle.provider import Provider, judge
from lifecycle.records import InboundRecord, RefusedId, b64, refused_id_marker
from lifecycle.uscc import provider_id

Outcome = Literal["accepted", "refused", "malformed", "duplicate"]
OUTCOMES: tuple[Outcome, ...] = ("accepted", "refused", "malformed", "duplicate")


@dataclass(frozen=True)
class InboundMessage:
    """One consumed record: its bytes, key and a unique position (e.g. ``kafka:t:0:42``)."""

    value: bytes
    position: str
    key: bytes | None = None
    #: Re-submitted by an operator from the inbox: a refused id is judged again.
    resubmitted: bool = False


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


class ProviderLifecycle(Application[UUID]):
    """Records provider lifecycle events with exactly-once effect."""

    name = "provider_lifecycle"
    cache_size = 50_000

    def __init__(self, env: Mapping[str, str] | None = None, clock: Clock = _utc_now) -> None:
        super().__init__(env)
        self.clock = clock
        self._cache: OrderedDict[str, Provider] = OrderedDict()
        self._absent: set[str] = set()  # entities known to have no stream yet
        self._refused_ids: set[str] = set()  # CloudEvents ids known to have been refused

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
        """Judge a batch in memory and save everything it produced in one transaction."""
        recorded_at = self.clock()
        results: list[Result] = []
        touched: dict[str, Provider] = {}
        # New events in arrival order, so the notification log follows the input.
        events: list[Any] = []
        try:
            parsed = [parse_record(message.value) for message in messages]
            envelopes = [p for p in parsed if isinstance(p, Envelope)]
            self._prefetch({e.subject for e in envelopes})
            self._prefetch_refused({e.id for e in envelopes})
            for message, item in zip(messages, parsed, strict=True):
                result, record = self._judge(message, item, recorded_at, touched)
                results.append(result)
                if record is not None:
                    events.extend(record.collect_events())
                    if result.outcome == "refused" and result.id is not None:
                        events.extend(self._note_refused(result.id, result.subject or ""))
                elif result.outcome == "accepted" and result.subject is not None:
                    events.extend(touched[result.subject].collect_events())
            self._save_with_positions(events, positions)
        except Exception:
            # Cached aggregates may hold events that were never stored.
            self.clear_cache()
            raise
        return results

    def _save_with_positions(self, events: Sequence[Any], positions: Sequence[Position]) -> None:
        # Straight to the recorder: the library's save() path builds recordings and
        # notifications this service never uses (~15 µs an event at 200k events).
        stored = [self.mapper.to_stored_event(event) for event in events]
        recorder = self.recorder
        if isinstance(recorder, PositionedRecorder):
            recorder.insert_events(stored, positions=positions)
        elif positions:
            # The library's own recorders would silently ignore the positions.
            raise TypeError(f"{type(recorder).__name__} cannot record input positions")
        else:
            recorder.insert_events(stored)

    def _judge(
        self,
        message: InboundMessage,
        parsed: Envelope | Malformed,
        recorded_at: datetime,
        touched: dict[str, Provider],
    ) -> tuple[Result, InboundRecord | None]:
        if isinstance(parsed, Malformed):
            result = Result(
                "malformed", message.position, parsed.id, parsed.subject, [], parsed.reason
            )
            return result, self._keep_record(message, result, None, recorded_at)
        envelope: Envelope = parsed
        if envelope.id in self._refused_ids and not message.resubmitted:
            # A repeated id is a duplicate (CONTRACT.md), even of a refused event.
            result = Result("duplicate", message.position, envelope.id, envelope.subject)
            event = envelope.model_dump(mode="json", exclude_none=True)
            return result, self._keep_record(message, result, event, recorded_at)
        provider = touched.get(envelope.subject) or self._load(envelope.subject)
        judgement = judge(provider, envelope, recorded_at)
        if judgement.outcome == "accepted":
            assert judgement.provider is not None
            touched[envelope.subject] = judgement.provider
            self._remember(judgement.provider)
            return Result("accepted", message.position, envelope.id, envelope.subject), None
        result = Result(
            judgement.outcome,
            message.position,
            envelope.id,
            envelope.subject,
            judgement.codes,
            judgement.reason,
        )
        event = envelope.model_dump(mode="json", exclude_none=True)
        return result, self._keep_record(message, result, event, recorded_at)

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

    def clear_cache(self) -> None:
        """Forget cached aggregates (e.g. after a Kafka rebalance moved partitions)."""
        self._cache.clear()
        self._absent.clear()
        self._refused_ids.clear()

    def _prefetch_refused(self, ce_ids: set[str]) -> None:
        """Learn in one query which of a batch's ids were refused before."""
        recorder = self.recorder
        unknown = [i for i in ce_ids if i not in self._refused_ids]
        if not isinstance(recorder, PositionedRecorder) or not unknown:
            return  # in memory (evaluate): every refusal is in ``_refused_ids`` already
        if len(self._refused_ids) > self.cache_size:
            self._refused_ids.clear()
        present = set(recorder.select_present_originators([refused_id_marker(i) for i in unknown]))
        self._refused_ids.update(i for i in unknown if refused_id_marker(i) in present)

    def _note_refused(self, ce_id: str, subject: str) -> list[Any]:
        if ce_id in self._refused_ids:
            return []  # refused again after a re-submission: already remembered
        self._refused_ids.add(ce_id)
        return list(RefusedId(ce_id=ce_id, subject=subject).collect_events())

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
