"""SQLite (the embedded default): the library's process recorder plus Kafka positions,
and the hash chain written in the same transaction (``store/chain.py``).

Tables (besides the library's ``stored_events`` and ``tracking``):
``stored_events_chain`` (one link per event) and ``stored_events_seals``.

Writers: one process per file (``store.lease.StoreFileLock``) whose writers (the consumer,
the relay's tracking, the inbox, the seal, and the projector's view transactions) take one
lock per database file, :func:`write_lock`, and begin with ``BEGIN IMMEDIATE``. A deferred
transaction that reads, then writes after another connection has committed, fails at once
with ``database is locked`` (SQLITE_BUSY_SNAPSHOT: the busy timeout does not apply).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
    SQLiteProcessRecorder,
    SQLiteTransaction,
)
from eventsourcing.utils import Environment, EnvType

from lifecycle.ports import PositionedRecorder
from store.audit_port import AuditReader, StoredRow
from store.chain import Head, Link, Seal, link_batch, predecessors
from store.heads import HeadCache
from store.positions import advance_positions, positions_of
from store.transcoding import OrjsonTranscoding

log = logging.getLogger(__name__)

#: Row values per ``IN (VALUES …)`` query (two parameters each; SQLite allows 32,766).
_HEADS_CHUNK = 8000

#: The chain's subject index holds this many leading characters of a subject, never the whole
#: (a malformed record's subject may be any length); ``subject_streams`` compares the full one.
SUBJECT_KEY_CHARS = 64


_write_locks: dict[str, threading.RLock] = {}
_write_locks_guard = threading.Lock()


def write_lock(db_file: str | os.PathLike[str]) -> threading.RLock:
    """The process's one lock around write transactions on ``db_file`` (shared by every
    connection and pool of this process on that file)."""
    key = os.path.realpath(db_file)
    with _write_locks_guard:
        lock = _write_locks.get(key)
        if lock is None:
            lock = _write_locks[key] = threading.RLock()
        return lock


class _ImmediateTransaction(SQLiteTransaction):
    """A write transaction that takes SQLite's write lock up front (waiting the busy timeout)."""

    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        return cursor


class SerialSQLiteDatastore(SQLiteDatastore):
    """The library's datastore whose write transactions hold :func:`write_lock` and begin
    ``IMMEDIATE`` (in-memory databases keep the library's own reader/writer interlock)."""

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        if not commit or self.pool.is_sqlite_memory_mode:
            with super().transaction(commit=commit) as cursor:
                yield cursor
            return
        with (
            write_lock(self.pool.db_name),
            self.get_connection(commit=True) as conn,
            _ImmediateTransaction(conn, commit=True) as cursor,
            cursor,
        ):
            yield cursor


def _blob(value: Any) -> bytes:
    """A BLOB column's value; a tampered row may hold TEXT (``replace()`` returns text)."""
    return value.encode() if isinstance(value, str) else bytes(value)


