"""Tamper evidence on the real stores: every kind of change made directly in the database
(SQL, as an insider would) is detected by ``verify`` and named (stream, first broken event).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import psycopg
import pytest

from audit.seal import seal, stored_seals
from audit.verify import Report, read_seals, verify, write_seals
from lifecycle.application import InboundMessage, ProviderLifecycle
from lifecycle.records import record_id
from lifecycle.uscc import provider_id
from store.audit_port import AuditStore
from store.chain import event_hash
from store.url import persistence_env
from tests.factories import (
    admitted,
    applied,
    exited,
    line,
    onboard,
    uscc,
    violation,
)

pytestmark = pytest.mark.integration

U = uscc(801)  # the provider whose stream is tampered with: 6 events
V = uscc(802)  # a bystander that must stay intact
REFUSED_AT = "kafka:t:0:7"  # a refused record (subject V)
MALFORMED_AT = "kafka:t:0:8"  # a malformed record without subject


class Db(Protocol):
    """Direct access to the store's tables, bypassing the application."""

    def one(self, sql: str, *params: Any) -> tuple[Any, ...]: ...

    def run(self, sql: str, *params: Any) -> None: ...

    events: str
    chain: str
    seals: str


class SqliteDb:
    def __init__(self, path: str) -> None:
        self.path = path
        self.events, self.chain, self.seals = (
            "stored_events",
            "stored_events_chain",
            "stored_events_seals",
        )

    def _sql(self, sql: str) -> str:
        return sql.replace("%s", "?").replace("notification_id_of_events", "rowid")

    def _param(self, p: Any) -> Any:
        return p.hex if isinstance(p, UUID) else p

    def one(self, sql: str, *params: Any) -> tuple[Any, ...]:
        with sqlite3.connect(self.path) as conn:
            row = conn.execute(self._sql(sql), [self._param(p) for p in params]).fetchone()
            assert row is not None, sql
            return tuple(row)

    def run(self, sql: str, *params: Any) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute(self._sql(sql), [self._param(p) for p in params])


class PostgresDb:
    def __init__(self, url: str) -> None:
        self.url = url
        self.events, self.chain, self.seals = (
            "provider_lifecycle_events",
            "provider_lifecycle_events_chain",
            "provider_lifecycle_events_seals",
        )

    def one(self, sql: str, *params: Any) -> tuple[Any, ...]:
        with psycopg.connect(self.url) as conn:
            row = conn.execute(
                sql.replace("notification_id_of_events", "notification_id"), params
            ).fetchone()
            assert row is not None, sql
            return tuple(row)

    def run(self, sql: str, *params: Any) -> None:
        with psycopg.connect(self.url) as conn:
            conn.execute(sql.replace("notification_id_of_events", "notification_id"), params)


@dataclass
class Store:
    url: str
    db: Db
    opened: list[ProviderLifecycle] = field(default_factory=list)

    def app(self) -> ProviderLifecycle:
        return ProviderLifecycle(env=persistence_env(self.url))

    def audit(self) -> AuditStore:
        """A freshly opened store (nothing cached); kept open for the rest of the test."""
        app = self.app()
        self.opened.append(app)  # the recorder closes with its application
        recorder = app.recorder
        assert isinstance(recorder, AuditStore)
        return recorder


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        yield Store(f"sqlite:///{path}", SqliteDb(str(path)))
    else:
        url = request.getfixturevalue("postgres_store")
        yield Store(url, PostgresDb(url))


