"""The audit port on PostgreSQL: one snapshot's events, links and seals, streamed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import count
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Literal

from store.audit_port import StoredRow
from store.chain import Link, Seal
from store.pg_copy import SUBJECT_KEY_CHARS, chain_subject, column_subject

if TYPE_CHECKING:
    from store.postgres import CopyPostgresProcessRecorder

_cursor_names = count(1)


class PostgresAuditReader:
    def __init__(self, recorder: CopyPostgresProcessRecorder, conn: Connection[DictRow]) -> None:
        self.recorder = recorder
        self.conn = conn

    def _rows(self, statement: Composed, params: Sequence[Any]) -> Iterator[DictRow]:
        # A server-side cursor: the whole table is never held in memory.
        with self.conn.cursor(name=f"audit_{next(_cursor_names)}") as cursor:
            cursor.itersize = 2000
            cursor.execute(statement, params)
            yield from cursor

    def _where_ids(self, ids: Sequence[UUID] | None) -> tuple[Composed, list[Any]]:
        if ids is None:
            return SQL("").format(), []
        return SQL(" WHERE originator_id = ANY(%s)").format(), [list(ids)]

    def events(self, ids: Sequence[UUID] | None = None) -> Iterator[StoredRow]:
        where, params = self._where_ids(ids)
        for r in self._rows(
            SQL(
                "SELECT originator_id, originator_version, notification_id, topic, state "
                "FROM {0}{1} ORDER BY originator_id, originator_version"
            ).format(self.recorder.events_table, where),
            params,
        ):
            yield StoredRow(
                r["originator_id"],
                int(r["originator_version"]),
                int(r["notification_id"]),
                r["topic"],
                bytes(r["state"]),
            )

    def links(self, ids: Sequence[UUID] | None = None) -> Iterator[Link]:
        where, params = self._where_ids(ids)
        for r in self._rows(
            SQL(
                "SELECT originator_id, originator_version, notification_id, subject, prev_hash, "
                "hash FROM {0}{1} ORDER BY originator_id, originator_version"
            ).format(self.recorder.chain_table, where),
            params,
        ):
            yield Link(
                r["originator_id"],
                int(r["originator_version"]),
                int(r["notification_id"]),
                chain_subject(r["subject"]),
                bytes(r["prev_hash"]),
                bytes(r["hash"]),
            )

    def seals(self) -> list[Seal]:
        with self.conn.cursor() as cursor:
            cursor.execute(
                SQL(
                    "SELECT seq, sealed_at, label, max_notification_id, streams, events, root, "
                    "prev, hash FROM {0} ORDER BY seq"
                ).format(self.recorder.seals_table)
            )
            return [
                Seal(
                    int(r["seq"]),
                    r["sealed_at"],
                    r["label"],
                    int(r["max_notification_id"]),
                    int(r["streams"]),
                    int(r["events"]),
                    r["root"],
                    r["prev"],
                    r["hash"],
                )
                for r in cursor.fetchall()
            ]

    def subject_streams(self, subject: str) -> list[UUID]:
        stored = column_subject(subject)
        with self.conn.cursor() as cursor:
            # The index holds a prefix; the full subject is compared on the rows it finds.
            cursor.execute(
                SQL(
                    "SELECT originator_id FROM {0} "
                    "WHERE substr(subject, 1, {1}) = substr(%s, 1, {1}) AND subject = %s "
                    "AND originator_version = 1 ORDER BY notification_id"
                ).format(self.recorder.chain_table, Literal(SUBJECT_KEY_CHARS)),
                (stored, stored),
            )
            return [
                r["originator_id"]
                if isinstance(r["originator_id"], UUID)
                else UUID(r["originator_id"])
                for r in cursor.fetchall()
            ]

    def max_notification_id(self) -> int:
        with self.conn.cursor() as cursor:
            cursor.execute(
                SQL("SELECT MAX(notification_id) AS last FROM {0}").format(
                    self.recorder.events_table
                )
            )
            row = cursor.fetchone()
            return int(row["last"] or 0) if row else 0
