"""In memory (tests, ``evaluate``): the library's POPO process recorder plus Kafka positions,
and the same hash chain and seals as the database stores (``store/chain.py``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.popo import POPOFactory, POPOProcessRecorder

from lifecycle.ports import PositionedRecorder
from store.audit_port import AuditReader, StoredRow, id_order
from store.chain import Head, Link, Seal, link_batch, predecessors
from store.positions import check_contiguous, positions_of
from store.transcoding import OrjsonTranscoding


class PositionsPOPOProcessRecorder(POPOProcessRecorder, PositionedRecorder):
    def __init__(self) -> None:
        super().__init__()
        self._links: dict[tuple[str, int], Link] = {}
        self._seals: list[Seal] = []

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        for position in positions_of(kwargs):
            check_contiguous(position, self.max_tracking_id(position.name))

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        heads: dict[Any, Head] = {}
        for oid, version in predecessors(stored_events):
            link = self._links.get((str(oid), version))
            if link is not None:
                heads[oid] = Head(link.originator_version, link.hash, link.subject)
        ids = super()._update_table(stored_events, **kwargs)
        assert ids is not None
        for link in link_batch(stored_events, ids, heads):
            self._links[(str(link.originator_id), link.originator_version)] = link
        for position in positions_of(kwargs):
            self._insert_tracking(Tracking(position.name, position.last))
        return ids

    def select_present_originators(self, ids: Sequence[UUID]) -> list[UUID]:
        """Which of ``ids`` have a stream (``ProviderLifecycle._prefetch``)."""
        with self._database_lock:
            return [i for i in ids if self._stored_events_index.get(str(i))]

    # --- the audit port -----------------------------------------------------------------

    @contextmanager
    def audit_reader(self) -> Iterator[AuditReader]:
        with self._database_lock:
            yield POPOAuditReader(self)

    def insert_seal(self, seal: Seal) -> None:
        with self._database_lock:
            if any(s.seq == seal.seq for s in self._seals):
                raise IntegrityError(f"seal {seal.seq} already recorded")
            self._seals.append(seal)


class POPOAuditReader:
    def __init__(self, recorder: PositionsPOPOProcessRecorder) -> None:
        self.recorder = recorder

    def events(self, ids: Sequence[UUID] | None = None) -> Iterator[StoredRow]:
        wanted = None if ids is None else {str(i) for i in ids}
        rows = [
            StoredRow(s.originator_id, s.originator_version, n, s.topic, s.state)
            for n, s in enumerate(self.recorder._stored_events, start=1)
            if wanted is None or str(s.originator_id) in wanted
        ]
        rows.sort(key=lambda r: (id_order(r.originator_id), r.originator_version))
        yield from rows

    def links(self, ids: Sequence[UUID] | None = None) -> Iterator[Link]:
        wanted = None if ids is None else {str(i) for i in ids}
        rows = [
            link
            for (oid, _), link in self.recorder._links.items()
            if wanted is None or oid in wanted
        ]
        rows.sort(key=lambda r: (id_order(r.originator_id), r.originator_version))
        yield from rows

    def seals(self) -> list[Seal]:
        return list(self.recorder._seals)

    def subject_streams(self, subject: str) -> list[UUID]:
        found = sorted(
            (link.notification_id, link.originator_id)
            for link in self.recorder._links.values()
            if link.originator_version == 1 and link.subject == subject
        )
        return [oid if isinstance(oid, UUID) else UUID(oid) for _, oid in found]

    def max_notification_id(self) -> int:
        return len(self.recorder._stored_events)


class Factory(OrjsonTranscoding, POPOFactory):
    def process_recorder(self) -> PositionsPOPOProcessRecorder:
        return PositionsPOPOProcessRecorder()