def _hex(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


class PositionsSQLiteProcessRecorder(SQLiteProcessRecorder, PositionedRecorder):
    def __init__(self, datastore: SQLiteDatastore, *, events_table_name: str = "stored_events"):
        self.chain_table_name = f"{events_table_name}_chain"
        self.seals_table_name = f"{events_table_name}_seals"
        self.set_aside_table_name = f"{events_table_name}_set_aside"
        self.head_cache = HeadCache()
        super().__init__(datastore, events_table_name=events_table_name)

    def construct_create_table_statements(self) -> list[str]:
        chain, seals = self.chain_table_name, self.seals_table_name
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {chain} ("
            "originator_id TEXT NOT NULL, "
            "originator_version INTEGER NOT NULL, "
            "notification_id INTEGER NOT NULL, "
            "subject TEXT, "
            "prev_hash BLOB NOT NULL, "
            "hash BLOB NOT NULL, "
            "PRIMARY KEY (originator_id, originator_version)) WITHOUT ROWID",
            # Finds a provider's streams (its own and its inbound records) for the history, by
            # a bounded prefix of the subject (ARCHITECTURE.md, "Traps": never index an
            # unbounded string whole). Stores made before it indexed the whole subject: that
            # index is dropped in place.
            f"DROP INDEX IF EXISTS {chain}_subject_idx",
            f"CREATE INDEX IF NOT EXISTS {chain}_subject_key_idx ON {chain} "
            f"(substr(subject, 1, {SUBJECT_KEY_CHARS})) WHERE originator_version = 1",
            f"CREATE TABLE IF NOT EXISTS {seals} ("
            "seq INTEGER PRIMARY KEY, "
            "sealed_at TEXT NOT NULL, "
            "label TEXT NOT NULL, "
            "max_notification_id INTEGER NOT NULL, "
            "streams INTEGER NOT NULL, "
            "events INTEGER NOT NULL, "
            "root TEXT NOT NULL, "
            "prev TEXT NOT NULL, "
            "hash TEXT NOT NULL)",
            # What a reader of the notification log (the relay) could not pass on: set aside,
            # listed by ``lifecycle projections status``.
            f"CREATE TABLE IF NOT EXISTS {self.set_aside_table_name} ("
            "consumer TEXT NOT NULL, "
            "notification_id INTEGER NOT NULL, "
            "topic TEXT, "
            "reason TEXT NOT NULL, "
            "at TEXT NOT NULL, "
            "PRIMARY KEY (consumer, notification_id)) WITHOUT ROWID",
        ]

    def create_table(self) -> None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                (self.chain_table_name,),
            )
            chain_existed = c.fetchone() is not None
        super().create_table()
        if not chain_existed:
            self._backfill_chain()

    # --- reading ------------------------------------------------------------------------

    def select_present_originators(self, ids: Sequence[UUID]) -> list[UUID]:
        """Which of ``ids`` have a stream (``ProviderLifecycle._prefetch``)."""
        present: list[UUID] = []
        with self.datastore.transaction(commit=False) as c:
            for start in range(0, len(ids), 900):
                chunk = [_hex(i) for i in ids[start : start + 900]]
                c.execute(
                    f"SELECT originator_id FROM {self.events_table_name} "
                    f"WHERE originator_version = 1 AND originator_id IN "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                )
                present += [UUID(row[0]) for row in c.fetchall()]
        return present

    # --- writing ------------------------------------------------------------------------

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        self.head_cache.discard()
        ids = super().insert_events(stored_events, **kwargs)
        self.head_cache.commit()
        return ids

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
        ids = super()._insert_events(c, stored_events, **kwargs)
        if stored_events:
            assert ids is not None
            # The events are written (the write lock is held): the heads read now are final.
            links = link_batch(stored_events, ids, self._heads(c, stored_events))
            self._insert_links(c, links)
            self.head_cache.stage(links)
        return ids

    def _heads(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent]) -> dict[Any, Head]:
        """The links the batch's streams continue: cached, or one query (per 8,000 streams)."""
        heads, keys = self.head_cache.split(predecessors(stored_events))
        by_hex = {_hex(oid): oid for oid, _ in keys}
        for start in range(0, len(keys), _HEADS_CHUNK):
            chunk = keys[start : start + _HEADS_CHUNK]
            values = ",".join("(?,?)" for _ in chunk)
            params: list[Any] = []
            for oid, version in chunk:
                params += [_hex(oid), version]
            c.execute(
                f"SELECT originator_id, originator_version, hash, subject "
                f"FROM {self.chain_table_name} "
                f"WHERE (originator_id, originator_version) IN (VALUES {values})",
                params,
            )
            for row in c.fetchall():
                heads[by_hex[row[0]]] = Head(int(row[1]), _blob(row[2]), row[3])
        return heads

    def _insert_links(self, c: SQLiteCursor, links: Sequence[Link]) -> None:
        c.executemany(
            f"INSERT INTO {self.chain_table_name} VALUES (?,?,?,?,?,?)",
            [
                (
                    _hex(link.originator_id),
                    link.originator_version,
                    link.notification_id,
                    link.subject,
                    link.prev_hash,
                    link.hash,
                )
                for link in links
            ],
        )

    def _backfill_chain(self) -> None:
        """Link the events recorded before the chain existed (a store made by older code).

        Runs once, when the chain table is created, in one write transaction, reading the
        events in notification order in chunks; a second process doing the same finds the
        chain no longer empty and leaves it.
        """
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM {self.chain_table_name} WHERE 0")  # take the write lock
            c.execute(f"SELECT 1 FROM {self.chain_table_name} LIMIT 1")
            if c.fetchone() is not None:
                return
            source = c.sqlite_cursor.connection.cursor()
            source.execute(
                f"SELECT rowid, originator_id, originator_version, topic, state "
                f"FROM {self.events_table_name} ORDER BY rowid"
            )
            heads: dict[Any, Head] = {}
            linked = 0
            while rows := source.fetchmany(10_000):
                events = [
                    StoredEvent(self.convert_originator_id(r[1]), int(r[2]), r[3], _blob(r[4]))
                    for r in rows
                ]
                links = link_batch(events, [int(r[0]) for r in rows], heads)
                self._insert_links(c, links)
                heads.update(
                    (link.originator_id, Head(link.originator_version, link.hash, link.subject))
                    for link in links
                )
                linked += len(links)
            if linked:
                log.warning("hash chain created for %d events recorded before it existed", linked)

    # --- set aside by a reader of the log ------------------------------------------------

    def insert_set_aside(
        self, consumer: str, entries: Sequence[tuple[int, str | None, str, str]]
    ) -> None:
        """Remember notifications ``consumer`` could not pass on: (notification id, topic,
        reason, at); one already remembered is kept as it is."""
        if not entries:
            return
        with self.datastore.transaction(commit=True) as c:
            c.executemany(
                f"INSERT INTO {self.set_aside_table_name} VALUES (?,?,?,?,?) "
                "ON CONFLICT (consumer, notification_id) DO NOTHING",
                [(consumer, nid, topic, reason, at) for nid, topic, reason, at in entries],
            )

    def select_set_aside(
        self, consumer: str, limit: int = 1000
    ) -> list[tuple[int, str | None, str, str]]:
        """The latest ``limit`` notifications ``consumer`` set aside, in log order."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT notification_id, topic, reason, at FROM {self.set_aside_table_name} "
                "WHERE consumer = ? ORDER BY notification_id DESC LIMIT ?",
                (consumer, limit),
            )
            rows = [(int(r[0]), r[1], str(r[2]), str(r[3])) for r in c.fetchall()]
        return rows[::-1]

    def count_set_aside(self, consumer: str) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT COUNT(*) FROM {self.set_aside_table_name} WHERE consumer = ?",
                (consumer,),
            )
            row = c.fetchone()
        return int(row[0]) if row else 0

    # --- the audit port -----------------------------------------------------------------

    @contextmanager
    def audit_reader(self) -> Iterator[AuditReader]:
        # One read transaction (a WAL snapshot) for every query of the reader.
        with (
            self.datastore.get_connection(commit=False) as conn,
            conn.transaction(commit=False),
        ):
            yield SQLiteAuditReader(self, conn)

    def insert_seal(self, seal: Seal) -> None:
        # A taken number raises the library's IntegrityError (the transaction translates it).
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"INSERT INTO {self.seals_table_name} VALUES (?,?,?,?,?,?,?,?,?)",
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


class SQLiteAuditReader:
    def __init__(self, recorder: PositionsSQLiteProcessRecorder, conn: SQLiteConnection) -> None:
        self.recorder = recorder
        self.conn = conn

    def _where_ids(self, ids: Sequence[UUID] | None) -> tuple[str, list[Any]]:
        if ids is None:
            return "", []
        if not ids:
            return "WHERE 0 ", []
        return (
            f"WHERE originator_id IN ({','.join('?' * len(ids))}) ",
            [_hex(i) for i in ids],
        )

    def _rows(self, sql: str, params: Sequence[Any]) -> Iterator[sqlite3.Row]:
        cursor = self.conn.cursor().sqlite_cursor
        cursor.execute(sql, params)
        while True:
            rows = cursor.fetchmany(1000)
            if not rows:
                return
            yield from rows

    def events(self, ids: Sequence[UUID] | None = None) -> Iterator[StoredRow]:
        where, params = self._where_ids(ids)
        convert = self.recorder.convert_originator_id
        for r in self._rows(
            f"SELECT originator_id, originator_version, rowid, topic, state "
            f"FROM {self.recorder.events_table_name} {where}"
            "ORDER BY originator_id, originator_version",
            params,
        ):
            yield StoredRow(convert(r[0]), int(r[1]), int(r[2]), r[3], _blob(r[4]))

    def links(self, ids: Sequence[UUID] | None = None) -> Iterator[Link]:
        where, params = self._where_ids(ids)
        convert = self.recorder.convert_originator_id
        for r in self._rows(
            f"SELECT originator_id, originator_version, notification_id, subject, prev_hash, "
            f"hash FROM {self.recorder.chain_table_name} {where}"
            "ORDER BY originator_id, originator_version",
            params,
        ):
            yield Link(convert(r[0]), int(r[1]), int(r[2]), r[3], _blob(r[4]), _blob(r[5]))

    def seals(self) -> list[Seal]:
        return [
            Seal(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), int(r[5]), r[6], r[7], r[8])
            for r in self._rows(
                f"SELECT seq, sealed_at, label, max_notification_id, streams, events, root, "
                f"prev, hash FROM {self.recorder.seals_table_name} ORDER BY seq",
                (),
            )
        ]

    def subject_streams(self, subject: str) -> list[UUID]:
        streams: list[UUID] = []
        # The index holds a prefix; the full subject is compared on the rows it finds (the
        # unary ``+`` keeps SQLite from planning a scan around that second term).
        for r in self._rows(
            f"SELECT originator_id FROM {self.recorder.chain_table_name} "
            f"WHERE substr(subject, 1, {SUBJECT_KEY_CHARS}) = substr(?, 1, {SUBJECT_KEY_CHARS}) "
            "AND +subject = ? AND originator_version = 1 ORDER BY notification_id",
            (subject, subject),
        ):
            oid = self.recorder.convert_originator_id(r[0])
            streams.append(oid if isinstance(oid, UUID) else UUID(oid))
        return streams

    def max_notification_id(self) -> int:
        cursor = self.conn.cursor().sqlite_cursor
        cursor.execute(f"SELECT MAX(rowid) FROM {self.recorder.events_table_name}")
        row = cursor.fetchone()
        return int(row[0] or 0) if row else 0


class Factory(OrjsonTranscoding, SQLiteFactory):
    process_recorder_class = PositionsSQLiteProcessRecorder

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        # The library builds its own datastore; writes go through the serialised one.
        self.datastore.__class__ = SerialSQLiteDatastore
