"""In memory (tests, ``evaluate``): the library's POPO process recorder plus Kafka positions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent, Tracking
from eventsourcing.popo import POPOFactory, POPOProcessRecorder

from service.stores import check_contiguous, positions_of


class PositionsPOPOProcessRecorder(POPOProcessRecorder):
    supports_positions = True

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        for position in positions_of(kwargs):
            check_contiguous(position, self.max_tracking_id(position.name))

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._update_table(stored_events, **kwargs)
        for position in positions_of(kwargs):
            self._insert_tracking(Tracking(position.name, position.last))
        return ids


class Factory(POPOFactory):
    def process_recorder(self) -> PositionsPOPOProcessRecorder:
        return PositionsPOPOProcessRecorder()
