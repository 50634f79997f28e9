"""The projector: follows the store's notification log into the views, exactly once.

Each batch of notifications (``select_notifications``: polling works on SQLite too) is
applied in memory — provider events to cached :class:`~lifecycle.provider.Provider`
aggregates with the domain's own ``mutate`` (a cache miss loads the aggregate from the
repository at the version just before the event), so every row equals a replay by
construction — and then written in **one** transaction with the new position of every
view. The position is advanced by compare-and-set: a batch whose starting position is
no longer the stored one (another projector got there first) is rolled back entirely.

A projector follows the generation readers use (the ``view_generation`` pointer, read on
every batch), or a fixed generation (a rebuild or a verify fills its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import InterfaceError, Notification, OperationalError
from prometheus_client import Gauge

from lifecycle.application import ProviderLifecycle
from lifecycle.eligibility import standing
from lifecycle.provider import Provider
from lifecycle.records import InboundRecord
from projections import documents as d
from projections.database import (
    TABLE_BY_NAME,
    VIEWS,
    Connection,
    PositionConflict,
    ViewDatabase,
    ensure_schema,
    is_missing_table,
    live_generation,
    positions,
    table_name,
)

log = logging.getLogger(__name__)

PROJECTION_POSITION = Gauge(
    "lifecycle_projection_position", "Last notification id applied to the views", ["view"]
)
PROJECTION_LAG = Gauge(
    "lifecycle_projection_lag", "Notifications in the store not yet in the views", ["view"]
)

#: Errors worth retrying: the database went away, a lock timed out, a concurrent writer.
TRANSIENT: tuple[type[BaseException], ...] = (
    PositionConflict,
    sqlite3.OperationalError,
    psycopg.OperationalError,
    OperationalError,
    InterfaceError,
)

#: Which per-day counter an accepted event increments.
DAILY_KIND: dict[type[Provider.Event], str] = {
    Provider.Applied: "applied",
    Provider.Reapplied: "applied",
    Provider.Admitted: "admitted",
    Provider.Exited: "exited",
    Provider.Expelled: "expelled",
    Provider.ApplicationDeclined: "declined",
}


def event_clauses(event: Provider.Event) -> list[str]:
    """The rulebook clauses an accepted event itself cites (for the timeline)."""
    data = event.data
    if isinstance(event, Provider.ViolationRecorded | Provider.DepositDeducted):
        return [str(data["clause"])]
    if isinstance(event, Provider.Expelled):
        return [str(data["ground"]), *(str(c) for c in data.get("violations") or [])]
    if isinstance(event, Provider.ApplicationDeclined):
        return [str(c) for c in data.get("clauses") or []]
    return []


def _record_time(record: InboundRecord.Received) -> tuple[str | None, Any]:
    """The business time and day of a record's event, when it was parsed."""
    event = record.event or {}
    raw = event.get("time")
    if not isinstance(raw, str):
        return None, None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None, None
    if moment.tzinfo is None:
        return None, None
    return moment.isoformat(), d.business_day(moment)


@dataclass
class Changes:
    """What one batch does to the views."""

    first: int
    last: int
    touched: dict[str, Provider] = field(default_factory=dict)
    before: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    milestones: dict[str, int] = field(default_factory=dict)  # how many before the batch
    timeline: list[tuple[Any, ...]] = field(default_factory=list)
    inbox: list[tuple[Any, ...]] = field(default_factory=list)
    resubmissions: Counter[str] = field(default_factory=Counter)
    daily: Counter[tuple[Any, str]] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)


def _key(p: Provider | None) -> tuple[str, str] | None:
    if p is None or p.status is None:
        return None
    return ((p.application or {}).get("service_city") or "", p.status)