def populate(store: Store) -> None:
    """U: Applied, Admitted, DepositPaid, ViolationRecorded, Exited, Applied (6 events, two
    tenures); V: Applied, Admitted; a refused record (V) and a malformed one; 3 batches."""
    app = store.app()
    batches: list[list[dict[str, Any] | bytes]] = [
        [*onboard(U, "2025-01-01"), applied(V, "2025-01-01")],
        [violation(U, "2025-02-01"), exited(U, "2025-03-01"), admitted(V, "2025-01-02")],
        [admitted(V, "2025-01-03"), b"{nope", applied(U, "2025-10-01")],
    ]
    n = 0
    for batch in batches:
        messages = []
        for ev in batch:
            messages.append(InboundMessage(line(ev), f"kafka:t:0:{n}", None))
            n += 1
        app.process(messages)
    assert app.stats() == {
        "consumed": 10,
        "accepted": 8,
        "refused": 1,
        "malformed": 1,
        "duplicate": 0,
    }
    assert app.record(record_id(REFUSED_AT)).outcome == "refused"
    assert app.record(record_id(MALFORMED_AT)).outcome == "malformed"


U_ID = provider_id(U)


def _state(db: Db, version: int, oid: UUID = U_ID) -> bytes:
    row = db.one(
        f"SELECT state FROM {db.events} WHERE originator_id=%s AND originator_version=%s",
        oid,
        version,
    )
    return bytes(row[0])


def _flip(data: bytes) -> bytes:
    """Change one byte in the middle (a digit of the payload or a letter)."""
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _link(db: Db, version: int, oid: UUID = U_ID) -> tuple[bytes, bytes]:
    row = db.one(
        f"SELECT prev_hash, hash FROM {db.chain} WHERE originator_id=%s AND originator_version=%s",
        oid,
        version,
    )
    return bytes(row[0]), bytes(row[1])


def change_state_byte(db: Db) -> None:
    db.run(
        f"UPDATE {db.events} SET state=%s WHERE originator_id=%s AND originator_version=3",
        _flip(_state(db, 3)),
        U_ID,
    )


def change_topic(db: Db) -> None:
    db.run(
        f"UPDATE {db.events} SET topic=%s WHERE originator_id=%s AND originator_version=3",
        "lifecycle.provider:Provider.DepositDeducted",
        U_ID,
    )


def delete_event(db: Db) -> None:
    db.run(f"DELETE FROM {db.events} WHERE originator_id=%s AND originator_version=3", U_ID)


def delete_event_and_link(db: Db) -> None:
    delete_event(db)
    db.run(f"DELETE FROM {db.chain} WHERE originator_id=%s AND originator_version=3", U_ID)


def swap_contents(db: Db) -> None:
    s2, s3 = _state(db, 2), _state(db, 3)
    t2 = db.one(
        f"SELECT topic FROM {db.events} WHERE originator_id=%s AND originator_version=2", U_ID
    )[0]
    t3 = db.one(
        f"SELECT topic FROM {db.events} WHERE originator_id=%s AND originator_version=3", U_ID
    )[0]
    for version, (topic, state) in ((2, (t3, s3)), (3, (t2, s2))):
        db.run(
            f"UPDATE {db.events} SET topic=%s, state=%s "
            "WHERE originator_id=%s AND originator_version=%s",
            topic,
            state,
            U_ID,
            version,
        )


def swap_versions(db: Db) -> None:
    for old, new in ((2, 1000), (3, 2), (1000, 3)):
        db.run(
            f"UPDATE {db.events} SET originator_version=%s "
            "WHERE originator_id=%s AND originator_version=%s",
            new,
            U_ID,
            old,
        )


def insert_event_without_link(db: Db) -> None:
    db.run(
        f"INSERT INTO {db.events} (originator_id, originator_version, topic, state) "
        "VALUES (%s, 7, %s, %s)",
        U_ID,
        "lifecycle.provider:Provider.Admitted",
        _state(db, 2),
    )


def insert_forged_link(db: Db) -> None:
    """An inserted event with a link made up by someone who does not know the chain."""
    insert_event_without_link(db)
    nid = db.one(f"SELECT MAX(notification_id_of_events) FROM {db.events}")[0]
    fake = hashlib.sha256(b"forged").digest()
    db.run(
        f"INSERT INTO {db.chain} VALUES (%s, 7, %s, %s, %s, %s)",
        U_ID,
        nid,
        U,
        fake,
        hashlib.sha256(fake).digest(),
    )


