"""PostgreSQL (production): events written with binary COPY, plus Kafka positions and the
hash chain, all in the library's table-locked transaction.

The library's recorder sends a batch as a text-dumped array of composites with per-row
escaping (≈ 35 µs a row). Here the same locked transaction streams the rows with
``COPY … FROM STDIN (FORMAT BINARY)``. The table lock makes the notification ids of one
transaction contiguous, so they are read back from the sequence. In the same transaction a
second binary COPY writes each event's link in the hash chain (``<events table>_chain``, see
``store/chain.py``): the links continued come from a cache of this process's
last commits, or one primary-key query per batch; the hashing runs while the server takes
the events' COPY.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import count
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    ProcessRecorder,
    StoredEvent,
)
from eventsourcing.postgres import PostgresDatastore, PostgresFactory, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

from lifecycle.ports import PositionedRecorder
from store.audit_port import AuditReader
from store.chain import (
    Head,
    Link,
    Seal,
    chain_batch,
    link_batch,
    predecessors,
    with_ids,
)
from store.heads import HeadCache
from store.pg_copy import (
    SUBJECT_KEY_CHARS,
    chain_subject,
    column_subject,
    events_copy_data,
    links_copy_data,
)
from store.positions import advance_positions, positions_of
from store.postgres_audit import PostgresAuditReader
from store.transcoding import OrjsonTranscoding

log = logging.getLogger(__name__)
_cursor_names = count(1)


def _storable(links: Sequence[Link]) -> Sequence[Link]:
    """The links with their subjects as the column holds them (a copy only when one differs)."""
    out: list[Link] | None = None
    for i, link in enumerate(links):
        stored = column_subject(link.subject)
        if stored is not link.subject:
            if out is None:
                out = list(links[:i])
            out.append(link._replace(subject=stored))
        elif out is not None:
            out.append(link)
    return links if out is None else out


class CopyPostgresProcessRecorder(PostgresProcessRecorder, PositionedRecorder):
    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
        )
        self.chain_table_name = f"{events_table_name}_chain"
        self.seals_table_name = f"{events_table_name}_seals"
        self.set_aside_table_name = f"{events_table_name}_set_aside"
        self.check_identifier_length(f"{self.chain_table_name}_subject_key_idx")
        self.check_identifier_length(self.set_aside_table_name)
        self.head_cache = HeadCache()
        schema = Identifier(self.datastore.schema)
        self.chain_table = SQL("{0}.{1}").format(schema, Identifier(self.chain_table_name))
        self.seals_table = SQL("{0}.{1}").format(schema, Identifier(self.seals_table_name))
        self.events_table = SQL("{0}.{1}").format(schema, Identifier(self.events_table_name))
        self.set_aside_table = SQL("{0}.{1}").format(schema, Identifier(self.set_aside_table_name))
        id_type = Identifier(self.datastore.originator_id_type)
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "originator_id {1} NOT NULL, "
                "originator_version bigint NOT NULL, "
                "notification_id bigint NOT NULL, "
                "subject text, "
                "prev_hash bytea NOT NULL, "
                "hash bytea NOT NULL, "
                "PRIMARY KEY (originator_id, originator_version))"
            ).format(self.chain_table, id_type),
            # Finds a provider's streams (its own and its inbound records) for the history, by
            # a bounded prefix of the subject (ARCHITECTURE.md, "Traps": a B-tree row holds
            # ~2.7 kB). Stores made before it indexed the whole subject: dropped in place.
            SQL("DROP INDEX IF EXISTS {0}.{1}").format(
                schema, Identifier(f"{self.chain_table_name}_subject_idx")
            ),
            SQL(
                "CREATE INDEX IF NOT EXISTS {0} ON {1} (substr(subject, 1, {2})) "
                "WHERE originator_version = 1"
            ).format(
                Identifier(f"{self.chain_table_name}_subject_key_idx"),
                self.chain_table,
                Literal(SUBJECT_KEY_CHARS),
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "seq bigint PRIMARY KEY, "
                "sealed_at text NOT NULL, "
                "label text NOT NULL, "
                "max_notification_id bigint NOT NULL, "
                "streams bigint NOT NULL, "
                "events bigint NOT NULL, "
                "root text NOT NULL, "
                "prev text NOT NULL, "
                "hash text NOT NULL)"
            ).format(self.seals_table),
            # What a reader of the notification log (the relay) could not pass on: set aside,
            # listed by ``lifecycle projections status``.
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "consumer text NOT NULL, "
                "notification_id bigint NOT NULL, "
                "topic text, "
                "reason text NOT NULL, "
                "at text NOT NULL, "
                "PRIMARY KEY (consumer, notification_id))"
            ).format(self.set_aside_table),
        ]
        # Primary-key lookups, one per stream: ``OFFSET 0`` keeps the planner from turning
        # the LATERAL into a hash join over the whole chain table.
        self.heads_statement = SQL(
            "SELECT c.originator_id, c.originator_version, c.hash, c.subject "
            "FROM unnest(%s::text[]::{1}[], %s::bigint[]) AS k(id, v) "
            "CROSS JOIN LATERAL (SELECT originator_id, originator_version, hash, subject "
            "FROM {0} WHERE originator_id = k.id AND originator_version = k.v OFFSET 0) AS c"
        ).format(self.chain_table, id_type)
        # Index lookups on the primary key (the application's prefetch of a batch).
        self.present_statement = SQL(
            "SELECT originator_id FROM {0} "
            "WHERE originator_id = ANY(%s::text[]::{1}[]) AND originator_version = 1"
        ).format(self.events_table, id_type)
        self.copy_links_statement = SQL(
            "COPY {0} (originator_id, originator_version, notification_id, subject, prev_hash, "
            "hash) FROM STDIN (FORMAT BINARY)"
        ).format(self.chain_table)

    def create_table(self) -> None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT to_regclass(%s) IS NOT NULL AS present",
                (f"{self.datastore.schema}.{self.chain_table_name}",),
            )
            row = curs.fetchone()
            chain_existed = bool(row and row["present"])
        super().create_table()
        if not chain_existed:
            self._backfill_chain()

    # --- reading ------------------------------------------------------------------------

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_present_originators(self, ids: Sequence[UUID]) -> list[UUID]:
        """Which of ``ids`` have a stream, in one query (``ProviderLifecycle._prefetch``)."""
        if not ids:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.present_statement, ([str(i) for i in ids],), prepare=True)
            return [row["originator_id"] for row in curs.fetchall()]

    # --- writing ------------------------------------------------------------------------

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        self.head_cache.discard()
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            tracking = kwargs.get("tracking")
            if tracking is not None:
                self._insert_tracking(curs, tracking)
            self._advance_positions(curs, kwargs)
            ids = self._copy_events(curs, stored_events) if stored_events else []
        self.head_cache.commit()
        return ids

    def _advance_positions(self, curs: Cursor[DictRow], kwargs: dict[str, Any]) -> None:
        table = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
        )

        def read(name: str) -> int | None:
            curs.execute(
                SQL("SELECT notification_id FROM {0} WHERE application_name=%s FOR UPDATE").format(
                    table
                ),
                (name,),
            )
            row = curs.fetchone()
            return None if row is None else int(row["notification_id"])

        def write(name: str, value: int, new: bool) -> None:
            if new:
                curs.execute(SQL("INSERT INTO {0} VALUES (%s, %s)").format(table), (name, value))
            else:
                curs.execute(
                    SQL("UPDATE {0} SET notification_id=%s WHERE application_name=%s").format(
                        table
                    ),
                    (value, name),
                )

        advance_positions(positions_of(kwargs), read, write)

    def _copy_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        # The links continued are those of versions the application loaded, so committed
        # (or in this batch) and immutable: read them before taking the lock. A concurrent
        # writer to the same stream would write the same version and fail on the key.
        heads = self._heads(curs, stored_events)
        self._lock_table(curs)
        self._notify_channel(curs)
        copy_sql = SQL(
            "COPY {0} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
        ).format(self.events_table)
        with curs.copy(copy_sql) as copy:
            if self.datastore.originator_id_type == "uuid":
                copy.write(events_copy_data(stored_events))
            else:
                copy.set_types(["text", "int8", "text", "bytea"])
                for event in stored_events:
                    copy.write_row(
                        (event.originator_id, event.originator_version, event.topic, event.state)
                    )
            # Hash while the server takes the rows (the ids are not hashed).
            chained = chain_batch(stored_events, heads)
        curs.execute(
            SQL("SELECT currval(pg_get_serial_sequence({0}, 'notification_id')) AS last").format(
                Literal(f"{self.datastore.schema}.{self.events_table_name}")
            )
        )
        row = curs.fetchone()
        assert row is not None
        last = int(row["last"])
        ids = list(range(last - len(stored_events) + 1, last + 1))
        self._copy_links(curs, chained, ids)
        self.head_cache.stage(chained)  # the cache needs no notification ids
        return ids

    def _heads(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]
    ) -> dict[Any, Head]:
        """The links the batch's streams continue: cached, or read in one query."""
        heads, missing = self.head_cache.split(predecessors(stored_events))
        if missing:
            curs.execute(
                self.heads_statement,
                ([str(oid) for oid, _ in missing], [v for _, v in missing]),
                prepare=True,
            )
            for row in curs.fetchall():
                heads[row["originator_id"]] = Head(
                    int(row["originator_version"]),
                    bytes(row["hash"]),
                    chain_subject(row["subject"]),
                )
        return heads

    def _copy_links(
        self, curs: Cursor[DictRow], links: Sequence[Link], ids: Sequence[int] | None = None
    ) -> None:
        links = _storable(links)
        with curs.copy(self.copy_links_statement) as copy:
            if self.datastore.originator_id_type == "uuid":
                copy.write(links_copy_data(links, ids))
                return
            copy.set_types(["text", "int8", "int8", "text", "bytea", "bytea"])
            for link in with_ids(links, ids) if ids is not None else links:
                copy.write_row(
                    (
                        link.originator_id,
                        link.originator_version,
                        link.notification_id,
                        link.subject,
                        link.prev_hash,
                        link.hash,
                    )
                )

    def _backfill_chain(self) -> None:
        """Link the events recorded before the chain existed (a store made by older code).

        Runs when the chain table is created, under the events table's lock, reading the
        events in notification order in chunks; a second process doing the same finds the
        chain no longer empty and leaves it.
        """
        with self.datastore.get_connection() as conn, conn.transaction():
            with conn.cursor() as curs:
                self._lock_table(curs)
                curs.execute(SQL("SELECT 1 FROM {0} LIMIT 1").format(self.chain_table))
                if curs.fetchone() is not None:
                    return
            heads: dict[Any, Head] = {}
            linked = 0
            with conn.cursor(name="chain_backfill") as source, conn.cursor() as curs:
                source.itersize = 10_000
                source.execute(
                    SQL(
                        "SELECT notification_id, originator_id, originator_version, topic, state "
                        "FROM {0} ORDER BY notification_id"
                    ).format(self.events_table)
                )
                while rows := source.fetchmany(10_000):
                    events = [
                        StoredEvent(
                            r["originator_id"],
                            int(r["originator_version"]),
                            r["topic"],
                            bytes(r["state"]),
                        )
                        for r in rows
                    ]
                    links = link_batch(events, [int(r["notification_id"]) for r in rows], heads)
                    self._copy_links(curs, links)
                    heads.update(
                        (link.originator_id, Head(link.originator_version, link.hash, link.subject))
                        for link in links
                    )
                    linked += len(links)
            if linked:
                log.warning("hash chain created for %d events recorded before it existed", linked)

    # --- set aside by a reader of the log ------------------------------------------------

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_set_aside(
        self, consumer: str, entries: Sequence[tuple[int, str | None, str, str]]
    ) -> None:
        """Remember notifications ``consumer`` could not pass on: (notification id, topic,
        reason, at); one already remembered is kept as it is."""
        if not entries:
            return
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(
                SQL(
                    "INSERT INTO {0} VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (consumer, notification_id) DO NOTHING"
                ).format(self.set_aside_table),
                [
                    (consumer, nid, topic, reason.replace("\x00", "\ufffd"), at)
                    for nid, topic, reason, at in entries
                ],
            )

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_set_aside(
        self, consumer: str, limit: int = 1000
    ) -> list[tuple[int, str | None, str, str]]:
        """The latest ``limit`` notifications ``consumer`` set aside, in log order."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT notification_id, topic, reason, at FROM {0} WHERE consumer = %s "
                    "ORDER BY notification_id DESC LIMIT %s"
                ).format(self.set_aside_table),
                (consumer, limit),
            )
            rows = [
                (int(r["notification_id"]), r["topic"], str(r["reason"]), str(r["at"]))
                for r in curs.fetchall()
            ]
        return rows[::-1]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def count_set_aside(self, consumer: str) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT COUNT(*) AS n FROM {0} WHERE consumer = %s").format(
                    self.set_aside_table
                ),
                (consumer,),
            )
            row = curs.fetchone()
        return int(row["n"]) if row else 0

    # --- the audit port -----------------------------------------------------------------

    @contextmanager
    def audit_reader(self) -> Iterator[AuditReader]:
        with self.datastore.get_connection() as conn, conn.transaction():
            # One snapshot for every query of the reader.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PostgresAuditReader(self, conn)

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def insert_seal(self, seal: Seal) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("INSERT INTO {0} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)").format(
                    self.seals_table
                ),
                (
                    seal.seq,
                    seal.sealed_at,
                    seal.label,
                    seal.max_notification_id,
                    seal.streams,
                    seal.events,
                    seal.root,
                    seal.prev,
                    seal.hash,
                ),
            )


class Factory(OrjsonTranscoding, PostgresFactory):
    process_recorder_class = CopyPostgresProcessRecorder

    # Several processes may create the schema at once on first start ("tuple concurrently
    # updated"): try again, the loser finds it made.
    @retry((InternalError, IntegrityError), max_attempts=5, wait=0.1)
    def process_recorder(self) -> ProcessRecorder:
        recorder: ProcessRecorder = super().process_recorder()
        return recorder
