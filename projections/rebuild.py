"""Maintenance of the views: rebuild with switch-over, rebuild-and-compare, status.

*Rebuild* fills a new generation (``n + 1``, its own tables and tracking) from the whole
history while generation ``n`` keeps serving and its projector keeps following the store,
then moves the ``view_generation`` pointer in one transaction: readers and the live
projector pick it up on their next call. The previous generation is kept for readers in
flight (and dropped at the next rebuild).

*Verify* rebuilds every view into scratch tables up to exactly the live views' position,
read in one snapshot together with the live rows, and compares them row by row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from lifecycle.application import ProviderLifecycle
from projections.database import Connection, ViewDatabase
from projections.generations import (
    drop_generation,
    drop_unfinished,
    ensure_schema,
    generations,
    live_generation,
    new_generation,
    positions,
    set_aside,
    switch_live,
)
from projections.projector import Projector
from projections.tables import TABLES, VIEWS, Table, table_name

Progress = Callable[[int, int], None]

#: A rebuild reads every provider once; keep them all (a provider is a few KB).
REBUILD_CACHE = 1_000_000


@dataclass(frozen=True)
class RebuildReport:
    generation: int
    previous: int
    position: int
    notifications: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds if self.seconds > 0 else 0.0


def rebuild(
    app: ProviderLifecycle,
    db: ViewDatabase,
    *,
    batch_size: int = 1000,
    progress: Progress | None = None,
    keep: int = 1,
) -> RebuildReport:
    """Rebuild every view into a new generation, then switch readers over to it."""
    ensure_schema(db)
    with db.exclusive():
        drop_unfinished(db)
        generation = new_generation(db, "building")
        projector = Projector(
            app, db, generation=generation, batch_size=batch_size, cache_size=REBUILD_CACHE
        )
        start = time.perf_counter()
        try:
            total = projector.catch_up(progress=progress)
            # Whatever arrived meanwhile, then switch; the live projector continues after.
            total += projector.catch_up(progress=progress)
            position = projector.position
            seconds = time.perf_counter() - start
            previous = switch_live(db, generation, keep=keep)
        except BaseException:
            projector.close()
            drop_generation(db, generation)
            raise
        projector.close()
    return RebuildReport(generation, previous, position, total, seconds)


# --- verify ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    table: str
    key: dict[str, Any]
    kind: str  # "changed", "missing" (rebuilt has it, live not), "extra" (live only)
    columns: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name → (live, rebuilt)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": {k: _plain(v) for k, v in self.key.items()},
            "kind": self.kind,
            "columns": {
                c: {"live": _plain(a), "rebuilt": _plain(b)} for c, (a, b) in self.columns.items()
            },
        }


@dataclass
class VerifyReport:
    generation: int
    position: int
    rows: dict[str, int]
    differences: list[Difference]
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "generation": self.generation,
            "position": self.position,
            "rows": self.rows,
            "differences": [x.as_dict() for x in self.differences],
            "truncated": self.truncated,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    return value


def _order(conn: Connection, table: Table) -> str:
    types = dict(table.columns)
    parts = []
    for column in table.key:
        text = types[column].startswith("TEXT")
        parts.append(f'{column} COLLATE "C"' if text and conn.dialect == "postgresql" else column)
    return ", ".join(parts)


def _rows(conn: Connection, generation: int, table: Table) -> Iterator[tuple[Any, ...]]:
    yield from conn.iterate(
        f"SELECT {', '.join(table.column_names)} FROM {table_name(generation, table.name)} "
        f"ORDER BY {_order(conn, table)}"
    )


def _compare(
    table: Table,
    live: Iterator[tuple[Any, ...]],
    rebuilt: Iterator[tuple[Any, ...]],
    differences: list[Difference],
    limit: int,
) -> int:
    columns = table.column_names
    key_at = [columns.index(k) for k in table.key]

    def key(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(row[i] for i in key_at)

    def named(k: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(table.key, k, strict=True))

    count = 0
    a, b = next(live, None), next(rebuilt, None)
    while a is not None or b is not None:
        count += 1
        if b is None or (a is not None and key(a) < key(b)):
            assert a is not None
            differences.append(Difference(table.name, named(key(a)), "extra"))
            a = next(live, None)
        elif a is None or key(b) < key(a):
            differences.append(Difference(table.name, named(key(b)), "missing"))
            b = next(rebuilt, None)
        else:
            if a != b:
                changed = {c: (x, y) for c, x, y in zip(columns, a, b, strict=True) if x != y}
                differences.append(Difference(table.name, named(key(a)), "changed", changed))
            a, b = next(live, None), next(rebuilt, None)
        if len(differences) >= limit:
            break
    return count


def verify(
    app: ProviderLifecycle,
    db: ViewDatabase,
    *,
    batch_size: int = 1000,
    progress: Progress | None = None,
    limit: int = 1000,
) -> VerifyReport:
    """Rebuild every view into scratch tables and compare them with the live views."""
    ensure_schema(db)
    with db.exclusive():
        drop_unfinished(db)
        scratch = new_generation(db, "scratch")
        projector = Projector(
            app, db, generation=scratch, batch_size=batch_size, cache_size=REBUILD_CACHE
        )
        live_conn = db.connect()
        scratch_conn = db.connect()
        try:
            # Most of the work before the snapshot, so the snapshot stays short.
            live = live_generation(live_conn)
            target = min(positions(live_conn, live).values(), default=0)
            projector.catch_up(until=target, progress=progress)
            with live_conn.transaction(write=False, snapshot=True):
                live = live_generation(live_conn)
                stored = positions(live_conn, live)
                target = min(stored.values(), default=0)
                if len(set(stored.values())) > 1:
                    raise RuntimeError(f"live views are at different positions: {stored}")
                projector.catch_up(until=target, progress=progress)
                differences: list[Difference] = []
                rows: dict[str, int] = {}
                with scratch_conn.transaction(write=False):
                    for table in TABLES:
                        rows[table.name] = _compare(
                            table,
                            _rows(live_conn, live, table),
                            _rows(scratch_conn, scratch, table),
                            differences,
                            limit,
                        )
                        if len(differences) >= limit:
                            break
            return VerifyReport(live, target, rows, differences, len(differences) >= limit)
        finally:
            projector.close()
            live_conn.close()
            scratch_conn.close()
            drop_generation(db, scratch)


# --- status ---------------------------------------------------------------------------


def status_report(
    app: ProviderLifecycle, db: ViewDatabase, *, set_aside_limit: int = 100
) -> dict[str, Any]:
    """Every generation's views: position, the store's head and lag; and the notifications
    the projector set aside (how many, and the latest ``set_aside_limit``)."""
    ensure_schema(db)
    head = int(app.process_recorder.max_notification_id() or 0)
    conn = db.connect()
    try:
        live = live_generation(conn)
        out = []
        for generation, state, created in generations(conn):
            stored = positions(conn, generation)
            for view in VIEWS:
                position = stored.get(view, 0)
                out.append(
                    {
                        "view": view,
                        "generation": generation,
                        "state": state,
                        "created_at": created,
                        "position": position,
                        "head": head,
                        "lag": max(0, head - position),
                    }
                )
        total, latest = set_aside(conn, set_aside_limit)
        return {
            "head": head,
            "live_generation": live,
            "views": out,
            "set_aside_total": total,
            "set_aside": latest,
        }
    finally:
        conn.close()
