"""Generations of the views: the schema, the live pointer, rebuild switch-over and clean-up.

A rebuild fills generation ``n + 1`` while ``n`` keeps serving, then moves the pointer
(``view_generation``) in one transaction; readers and the live projector read the
pointer on every call.

``view_set_aside`` lists, per generation, the notifications the projector could not
project (``projections/projector.py``); ``lifecycle projections status`` shows them.
Views made by earlier versions are brought up to :data:`SCHEMA_VERSION` in place, once
(:func:`upgrade_schema`): the indexes of whole free text are replaced by prefix indexes.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any, Literal

import psycopg

from projections.database import Connection, ViewDatabase, lock_key, utc_now_text
from projections.tables import RETIRED_INDEXES, TABLES, VIEWS, Dialect, index_name, table_name

#: 1: the first views; 2: prefix indexes of free text, ``view_set_aside``.
SCHEMA_VERSION = 2

_upgraded: set[str] = set()
_upgrade_lock = threading.Lock()


def _type(dialect: Dialect, spec: str) -> str:
    words = spec.split(" ", 1)
    kind = words[0]
    rest = (" " + words[1]) if len(words) > 1 else ""
    if kind == "BOOL":
        kind = "BOOLEAN"
    elif kind == "DATE" and dialect == "sqlite":
        kind = "TEXT"
    elif kind == "INT":
        kind = "INTEGER"
    return kind + rest


def _create_meta(conn: Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS view_generation ("
        "name TEXT PRIMARY KEY, generation INTEGER NOT NULL, switched_at TEXT)"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS view_generations ("
        "generation INTEGER PRIMARY KEY, state TEXT NOT NULL, created_at TEXT NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS view_tracking ("
        "generation INTEGER NOT NULL, view TEXT NOT NULL, position BIGINT NOT NULL, "
        "PRIMARY KEY (generation, view))"
    )
    _create_set_aside(conn)


def _create_set_aside(conn: Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS view_set_aside ("
        "generation INTEGER NOT NULL, nid BIGINT NOT NULL, topic TEXT, "
        "error TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (generation, nid))"
    )


def _schema_lock(conn: Connection) -> None:
    if conn.dialect == "postgresql":
        conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("views-schema"),))


def create_generation_tables(conn: Connection, generation: int) -> None:
    for table in TABLES:
        name = table_name(generation, table.name)
        columns = ", ".join(f"{c} {_type(conn.dialect, t)}" for c, t in table.columns)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} ({columns}, PRIMARY KEY ({', '.join(table.key)}))"
        )
    _create_indexes(conn, generation)


def _create_indexes(conn: Connection, generation: int) -> None:
    for table in TABLES:
        name = table_name(generation, table.name)
        for index in table.indexes:
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {index_name(name, index)} "
                f"ON {name} ({', '.join(index)})"
            )


def drop_generation_tables(conn: Connection, generation: int) -> None:
    for table in TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {table_name(generation, table.name)}")
    conn.execute("DELETE FROM view_tracking WHERE generation=?", (generation,))
    conn.execute("DELETE FROM view_set_aside WHERE generation=?", (generation,))
    conn.execute("DELETE FROM view_generations WHERE generation=?", (generation,))


def upgrade_schema(conn: Connection) -> bool:
    """Bring views made by an earlier version up to :data:`SCHEMA_VERSION`, in place.

    Creates ``view_set_aside``; in every generation, drops the indexes of whole free text
    (:data:`~projections.tables.RETIRED_INDEXES`) and creates the current ones. Runs once per
    store (the version is kept in ``view_generation`` as the row ``'schema'``); whether it
    changed anything.
    """
    rows = conn.execute("SELECT generation FROM view_generation WHERE name='schema'")
    if rows and int(rows[0][0]) >= SCHEMA_VERSION:
        return False
    with conn.transaction():
        _schema_lock(conn)
        rows = conn.execute("SELECT generation FROM view_generation WHERE name='schema'")
        if rows and int(rows[0][0]) >= SCHEMA_VERSION:
            return False
        _create_set_aside(conn)
        for generation, _state, _created in generations(conn):
            for table, index in RETIRED_INDEXES:
                name = table_name(generation, table)
                conn.execute(f"DROP INDEX IF EXISTS {index_name(name, index)}")
            _create_indexes(conn, generation)
        _set_schema_version(conn, bool(rows))
    return True


def _set_schema_version(conn: Connection, present: bool) -> None:
    if present:
        conn.execute(
            "UPDATE view_generation SET generation=?, switched_at=? WHERE name='schema'",
            (SCHEMA_VERSION, utc_now_text()),
        )
    else:
        conn.execute(
            "INSERT INTO view_generation (name, generation, switched_at) VALUES ('schema', ?, ?)",
            (SCHEMA_VERSION, utc_now_text()),
        )


def _upgrade_once(db: ViewDatabase, conn: Connection) -> None:
    with _upgrade_lock:
        if db.url in _upgraded:
            return
        upgrade_schema(conn)
        _upgraded.add(db.url)


def ensure_schema(db: ViewDatabase) -> int:
    """Create the meta tables and generation 1 if there is none (or bring views made by an
    earlier version up to date, :func:`upgrade_schema`); the live generation."""
    conn = db.connect()
    try:
        live = _try_live(conn)
        if live is not None:
            _upgrade_once(db, conn)
            return live
        with conn.transaction():
            _schema_lock(conn)
            _create_meta(conn)
            rows = conn.execute("SELECT generation FROM view_generation WHERE name='live'")
            if rows:
                return int(rows[0][0])
            generation = _allocate(conn, "live")
            conn.execute(
                "INSERT INTO view_generation (name, generation, switched_at) VALUES ('live', ?, ?)",
                (generation, utc_now_text()),
            )
            _set_schema_version(conn, False)
        _upgraded.add(db.url)
        return generation
    finally:
        conn.close()


def _try_live(conn: Connection) -> int | None:
    try:
        rows = conn.execute("SELECT generation FROM view_generation WHERE name='live'")
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
        return None
    return int(rows[0][0]) if rows else None


def _allocate(conn: Connection, state: str) -> int:
    rows = conn.execute("SELECT COALESCE(MAX(generation), 0) FROM view_generations")
    generation = int(rows[0][0]) + 1
    conn.execute(
        "INSERT INTO view_generations (generation, state, created_at) VALUES (?, ?, ?)",
        (generation, state, utc_now_text()),
    )
    create_generation_tables(conn, generation)
    conn.executemany(
        "INSERT INTO view_tracking (generation, view, position) VALUES (?, ?, 0)",
        [(generation, view) for view in VIEWS],
    )
    return generation


def new_generation(db: ViewDatabase, state: Literal["building", "scratch"]) -> int:
    """A new, empty generation (tables and tracking at 0) that readers do not see yet."""
    ensure_schema(db)
    conn = db.connect()
    try:
        with conn.transaction():
            _schema_lock(conn)
            return _allocate(conn, state)
    finally:
        conn.close()


def live_generation(conn: Connection) -> int:
    rows = conn.execute("SELECT generation FROM view_generation WHERE name='live'")
    if not rows:
        raise LookupError("no live view generation: run the projector or a rebuild")
    return int(rows[0][0])


def positions(conn: Connection, generation: int) -> dict[str, int]:
    rows = conn.execute(
        "SELECT view, position FROM view_tracking WHERE generation=?", (generation,)
    )
    return {str(view): int(position) for view, position in rows}


def set_aside(conn: Connection, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
    """How many notifications the projector set aside (every generation), and the latest
    ``limit`` of them, in log order."""
    rows = conn.execute("SELECT COUNT(*) FROM view_set_aside")
    total = int(rows[0][0]) if rows else 0
    latest = conn.execute(
        "SELECT generation, nid, topic, error, at FROM view_set_aside "
        "ORDER BY generation DESC, nid DESC LIMIT ?",
        (limit,),
    )
    return total, [
        {
            "generation": int(g),
            "notification_id": int(nid),
            "topic": topic,
            "error": str(error),
            "at": str(at),
        }
        for g, nid, topic, error, at in reversed(latest)
    ]


def generations(conn: Connection) -> list[tuple[int, str, str]]:
    rows = conn.execute(
        "SELECT generation, state, created_at FROM view_generations ORDER BY generation"
    )
    return [(int(g), str(s), str(c)) for g, s, c in rows]


def switch_live(db: ViewDatabase, generation: int, keep: int = 1) -> int:
    """Point readers at ``generation`` in one transaction; the previous live generation.

    The previous generation is kept (``retired``) for readers still on it; older retired
    generations beyond ``keep`` are dropped.
    """
    conn = db.connect()
    try:
        with conn.transaction():
            _schema_lock(conn)
            previous = live_generation(conn)
            conn.execute(
                "UPDATE view_generation SET generation=?, switched_at=? WHERE name='live'",
                (generation, utc_now_text()),
            )
            conn.execute(
                "UPDATE view_generations SET state='retired' WHERE generation=?", (previous,)
            )
            conn.execute(
                "UPDATE view_generations SET state='live' WHERE generation=?", (generation,)
            )
        retired = [g for g, state, _ in generations(conn) if state == "retired"]
        for old in sorted(retired, reverse=True)[keep:]:
            with conn.transaction():
                _schema_lock(conn)
                drop_generation_tables(conn, old)
        return previous
    finally:
        conn.close()


def drop_generation(db: ViewDatabase, generation: int) -> None:
    conn = db.connect()
    try:
        with conn.transaction():
            _schema_lock(conn)
            if _try_live(conn) == generation:
                raise ValueError(f"generation {generation} is live")
            drop_generation_tables(conn, generation)
    finally:
        conn.close()


def drop_unfinished(db: ViewDatabase) -> list[int]:
    """Drop generations left ``building`` or ``scratch`` by an interrupted rebuild / verify.

    Call only while holding :meth:`ViewDatabase.exclusive`.
    """
    conn = db.connect()
    try:
        stale = [g for g, state, _ in generations(conn) if state in ("building", "scratch")]
    finally:
        conn.close()
    for generation in stale:
        drop_generation(db, generation)
    return stale