class Projection:
    """Applies notifications to cached aggregates; knows nothing about SQL."""

    def __init__(self, app: ProviderLifecycle, cache_size: int = 100_000) -> None:
        self.app = app
        self.cache_size = cache_size
        self._cache: OrderedDict[UUID, Provider] = OrderedDict()
        self.loads = 0  # aggregates loaded from the repository (cache misses)

    def reset(self) -> None:
        self._cache.clear()

    def _aggregate(self, event: Provider.Event) -> Provider | None:
        if isinstance(event, Aggregate.Created):
            return None
        cached = self._cache.get(event.originator_id)
        if cached is not None and cached.version == event.originator_version - 1:
            return cached
        self.loads += 1
        provider: Provider = self.app.repository.get(
            event.originator_id, version=event.originator_version - 1
        )
        return provider

    def _remember(self, provider: Provider) -> None:
        self._cache[provider.id] = provider
        self._cache.move_to_end(provider.id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def apply(self, notifications: Sequence[Notification]) -> Changes:
        changes = Changes(notifications[0].id, notifications[-1].id)
        mapper = self.app.mapper
        for notification in notifications:
            event = mapper.to_domain_event(notification)
            if isinstance(event, Provider.Event):
                self._provider_event(notification.id, event, changes)
            elif isinstance(event, InboundRecord.Received):
                self._received(notification.id, event, changes)
            elif isinstance(event, InboundRecord.Resubmitted):
                changes.resubmissions[str(event.originator_id)] += 1
        return changes

    def _provider_event(self, nid: int, event: Provider.Event, changes: Changes) -> None:
        before = self._aggregate(event)
        before_key = _key(before)  # before ``mutate`` changes the cached object in place
        before_milestones = len(before.milestones) if before is not None else -1
        provider = event.mutate(before)
        assert isinstance(provider, Provider)
        uscc = provider.uscc
        if uscc not in changes.touched:
            changes.before[uscc] = before_key
            changes.milestones[uscc] = before_milestones
        changes.touched[uscc] = provider
        self._remember(provider)
        changes.outcomes["accepted"] += 1
        kind = DAILY_KIND.get(type(event))
        if kind is not None:
            changes.daily[(event.business_date, kind)] += 1
        changes.timeline.append(
            (
                uscc,
                nid,
                event.originator_version,
                event.ce_id,
                event.WIRE_TYPE,
                event.timestamp.isoformat(),
                event.business_date,
                d.iso_utc(event.recorded_at),
                "accepted",
                "[]",
                None,
                d.dumps(event_clauses(event)),
                event.ce_source,
            )
        )

    def _received(self, nid: int, record: InboundRecord.Received, changes: Changes) -> None:
        changes.outcomes[record.outcome] += 1
        codes = d.dumps(list(record.codes))
        if record.outcome in ("refused", "malformed"):
            changes.inbox.append(
                (
                    str(record.originator_id),
                    nid,
                    record.outcome,
                    record.position,
                    record.ce_id,
                    record.subject,
                    record.event_type,
                    codes,
                    record.reason,
                    d.iso_utc(record.recorded_at),
                    0,
                )
            )
        if record.subject:
            when, day = _record_time(record)
            source = (record.event or {}).get("source")
            changes.timeline.append(
                (
                    record.subject,
                    nid,
                    None,
                    record.ce_id,
                    record.event_type,
                    when,
                    day,
                    d.iso_utc(record.recorded_at),
                    record.outcome,
                    codes,
                    record.reason,
                    "[]",
                    source if isinstance(source, str) else None,
                )
            )


# --- writing ----------------------------------------------------------------------------


def _insert_sql(generation: int, table: str) -> str:
    t = TABLE_BY_NAME[table]
    cols = t.column_names
    return (
        f"INSERT INTO {table_name(generation, table)} ({', '.join(cols)}) "
        f"VALUES ({', '.join('?' for _ in cols)})"
    )


def _upsert_sql(generation: int, table: str, additive: Sequence[str] = ()) -> str:
    t = TABLE_BY_NAME[table]
    name = table_name(generation, table)
    updates = ", ".join(
        f"{c} = {name}.{c} + excluded.{c}" if c in additive else f"{c} = excluded.{c}"
        for c in t.column_names
        if c not in t.key
    )
    return (
        f"{_insert_sql(generation, table)} ON CONFLICT ({', '.join(t.key)}) DO UPDATE SET {updates}"
    )


def provider_row(
    p: Provider, segments_changed: bool = True
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]] | None, list[tuple[Any, ...]]]:
    """The provider row, its eligibility segments (``None`` when its milestones did not
    change, so neither did they) and its requirement rows."""
    state = d.provider_state(p, p.modified_on)
    r = standing(p.milestones)
    row = (
        p.uscc,
        state["company_name"],
        state["city"],
        state["status"],
        state["deposit_balance_fen"],
        state["deposit_shortfall_fen"],
        state["violations"],
        r.tenure_open,
        r.permanent,
        r.manual_review,
        r.blocked_until,
        r.requires_a11,
        r.clause,
        p.version,
        state["updated_at"],
        d.dumps(state),
    )
    segments = (
        [
            (p.uscc, n, s.valid_from, s.valid_to, s.can_apply, s.clause)
            for n, s in enumerate(d.eligibility_segments(p.milestones))
        ]
        if segments_changed
        else None
    )
    requirements = [
        (p.uscc, n, q["clause"], q["reason"], q["who"], q["by"], q["until"])
        for n, q in enumerate(state["requirements"])
    ]
    return row, segments, requirements


