"""Old events on PostgreSQL: the rows the v1 code wrote (``tests/fixtures/v1_store.jsonl``,
dumped from the SQLite fixture) load through the upcaster, verify (the hashes do not depend
on the store) and take new v2 events after them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from audit.verify import read_seals, verify
from lifecycle.application import ProviderLifecycle
from lifecycle.contract import APPLIED_V2_SCHEMA
from lifecycle.provider import Provider
from lifecycle.uscc import provider_id
from store.audit_port import AuditStore
from store.url import persistence_env
from tests.factories import (
    admitted,
    applied_data,
    deposit_paid,
    event,
    onboard,
    process,
    uscc,
)

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures"
A = uscc(701)
B = uscc(702)


def load_v1_rows(url: str) -> int:
    rows = [json.loads(x) for x in (FIXTURES / "v1_store.jsonl").read_text().splitlines()]
    with psycopg.connect(url) as conn:
        for r in rows:
            if r["table"] == "stored_events":
                conn.execute(
                    "INSERT INTO provider_lifecycle_events "
                    "(originator_id, originator_version, topic, state, notification_id) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (
                        UUID(r["originator_id"]),
                        r["originator_version"],
                        r["topic"],
                        r["state"].encode(),
                        r["rowid"],
                    ),
                )
            elif r["table"] == "stored_events_chain":
                conn.execute(
                    "INSERT INTO provider_lifecycle_events_chain VALUES (%s, %s, %s, %s, %s, %s)",
                    (
                        UUID(r["originator_id"]),
                        r["originator_version"],
                        r["notification_id"],
                        r["subject"],
                        bytes.fromhex(r["prev_hash"]),
                        bytes.fromhex(r["hash"]),
                    ),
                )
            else:
                conn.execute(
                    "INSERT INTO provider_lifecycle_events_seals "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    tuple(
                        r[k]
                        for k in (
                            "seq",
                            "sealed_at",
                            "label",
                            "max_notification_id",
                            "streams",
                            "events",
                            "root",
                            "prev",
                            "hash",
                        )
                    ),
                )
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('provider_lifecycle_events', "
            "'notification_id'), (SELECT max(notification_id) FROM provider_lifecycle_events))"
        )
    return sum(r["table"] == "stored_events" for r in rows)


def test_v1_rows_load_verify_and_continue_on_postgres(postgres_store: str) -> None:
    ProviderLifecycle(env=persistence_env(postgres_store)).close()  # creates the tables
    assert load_v1_rows(postgres_store) == 17
    app = ProviderLifecycle(env=persistence_env(postgres_store))
    recorder = app.recorder
    assert isinstance(recorder, AuditStore)
    report = verify(recorder, exported=read_seals(FIXTURES / "v1_seals.jsonl"))
    assert report.ok and report.checked == 17 and report.seals == 1, report.as_dict()

    a = app.provider(A)
    assert a is not None and a.status == "expelled"
    applications = [
        e for e in app.events.get(provider_id(A)) if isinstance(e, Provider.ApplicationEvent)
    ]
    assert [(e.payload_version, e.address["city"]) for e in applications] == [
        (1, "杭州"),
        (1, "杭州"),
    ]

    data = applied_data()
    data.pop("entity_city")
    data["address"] = {"province": "浙江省", "city": "杭州", "district": None, "street": None}
    v2 = event("provider.Applied", B, data, "2025-10-01", dataschema=APPLIED_V2_SCHEMA)
    results = process(app, v2, admitted(B, "2025-10-02"))
    assert [r.outcome for r in results] == ["accepted", "accepted"]
    fresh = ProviderLifecycle(env=persistence_env(postgres_store))
    b = fresh.provider(B)
    assert b is not None and b.status == "admitted" and b.applied_on == date(2025, 10, 1)
    recorder = fresh.recorder
    assert isinstance(recorder, AuditStore)
    report = verify(recorder, exported=read_seals(FIXTURES / "v1_seals.jsonl"))
    # 17 old events, the markers of the 14 keys they judged (indexed before the first 1.1
    # batch), 2 new events and their 2 keys' markers
    assert report.ok and report.checked == 17 + 14 + 2 + 2, report.as_dict()


def test_a_postgres_store_made_before_the_chain_is_linked_when_opened(
    postgres_store: str,
) -> None:
    old_env = {**persistence_env(postgres_store), "PERSISTENCE_MODULE": "eventsourcing.postgres"}
    old = ProviderLifecycle(env=old_env)  # the library's recorder: no chain table
    process(old, *onboard(A, "2025-01-01"), b"{", admitted(B, "2025-01-01"))
    old.close()
    with psycopg.connect(postgres_store) as conn:
        row = conn.execute("SELECT to_regclass('provider_lifecycle_events_chain')").fetchone()
        assert row is not None and row[0] is None
    app = ProviderLifecycle(env=persistence_env(postgres_store))
    process(app, deposit_paid(A, "2025-02-01"))
    again = ProviderLifecycle(env=persistence_env(postgres_store))
    recorder = again.recorder
    assert isinstance(recorder, AuditStore)
    report = verify(recorder)
    # A's 4 events, 2 records, the markers of the 5 keys judged (4 accepted, 1 refused)
    assert report.ok and report.checked == 11 and report.streams == 8, report.as_dict()
