"""``SqlReadModel``: the :class:`~projections.model.ReadModel` port over the projected views.

Every call reads the ``view_generation`` pointer first, so a rebuild's switch-over is seen
by the next call; a call that raced a dropped generation is retried once on the new one.
Dates are evaluated at read time: ``can_apply`` for any date comes from the eligibility
segments (exact, see ``documents.eligibility_segments``), the eligibility document from
the domain's ``eligibility`` over the stored milestones. Time travel (``as_of``) replays
the provider from the store (``ProviderLifecycle.provider_as_of``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from lifecycle.application import ProviderLifecycle
from lifecycle.rules import business_date
from projections import documents as d
from projections.database import Connection, ViewDatabase, is_missing_table
from projections.generations import ensure_schema, generations, live_generation, positions
from projections.model import InboxFilter, Page, ProviderFilter, SortKey, ViewStatus
from projections.tables import VIEWS, bounded_equals, prefix, table_name

T = TypeVar("T")

SORTS: dict[str, str] = {
    "uscc": "p.uscc",
    # Free text is indexed by its prefix (projections/tables.py): sort by it first.
    "company_name": f"{prefix('p.company_name')}, p.company_name, p.uscc",
    "city": f"{prefix('p.city')}, p.city, p.uscc",
    "status": "p.status, p.uscc",
    "updated_at": "p.updated_at, p.uscc",
    "-updated_at": "p.updated_at DESC, p.uscc",
}

TIMELINE_COLUMNS = (
    "nid, sequence, ce_id, type, time, day, recorded_at, outcome, codes, reason, clauses, source"
)
INBOX_COLUMNS = (
    "record_id, nid, outcome, position, ce_id, subject, type, codes, reason, recorded_at, "
    "resubmissions"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _day(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _iso(value: Any) -> str | None:
    day = _day(value)
    return day.isoformat() if day is not None else None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def timeline_item(row: tuple[Any, ...]) -> dict[str, Any]:
    nid, sequence, ce_id, type_, time, day, recorded_at, outcome, codes, reason, clauses, source = (
        row
    )
    item: dict[str, Any] = {
        "position": int(nid),
        "id": ce_id,
        "type": type_,
        "time": time,
        "day": _iso(day),
        "recorded_at": recorded_at,
        "outcome": outcome,
        "codes": json.loads(codes),
        "reason": reason,
        "clauses": json.loads(clauses),
        "source": source,
    }
    if sequence is not None:
        item["sequence"] = int(sequence)
    return item


def inbox_item(row: tuple[Any, ...]) -> dict[str, Any]:
    record, nid, outcome, position, ce_id, subject, type_, codes, reason, recorded, resub = row
    return {
        "record": record,
        "outcome": outcome,
        "position": position,
        "notification": int(nid),
        "id": ce_id,
        "subject": subject,
        "type": type_,
        "codes": json.loads(codes),
        "reason": reason,
        "recorded_at": recorded,
        "resubmissions": int(resub),
    }


class SqlReadModel:
    """Queries over the views (reads only); implements ``projections.model.ReadModel``."""

    def __init__(
        self,
        db: ViewDatabase,
        app: ProviderLifecycle,
        *,
        clock: Callable[[], datetime] = _utc_now,
        owns_app: bool = False,
    ) -> None:
        self.db = db
        self.app = app
        self.clock = clock
        self.owns_app = owns_app  # close ``app`` with the read model

    def today(self) -> date:
        return business_date(self.clock())

    def _read(self, query: Callable[[Connection, int], T]) -> T:
        """Run ``query(conn, generation)`` on the live generation.

        Retried once after a switch-over dropped the generation it started on, and once
        after creating the views' tables on a store that has none yet.
        """
        for attempt in range(3):
            with self.db.reader() as conn:
                try:
                    generation = live_generation(conn)
                    return query(conn, generation)
                except Exception as exc:
                    if attempt < 2 and (isinstance(exc, LookupError) or is_missing_table(exc)):
                        ensure_schema(self.db)
                        continue
                    raise
        raise AssertionError("unreachable")

    @property
    def generation(self) -> int:
        return self._read(lambda _conn, generation: generation)

    # --- providers ------------------------------------------------------------------------

    def providers(
        self,
        f: ProviderFilter,
        *,
        offset: int = 0,
        limit: int = 50,
        sort: SortKey = "uscc",
    ) -> Page:
        as_of = f.as_of or self.today()
        order = SORTS.get(sort)
        if order is None:
            raise ValueError(f"unknown sort {sort!r}; one of {sorted(SORTS)}")

        def query(conn: Connection, g: int) -> Page:
            where: list[str] = ["1=1"]
            params: list[Any] = []
            if f.status:
                where.append("p.status = ?")
                params.append(f.status)
            if f.city:
                where.append(bounded_equals(conn.dialect, "p.city"))
                params += [f.city, f.city]
            if f.q:
                where.append(
                    "(lower(p.company_name) LIKE lower(?) ESCAPE '\\' "
                    "OR upper(p.uscc) LIKE upper(?) ESCAPE '\\')"
                )
                params += [_like(f.q), _like(f.q)]
            if f.can_apply is not None:
                # Segment.covers: the last segment (valid_to = LAST_DAY) holds that day too.
                where.append(
                    f"EXISTS (SELECT 1 FROM {table_name(g, 'eligibility')} e "
                    "WHERE e.uscc = p.uscc AND e.valid_from <= ? "
                    "AND (? < e.valid_to OR e.valid_to = ?) AND e.can_apply = ?)"
                )
                params += [as_of, as_of, d.LAST_DAY, f.can_apply]
            clause = " AND ".join(where)
            provider = table_name(g, "provider")
            total = conn.execute(f"SELECT COUNT(*) FROM {provider} p WHERE {clause}", params)
            rows = conn.execute(
                f"SELECT p.doc FROM {provider} p WHERE {clause} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, max(0, limit), max(0, offset)],
            )
            items = [d.provider_document(json.loads(doc), as_of) for (doc,) in rows]
            return Page(items, int(total[0][0]), offset, limit)

        return self._read(query)

    def provider(self, uscc: str, as_of: date | None = None) -> dict[str, Any] | None:
        """The provider document; with ``as_of``, replayed from the store as of that date.

        ``None`` only when nothing at all was recorded for the USCC. One with records but no
        accepted event (by ``as_of``) has a document with ``status`` null
        (:func:`~projections.documents.unrecorded_state`), as ``lifecycle evaluate`` says.
        """
        if as_of is not None:
            return self._provider_as_of(uscc, as_of)
        today = self.today()

        def query(conn: Connection, g: int) -> dict[str, Any] | None:
            rows = conn.execute(
                f"SELECT doc FROM {table_name(g, 'provider')} WHERE uscc = ?", (uscc,)
            )
            timeline = self._timeline(conn, g, uscc)
            if rows:
                state = json.loads(rows[0][0])
            elif timeline:
                state = d.unrecorded_state(uscc)  # only refused, malformed or duplicate
            else:
                return None
            return d.provider_document(state, today, timeline)

        return self._read(query)

    def _provider_as_of(self, uscc: str, as_of: date) -> dict[str, Any] | None:
        provider = self.app.provider_as_of(uscc, as_of)
        everything = self.timeline(uscc)
        timeline = _until(everything, as_of)
        if provider is None:
            if not everything and self.app.provider(uscc) is None:
                return None  # nothing at all was recorded for it
            return d.provider_document(d.unrecorded_state(uscc), as_of, timeline)
        accepted = [t for t in timeline if t["outcome"] == "accepted"]
        updated = accepted[-1]["time"] if accepted else None
        state = d.provider_state(provider, None)
        state["updated_at"] = updated
        return d.provider_document(state, as_of, timeline)

    def _timeline(
        self, conn: Connection, g: int, uscc: str, as_of: date | None = None
    ) -> list[dict[str, Any]]:
        items = [
            timeline_item(row)
            for row in conn.execute(
                f"SELECT {TIMELINE_COLUMNS} FROM {table_name(g, 'timeline')} "
                "WHERE uscc = ? ORDER BY nid",
                (uscc,),
            )
        ]
        return items if as_of is None else _until(items, as_of)

    def timeline(self, uscc: str, as_of: date | None = None) -> list[dict[str, Any]]:
        """Every inbound record of the provider in store order (business day ≤ ``as_of``)."""
        return self._read(lambda conn, g: self._timeline(conn, g, uscc, as_of))

    def requirements(
        self,
        *,
        who: str | None = None,
        clause: str | None = None,
        as_of: date | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page:
        """Open requirements across providers (dated ones first, soonest first)."""
        day = as_of or self.today()

        def query(conn: Connection, g: int) -> Page:
            where = ["(r.until_day IS NULL OR r.until_day > ?)"]
            params: list[Any] = [day]
            if who:
                where.append("r.who = ?")
                params.append(who)
            if clause:
                where.append("r.clause = ?")
                params.append(clause)
            req = table_name(g, "requirement")
            prov = table_name(g, "provider")
            condition = " AND ".join(where)
            total = conn.execute(f"SELECT COUNT(*) FROM {req} r WHERE {condition}", params)
            rows = conn.execute(
                f"SELECT r.uscc, p.company_name, p.city, p.status, r.clause, r.reason, r.who, "
                f"r.by_day FROM {req} r JOIN {prov} p ON p.uscc = r.uscc WHERE {condition} "
                "ORDER BY CASE WHEN r.by_day IS NULL THEN 1 ELSE 0 END, r.by_day, r.uscc, r.n "
                "LIMIT ? OFFSET ?",
                [*params, max(0, limit), max(0, offset)],
            )
            items = [
                {
                    "uscc": u,
                    "company_name": name,
                    "city": city,
                    "status": status,
                    "clause": c,
                    "reason": reason,
                    "who": w,
                    "by": _iso(by),
                }
                for u, name, city, status, c, reason, w, by in rows
            ]
            return Page(items, int(total[0][0]), offset, limit)

        return self._read(query)

    # --- stats and inbox ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        def query(conn: Connection, g: int) -> dict[str, Any]:
            by_status: dict[str, int] = {}
            by_city: dict[str, int] = {}
            by_city_status: dict[str, dict[str, int]] = {}
            for city, status, n in conn.execute(
                f"SELECT city, status, n FROM {table_name(g, 'counts')} ORDER BY city, status"
            ):
                by_status[status] = by_status.get(status, 0) + int(n)
                by_city[city] = by_city.get(city, 0) + int(n)
                by_city_status.setdefault(city, {})[status] = int(n)
            days: dict[str, dict[str, Any]] = {}
            for day, kind, n in conn.execute(
                f"SELECT day, kind, n FROM {table_name(g, 'daily')} ORDER BY day, kind"
            ):
                key = str(_iso(day))
                entry = days.setdefault(
                    key,
                    {
                        "day": key,
                        "applied": 0,
                        "admitted": 0,
                        "exited": 0,
                        "expelled": 0,
                        "declined": 0,
                    },
                )
                entry[kind] = int(n)
            outcomes = dict.fromkeys(("accepted", "refused", "malformed", "duplicate"), 0)
            for outcome, n in conn.execute(f"SELECT outcome, n FROM {table_name(g, 'outcomes')}"):
                outcomes[outcome] = int(n)
            return {
                "by_status": dict(sorted(by_status.items())),
                "by_city": dict(sorted(by_city.items())),
                "by_city_status": by_city_status,
                "per_day": list(days.values()),
                "outcomes": {"consumed": sum(outcomes.values()), **outcomes},
            }

        return self._read(query)

    def inbox(self, f: InboxFilter, *, offset: int = 0, limit: int = 50) -> Page:
        def query(conn: Connection, g: int) -> Page:
            where: list[str] = ["1=1"]
            params: list[Any] = []
            for column, value in (
                ("outcome", f.outcome),
                ("type", f.type),
            ):
                if value:
                    where.append(f"{column} = ?")
                    params.append(value)
            if f.subject:
                where.append(bounded_equals(conn.dialect, "subject"))
                params += [f.subject, f.subject]
            if f.code:
                where.append("codes LIKE ? ESCAPE '\\'")
                params.append(_like(json.dumps(f.code)))
            condition = " AND ".join(where)
            inbox = table_name(g, "inbox")
            total = conn.execute(f"SELECT COUNT(*) FROM {inbox} WHERE {condition}", params)
            rows = conn.execute(
                f"SELECT {INBOX_COLUMNS} FROM {inbox} WHERE {condition} "
                "ORDER BY nid DESC LIMIT ? OFFSET ?",
                [*params, max(0, limit), max(0, offset)],
            )
            return Page([inbox_item(r) for r in rows], int(total[0][0]), offset, limit)

        return self._read(query)

    # --- operations -----------------------------------------------------------------------

    def head(self) -> int:
        return int(self.app.process_recorder.max_notification_id() or 0)

    def status(self, *, all_generations: bool = False) -> list[ViewStatus]:
        """Each view's position, the store's head and lag (live generation first)."""
        head = self.head()

        def query(conn: Connection, g: int) -> list[ViewStatus]:
            chosen = [g]
            if all_generations:
                chosen += [
                    gen for gen, state, _ in generations(conn) if gen != g and state != "retired"
                ]
            out = []
            for gen in chosen:
                stored = positions(conn, gen)
                out += [ViewStatus(v, stored.get(v, 0), head, gen) for v in VIEWS]
            return out

        return self._read(query)

    def ping(self) -> None:
        self.head()
        self._read(lambda conn, g: conn.execute("SELECT 1"))

    def close(self) -> None:
        self.db.close()
        if self.owns_app:
            self.app.close()


def _until(items: list[dict[str, Any]], as_of: date) -> list[dict[str, Any]]:
    """The timeline items of business day ≤ ``as_of`` (a record without one: its recording day)."""
    cutoff = as_of.isoformat()
    return [
        t
        for t in items
        if (t["day"] if t["day"] is not None else _recorded_day(t["recorded_at"])) <= cutoff
    ]


def _recorded_day(recorded_at: str) -> str:
    return business_date(datetime.fromisoformat(recorded_at.replace("Z", "+00:00"))).isoformat()