def change_state_and_relink(db: Db) -> None:
    """An insider who knows the algorithm changes event 3 and recomputes the chain from
    there: the chain is consistent again; only the seal (kept off-system) shows it."""
    change_state_byte(db)
    prev, _ = _link(db, 3)
    for version in range(3, 7):
        row = db.one(
            f"SELECT topic, state FROM {db.events} "
            "WHERE originator_id=%s AND originator_version=%s",
            U_ID,
            version,
        )
        digest = event_hash(U_ID, version, row[0], bytes(row[1]), prev)
        db.run(
            f"UPDATE {db.chain} SET prev_hash=%s, hash=%s "
            "WHERE originator_id=%s AND originator_version=%s",
            prev,
            digest,
            U_ID,
            version,
        )
        prev = digest


def delete_tail_with_link(db: Db) -> None:
    for table in (db.events, db.chain):
        db.run(f"DELETE FROM {table} WHERE originator_id=%s AND originator_version=6", U_ID)


def delete_record_stream(db: Db) -> None:
    for table in (db.events, db.chain):
        db.run(f"DELETE FROM {table} WHERE originator_id=%s", record_id(MALFORMED_AT))


def alter_seal(db: Db) -> None:
    db.run(f"UPDATE {db.seals} SET streams = streams + 1 WHERE seq = 1")


Tamper = Callable[[Db], None]

#: (tampering, the broken entries expected: (uscc, sequence, reason starts with))
CHAIN_CASES: list[tuple[Tamper, list[tuple[str | None, int | None, str]]]] = [
    (change_state_byte, [(U, 3, "changed")]),
    (change_topic, [(U, 3, "changed")]),
    (delete_event, [(U, 3, "deleted")]),
    (delete_event_and_link, [(U, 3, "deleted: event 3 is missing")]),
    (swap_contents, [(U, 2, "swapped")]),
    (swap_versions, [(U, 2, "swapped")]),
    (insert_event_without_link, [(U, 7, "inserted")]),
    (insert_forged_link, [(U, 7, "forged")]),
]


def _entries(report: Report) -> list[tuple[str | None, int | None, str]]:
    return [(b.uscc, b.sequence, b.reason) for b in report.broken]


def _matches(report: Report, expected: list[tuple[str | None, int | None, str]]) -> bool:
    got = _entries(report)
    return len(got) == len(expected) and all(
        g[0] == e[0] and g[1] == e[1] and g[2].startswith(e[2])
        for g, e in zip(got, expected, strict=True)
    )


def test_an_untouched_store_verifies(store: Store) -> None:
    populate(store)
    report = verify(store.audit())
    assert report.ok, report.as_dict()
    assert report.checked == store.app().process_recorder.max_notification_id()


@pytest.mark.parametrize(
    ("tamper", "expected"), CHAIN_CASES, ids=lambda c: getattr(c, "__name__", "")
)
def test_tampering_in_the_database_is_detected_and_named(
    store: Store, tamper: Tamper, expected: list[tuple[str, int, str]]
) -> None:
    populate(store)
    assert verify(store.audit()).ok
    tamper(store.db)
    report = verify(store.audit())
    assert not report.ok
    assert _matches(report, expected), report.as_dict()
    assert report.broken[0].kind == "provider"
    assert report.broken[0].stream == str(U_ID)
    # Only the tampered stream, from its first broken event.
    assert verify(store.audit(), uscc=V).ok


