"""Writing a batch's changes into one generation of the views, in the caller's transaction.

Every value is written in a form its column can hold, whatever a stored event carries
(stores written before the 1.1 JSON rules may hold them): U+0000, which PostgreSQL ``text``
cannot hold, becomes U+FFFD; an integer beyond the column's range (a deposit of 10^20 fen)
is held at the range's end (the row's ``doc`` keeps the exact value); free text in a key
column is bounded (:func:`~projections.tables.bounded_key`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from lifecycle.eligibility import standing
from lifecycle.provider import Provider
from projections import documents as d
from projections.database import Connection, PositionConflict, utc_now_text
from projections.projection import Changes, city_status
from projections.tables import BOUNDED_KEYS, TABLE_BY_NAME, VIEWS, bounded_key, table_name

_RANGES = {"BIGINT": (-(2**63), 2**63 - 1), "INT": (-(2**31), 2**31 - 1)}


def _checks(table: str) -> tuple[tuple[int, str, int, int], ...]:
    """Per column of ``table`` that may need a storable form: (index, ``"key"`` (bounded
    free text) | ``"text"`` | ``"int"``, and an integer column's range)."""
    checks: list[tuple[int, str, int, int]] = []
    keys = BOUNDED_KEYS.get(table, ())
    for i, (column, spec) in enumerate(TABLE_BY_NAME[table].columns):
        kind = spec.split(" ", 1)[0]
        if column in keys:
            checks.append((i, "key", 0, 0))
        elif kind == "TEXT":
            checks.append((i, "text", 0, 0))
        elif kind in _RANGES:
            checks.append((i, "int", *_RANGES[kind]))
    return tuple(checks)


_CHECKS = {name: _checks(name) for name in TABLE_BY_NAME}


def storable_text(value: str) -> str:
    """Text a ``text`` column can hold: U+0000 (not allowed in PostgreSQL) as U+FFFD."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def storable(table: str, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``rows`` of ``table`` with every value in a form its column holds (see the module
    docstring); a row is copied only when one of its values changes."""
    checks = _CHECKS[table]
    out: list[tuple[Any, ...]] = []
    append = out.append
    for row in rows:
        changed: list[Any] | None = None
        for i, kind, low, high in checks:
            value = row[i]
            new: Any
            kind_of = type(value)
            if kind_of is str:
                if kind == "key":
                    new = bounded_key(storable_text(value))
                elif "\x00" in value:
                    new = storable_text(value)
                else:
                    continue
            elif kind_of is int and kind == "int" and not low <= value <= high:
                new = low if value < low else high
            else:
                continue
            if new is not value:
                if changed is None:
                    changed = list(row)
                changed[i] = new
        append(row if changed is None else tuple(changed))
    return out


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

    def write(
        self,
        generation: int,
        changes: Changes,
        expected: int,
        set_aside: tuple[int, str | None, str] | None = None,
    ) -> None:
        """Write ``changes`` and move every view from ``expected`` to ``changes.last``.

        ``set_aside`` (notification id, topic, error): that notification could not be
        projected; it is listed in ``view_set_aside`` in the same transaction.
        """
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
                storable("timeline", self._dates(changes.timeline, 6)),
            )
            if set_aside is not None:
                nid, topic, error = set_aside
                conn.execute(
                    "INSERT INTO view_set_aside (generation, nid, topic, error, at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (generation, nid, topic, storable_text(error), utc_now_text()),
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
        self._upsert_providers(generation, storable("provider", self._dates(rows, 10)))
        self._delete_for(generation, "eligibility", resegment)
        conn.copy_rows(
            table_name(generation, "eligibility"),
            TABLE_BY_NAME["eligibility"].column_names,
            storable("eligibility", self._dates(segments, 2, 3)),
        )
        self._delete_for(generation, "requirement", list(changes.touched))
        conn.copy_rows(
            table_name(generation, "requirement"),
            TABLE_BY_NAME["requirement"].column_names,
            storable("requirement", self._dates(requirements, 5, 6)),
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
        # Two long cities may share a bounded key: their deltas are summed before the upsert.
        bounded: Counter[tuple[Any, ...]] = Counter()
        for row in storable("counts", [(c, s, n) for (c, s), n in sorted(deltas.items()) if n]):
            bounded[row[:2]] += row[2]
        conn.executemany(
            _upsert_sql(generation, "counts", additive=("n",)),
            [(*key, n) for key, n in bounded.items() if n],
        )
        if deltas:
            conn.execute(f"DELETE FROM {counts} WHERE n = 0")
        conn.executemany(
            _upsert_sql(generation, "daily", additive=("n",)),
            storable(
                "daily",
                self._dates(
                    [(day, kind, n) for (day, kind), n in sorted(changes.daily.items())], 0
                ),
            ),
        )
        conn.executemany(
            _upsert_sql(generation, "outcomes", additive=("n",)),
            storable("outcomes", sorted(changes.outcomes.items())),
        )

    def _inbox(self, generation: int, changes: Changes) -> None:
        conn = self.conn
        conn.copy_rows(
            table_name(generation, "inbox"),
            TABLE_BY_NAME["inbox"].column_names,
            storable("inbox", changes.inbox),
        )
        conn.executemany(
            f"UPDATE {table_name(generation, 'inbox')} "
            "SET resubmissions = resubmissions + ? WHERE record_id = ?",
            [(n, record) for record, n in sorted(changes.resubmissions.items())],
        )
