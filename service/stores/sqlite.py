"""SQLite (the embedded default): the library's process recorder plus Kafka positions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteCursor, SQLiteFactory, SQLiteProcessRecorder

from service.stores import advance_positions, positions_of


class PositionsSQLiteProcessRecorder(SQLiteProcessRecorder):
    supports_positions = True

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        def read(name: str) -> int | None:
            c.execute("SELECT notification_id FROM tracking WHERE application_name=?", (name,))
            row = c.fetchone()
            return None if row is None else int(row[0])

        def write(name: str, value: int, new: bool) -> None:
            if new:
                c.execute("INSERT INTO tracking VALUES (?, ?)", (name, value))
            else:
                c.execute(
                    "UPDATE tracking SET notification_id=? WHERE application_name=?", (value, name)
                )

        advance_positions(positions_of(kwargs), read, write)
        return super()._insert_events(c, stored_events, **kwargs)


class Factory(SQLiteFactory):
    process_recorder_class = PositionsSQLiteProcessRecorder