class ViewWriter:
    """Writes one batch's changes and advances every view's position, in one transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _dates(self, rows: list[tuple[Any, ...]], *indexes: int) -> list[tuple[Any, ...]]:
        if self.conn.dialect != "sqlite":
            return rows
        out = []
        for row in rows:
            values = list(row)
            for i in indexes:
                if values[i] is not None and not isinstance(values[i], str):
                    values[i] = values[i].isoformat()
            out.append(tuple(values))
        return out

    def _delete_for(self, generation: int, table: str, usccs: list[str]) -> None:
        name = table_name(generation, table)
        if self.conn.dialect == "postgresql":
            self.conn.execute(f"DELETE FROM {name} WHERE uscc = ANY(?)", (usccs,))
        else:
            self.conn.executemany(f"DELETE FROM {name} WHERE uscc = ?", [(u,) for u in usccs])

    def write(self, generation: int, changes: Changes, expected: int) -> None:
        conn = self.conn
        with conn.transaction():
            # Compare-and-set first: a concurrent projector waits here, then fails.
            for view in VIEWS:
                moved = conn.execute_count(
                    "UPDATE view_tracking SET position=? "
                    "WHERE generation=? AND view=? AND position=?",
                    (changes.last, generation, view, expected),
                )
                if moved != 1:
                    raise PositionConflict(
                        f"view {view} of generation {generation} is no longer at {expected}"
                    )
            self._providers(generation, changes)
            self._stats(generation, changes)
            self._inbox(generation, changes)
            conn.copy_rows(
                table_name(generation, "timeline"),
                TABLE_BY_NAME["timeline"].column_names,
                self._dates(changes.timeline, 6),
            )

    def _providers(self, generation: int, changes: Changes) -> None:
        if not changes.touched:
            return
        rows, segments, requirements = [], [], []
        resegment: list[str] = []
        for uscc, provider in changes.touched.items():
            milestones = changes.milestones.get(uscc)
            row, segs, reqs = provider_row(provider, milestones != len(provider.milestones))
            rows.append(row)
            if segs is not None:
                resegment.append(uscc)
                segments.extend(segs)
            requirements.extend(reqs)
        conn = self.conn
        self._upsert_providers(generation, self._dates(rows, 10))
        self._delete_for(generation, "eligibility", resegment)
        conn.copy_rows(
            table_name(generation, "eligibility"),
            TABLE_BY_NAME["eligibility"].column_names,
            self._dates(segments, 2, 3),
        )
        self._delete_for(generation, "requirement", list(changes.touched))
        conn.copy_rows(
            table_name(generation, "requirement"),
            TABLE_BY_NAME["requirement"].column_names,
            self._dates(requirements, 5, 6),
        )

    def _upsert_providers(self, generation: int, rows: list[tuple[Any, ...]]) -> None:
        conn = self.conn
        if conn.dialect == "sqlite":
            conn.executemany(_upsert_sql(generation, "provider"), rows)
            return
        # COPY into a session-local staging table, then one set-based upsert.
        target = table_name(generation, "provider")
        columns = TABLE_BY_NAME["provider"].column_names
        conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS pv_stage_provider (LIKE {target}) "
            "ON COMMIT DELETE ROWS"
        )
        conn.copy_rows("pv_stage_provider", columns, rows)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "uscc")
        conn.execute(
            f"INSERT INTO {target} ({', '.join(columns)}) "
            f"SELECT {', '.join(columns)} FROM pv_stage_provider "
            f"ON CONFLICT (uscc) DO UPDATE SET {updates}"
        )

    def _stats(self, generation: int, changes: Changes) -> None:
        conn = self.conn
        deltas: Counter[tuple[str, str]] = Counter()
        for uscc, provider in changes.touched.items():
            old, new = changes.before.get(uscc), _key(provider)
            if old == new:
                continue
            if old is not None:
                deltas[old] -= 1
            if new is not None:
                deltas[new] += 1
        counts = table_name(generation, "counts")
        conn.executemany(
            _upsert_sql(generation, "counts", additive=("n",)),
            [(city, status, n) for (city, status), n in sorted(deltas.items()) if n],
        )
        if deltas:
            conn.execute(f"DELETE FROM {counts} WHERE n = 0")
        conn.executemany(
            _upsert_sql(generation, "daily", additive=("n",)),
            self._dates([(day, kind, n) for (day, kind), n in sorted(changes.daily.items())], 0),
        )
        conn.executemany(
            _upsert_sql(generation, "outcomes", additive=("n",)),
            sorted(changes.outcomes.items()),
        )

    def _inbox(self, generation: int, changes: Changes) -> None:
        conn = self.conn
        conn.copy_rows(
            table_name(generation, "inbox"), TABLE_BY_NAME["inbox"].column_names, changes.inbox
        )
        conn.executemany(
            f"UPDATE {table_name(generation, 'inbox')} "
            "SET resubmissions = resubmissions + ? WHERE record_id = ?",
            [(n, record) for record, n in sorted(changes.resubmissions.items())],
        )


# --- the projector ----------------------------------------------------------------------


class Projector:
    """Follows the notification log into the views of one generation, exactly once.

    ``generation=None`` follows the live generation (re-read before every batch, so a
    rebuild's switch-over is picked up); a number fills that generation only.
    """

    def __init__(
        self,
        app: ProviderLifecycle,
        db: ViewDatabase,
        *,
        generation: int | None = None,
        batch_size: int = 1000,
        idle_seconds: float = 0.2,
        cache_size: int = 100_000,
    ) -> None:
        self.app = app
        self.db = db
        self.fixed_generation = generation
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.projection = Projection(app, cache_size)
        self._conn: Connection | None = None
        self._generation: int | None = None
        self._position: int | None = None

    # state

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = self.db.connect()
        return self._conn

    @property
    def generation(self) -> int:
        """The generation this projector writes (the live one unless fixed)."""
        if self.fixed_generation is not None:
            return self.fixed_generation
        try:
            return live_generation(self.conn)
        except Exception as exc:
            if not (isinstance(exc, LookupError) or is_missing_table(exc)):
                raise
        ensure_schema(self.db)  # a store without views yet: generation 1
        return live_generation(self.conn)

    @property
    def position(self) -> int:
        """The views' common position in the current generation."""
        generation = self.generation
        if self._generation != generation or self._position is None:
            self._sync(generation)
        assert self._position is not None
        return self._position

    def head(self) -> int:
        return int(self.app.process_recorder.max_notification_id() or 0)

    def _sync(self, generation: int) -> None:
        stored = positions(self.conn, generation)
        missing = [v for v in VIEWS if v not in stored]
        if missing:
            raise LookupError(f"generation {generation} has no tracking for {missing}")
        values = {stored[v] for v in VIEWS}
        if len(values) != 1:
            raise RuntimeError(
                f"the views of generation {generation} are at different positions "
                f"({stored}); run `lifecycle projections rebuild`"
            )
        if self._generation != generation:
            self.projection.reset()
        self._generation = generation
        self._position = values.pop()

    def reset(self) -> None:
        """Forget the cache and the position (after a failed or conflicting batch)."""
        self.projection.reset()
        self._position = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # work

    def step(self, until: int | None = None) -> int:
        """Project one batch; how many notifications it held (0: caught up)."""
        position = self.position
        generation = self._generation
        assert generation is not None
        if until is not None and position >= until:
            return 0
        notifications = self.app.process_recorder.select_notifications(
            position + 1, self.batch_size, stop=until
        )
        if not notifications:
            return 0
        try:
            changes = self.projection.apply(notifications)
            ViewWriter(self.conn).write(generation, changes, position)
        except BaseException:
            # The cache may hold events whose rows were never committed.
            self.reset()
            raise
        self._position = changes.last
        if self.fixed_generation is None:
            for view in VIEWS:
                PROJECTION_POSITION.labels(view).set(changes.last)
        return len(notifications)

    def catch_up(
        self,
        until: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Project until the head (or ``until``); how many notifications were applied.

        ``progress(position, head)`` is called after every batch.
        """
        total = 0
        conflicts = 0
        while True:
            try:
                n = self.step(until)
            except PositionConflict:
                conflicts += 1
                if conflicts > 100:
                    raise
                continue
            if n == 0:
                break
            total += n
            if progress is not None:
                progress(self.position, until if until is not None else self.head())
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the store until ``stop`` is set; transient errors are retried with backoff."""
        backoff = self.idle_seconds
        while not stop.is_set():
            try:
                n = await asyncio.to_thread(self.step)
                backoff = self.idle_seconds
                if self.fixed_generation is None:
                    lag = max(0, await asyncio.to_thread(self.head) - (self._position or 0))
                    for view in VIEWS:
                        PROJECTION_LAG.labels(view).set(lag)
            except TRANSIENT as exc:
                log.warning("projection batch failed, retrying: %s", exc)
                n = 0
                backoff = min(max(backoff * 2, 0.1), 5.0)
            except Exception:
                # Not expected: keep the rest of the service running, show it in the lag.
                log.exception("projection batch failed; retrying with backoff")
                n = 0
                backoff = min(max(backoff * 2, 0.5), 30.0)
            if n == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
