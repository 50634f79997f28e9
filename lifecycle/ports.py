"""The ports of the application service: what it asks of a store, declared, not probed.

As in the ``eventsourcing`` library's ``searchablecontent`` example, a port is an abstract
recorder interface; the adapters in ``store/`` (SQLite, PostgreSQL, memory) implement it.
The library's own recorders do not, and ``ProviderLifecycle`` still runs on them (e.g.
``lifecycle evaluate`` on ``eventsourcing.popo``), only without Kafka positions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ProcessRecorder, StoredEvent


@dataclass(frozen=True)
class Position:
    """The records ``first``…``last`` of one tracked input (e.g. ``kafka:<topic>:<partition>``).

    Saved with the batch in one transaction; the store refuses a batch that does not
    start right after the stored position, so no record is ever applied twice.
    """

    name: str
    first: int
    last: int


class PositionedRecorder(ProcessRecorder, ABC):
    """A process recorder that writes input positions in the events' transaction."""

    @abstractmethod
    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        positions: Sequence[Position] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """Store the events and advance each position, in one transaction.

        ``IntegrityError`` (nothing written) when a position does not start right
        after its stored value: a zombie or a stale fetch never applies a record twice.
        """

    @abstractmethod
    def select_present_originators(self, ids: Sequence[UUID]) -> list[UUID]:
        """Which of ``ids`` have a stream, in one query (the batch prefetch)."""
