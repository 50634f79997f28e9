"""Writing a batch's changes into one generation of the views, in the caller's transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from lifecycle.eligibility import standing
from lifecycle.provider import Provider
from projections import documents as d
from projections.database import Connection, PositionConflict
from projections.projection import Changes, city_status
from projections.tables import TABLE_BY_NAME, VIEWS, table_name


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
            old, new = changes.before.get(uscc), city_status(provider)
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