def test_only_the_first_broken_event_of_each_stream_is_named(store: Store) -> None:
    populate(store)
    db = store.db
    change_state_byte(db)  # U, event 3
    db.run(
        f"UPDATE {db.events} SET state=%s WHERE originator_id=%s AND originator_version=5",
        _flip(_state(db, 5)),
        U_ID,
    )
    v_id = provider_id(V)
    db.run(
        f"UPDATE {db.events} SET state=%s WHERE originator_id=%s AND originator_version=2",
        _flip(_state(db, 2, v_id)),
        v_id,
    )
    report = verify(store.audit())
    assert sorted(_entries(report)) == sorted(
        [
            (U, 3, "changed: its stored bytes (topic or state) do not match its hash"),
            (V, 2, "changed: its stored bytes (topic or state) do not match its hash"),
        ]
    )


def test_a_changed_inbound_record_is_named_by_its_subject_or_its_record_id(store: Store) -> None:
    populate(store)
    db = store.db
    for position in (REFUSED_AT, MALFORMED_AT):
        rid = record_id(position)
        db.run(
            f"UPDATE {db.events} SET state=%s WHERE originator_id=%s AND originator_version=1",
            _flip(_state(db, 1, rid)),
            rid,
        )
    report = verify(store.audit())
    named = {(b.uscc, b.sequence, b.kind) for b in report.broken}
    assert named == {(V, 1, "record"), (str(record_id(MALFORMED_AT)), 1, "record")}


@pytest.mark.parametrize(
    "tamper",
    [change_state_and_relink, delete_tail_with_link, delete_record_stream],
    ids=lambda c: c.__name__,
)
def test_what_the_chain_cannot_see_the_seal_does(
    store: Store, tamper: Tamper, tmp_path: Path
) -> None:
    populate(store)
    made = seal(store.audit())
    # 10 events and records, and the markers of the 9 (source, id) keys judged (1.1)
    assert made is not None and (made.streams, made.events) == (13, 19)
    kept = tmp_path / "seals.jsonl"
    write_seals(stored_seals(store.audit()), kept)
    tamper(store.db)
    report = verify(store.audit(), exported=read_seals(kept))
    chain_problems = [b for b in report.broken if b.kind != "seal"]
    seal_problems = [b for b in report.broken if b.kind == "seal"]
    assert not chain_problems, report.as_dict()  # the chain alone looks fine …
    assert len(seal_problems) == 1  # … but seal 1 no longer matches
    assert seal_problems[0].reason.startswith("seal 1 (")
    assert "no longer matches" in seal_problems[0].reason
    # Sealing again is refused: a seal never certifies a broken history.
    with pytest.raises(Exception, match="not sealed"):
        seal(store.audit())


def test_an_altered_or_deleted_seal_row_is_detected_against_the_exported_copy(
    store: Store, tmp_path: Path
) -> None:
    populate(store)
    seal(store.audit(), label="day-1")
    kept = tmp_path / "seals.jsonl"
    write_seals(stored_seals(store.audit()), kept)
    alter_seal(store.db)
    reasons = [b.reason for b in verify(store.audit(), exported=read_seals(kept)).broken]
    assert "seal 1 was altered: its hash does not match its fields" in reasons
    assert "seal 1 differs from the exported copy" in reasons
    store.db.run(f"DELETE FROM {store.db.seals}")
    reasons = [b.reason for b in verify(store.audit(), exported=read_seals(kept)).broken]
    assert reasons == ["seal 1 of the exported file is missing from the store"]
    # Without the exported copy, the store alone cannot tell that its only seal is gone.
    assert verify(store.audit()).ok


def test_the_store_keeps_verifying_as_it_grows_after_a_seal(store: Store) -> None:
    populate(store)
    first = seal(store.audit(), label="day-1")
    app = store.app()
    app.process([InboundMessage(line(admitted(U, "2025-10-02")), "kafka:t:0:100", None)])
    second = seal(store.audit(), label="day-2")
    assert first is not None and second is not None
    # the event and its key's marker
    assert (second.seq, second.prev, second.events) == (2, first.hash, first.events + 2)
    report = verify(store.audit())
    assert report.ok and report.seals == 2, report.as_dict()
    assert seal(store.audit(), label="day-2", daily=True) is None
