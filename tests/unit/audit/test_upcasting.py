"""Schema evolution without rewriting history: ``provider.Applied`` v2 (a structured address).

``tests/fixtures/v1_store.db`` holds events written by the v1 code: they must still load
(through ``Provider.ApplicationEvent.upcast_v1_v2``), project, verify against their hashes
and seal, and live side by side with v2 events, while the stored bytes stay as they were.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from audit.seal import seal
from audit.verify import read_seals, verify
from consumers.outgoing import outbound_event
from lifecycle.application import ProviderLifecycle
from lifecycle.contract import APPLIED_V2_SCHEMA, Envelope
from lifecycle.evaluate import evaluate
from lifecycle.parsing import Malformed, parse_record
from lifecycle.provider import Provider
from lifecycle.uscc import provider_id
from store.audit_port import AuditStore
from tests.factories import (
    admitted,
    applied_data,
    event,
    line,
    process,
    run,
    uscc,
)

FIXTURES = Path(__file__).parents[2] / "fixtures"
A = uscc(701)
B = uscc(702)
AS_OF = date(2026, 11, 27)
ADDRESS = {"province": "浙江省", "city": "杭州", "district": "西湖区", "street": "文三路 1 号"}


def applied_v2(
    subject: str, when: str, *, id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    data = applied_data(**overrides)
    data.pop("entity_city")
    data["address"] = overrides.get("address", ADDRESS)
    return event("provider.Applied", subject, data, when, id=id, dataschema=APPLIED_V2_SCHEMA)


@pytest.fixture
def old_store(tmp_path: Path) -> Iterator[tuple[ProviderLifecycle, Path]]:
    path = tmp_path / "store.db"
    shutil.copy(FIXTURES / "v1_store.db", path)
    app = ProviderLifecycle(
        env={"PERSISTENCE_MODULE": "store.sqlite:Factory", "SQLITE_DBNAME": str(path)}
    )
    yield app, path
    app.close()


def audit_store(app: ProviderLifecycle) -> AuditStore:
    recorder = app.recorder
    assert isinstance(recorder, AuditStore)
    return recorder


def stored_states(path: Path, topic_suffix: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT state FROM stored_events WHERE topic LIKE ? ORDER BY rowid",
            (f"%{topic_suffix}",),
        ).fetchall()
    finally:
        conn.close()
    return [json.loads(r[0]) for r in rows]


# --- old events load through the upcaster --------------------------------------------------


def test_the_fixture_was_written_by_the_v1_code(old_store: tuple[ProviderLifecycle, Path]) -> None:
    _, path = old_store
    applications = stored_states(path, "Provider.Applied") + stored_states(path, "Reapplied")
    assert len(applications) == 3
    for state in applications:
        assert "class_version" not in state and "address" not in state
        assert "entity_city" in state["data"]


def test_v1_events_load_through_the_upcaster(old_store: tuple[ProviderLifecycle, Path]) -> None:
    app, _ = old_store
    events = list(app.events.get(provider_id(A)))
    applications = [e for e in events if isinstance(e, Provider.ApplicationEvent)]
    assert [type(e).__name__ for e in applications] == ["Applied", "Reapplied"]
    for e in applications:
        assert e.payload_version == 1
        assert e.address == {"province": None, "city": "杭州", "district": None, "street": None}
        assert "address" not in e.data  # the payload stays as it was received
        assert e.application["entity_city"] == "杭州"


def test_old_history_projects_as_the_rules_say(old_store: tuple[ProviderLifecycle, Path]) -> None:
    app, _ = old_store
    lines = (FIXTURES / "v1_inbound.jsonl").read_bytes().splitlines()
    offline = evaluate([raw + b"\n" for raw in lines], AS_OF)["providers"]
    for subject in (A, B):
        provider = app.provider(subject)
        assert provider is not None
        assert provider.status == offline[subject]["status"]
        assert provider.deposit_balance_fen == offline[subject]["deposit_balance_fen"]
        assert len(provider.violations) == offline[subject]["violations"]
        assert provider.eligibility(AS_OF).as_dict() == offline[subject]["eligibility"]
    b = app.provider(B)
    assert b is not None and b.application is not None
    assert b.application["address"]["city"] == "杭州"  # from v1's entity_city
    assert app.provider_as_of(A, date(2024, 3, 1)) is not None


def test_old_events_verify_against_the_hashes_of_their_stored_bytes(
    old_store: tuple[ProviderLifecycle, Path],
) -> None:
    app, _ = old_store
    report = verify(audit_store(app), exported=read_seals(FIXTURES / "v1_seals.jsonl"))
    assert report.ok and report.checked == 17 and report.seals == 1, report.as_dict()


def test_the_outbound_feed_of_old_events_is_unchanged(
    old_store: tuple[ProviderLifecycle, Path],
) -> None:
    app, path = old_store
    first = next(iter(app.events.get(provider_id(A))))
    assert isinstance(first, Provider.Event)
    published = outbound_event(first, A)
    assert published["data"] == stored_states(path, "Provider.Applied")[0]["data"]
    assert "address" not in published["data"]


# --- new events next to old ones -------------------------------------------------------------


def test_v2_applications_join_an_old_history_and_everything_still_verifies(
    old_store: tuple[ProviderLifecycle, Path],
) -> None:
    app, path = old_store
    # B was declined in 2024 (v1); it applies again with a v2 payload, and is admitted.
    results = process(app, applied_v2(B, "2025-10-01", id="b-app-2"), admitted(B, "2025-10-02"))
    assert [r.outcome for r in results] == ["accepted", "accepted"]
    latest = stored_states(path, "Reapplied")[-1]
    assert latest["class_version"] == 2 and latest["payload_version"] == 2
    assert latest["address"] == ADDRESS and latest["data"]["address"] == ADDRESS
    reloaded = ProviderLifecycle(env=app.env)
    b = reloaded.provider(B)
    assert b is not None and b.status == "admitted"
    assert b.application is not None and b.application["entity_city"] == "杭州"
    applications = [
        e for e in reloaded.events.get(provider_id(B)) if isinstance(e, Provider.ApplicationEvent)
    ]
    assert [e.payload_version for e in applications] == [1, 2]
    made = seal(audit_store(reloaded), label="after-v2")
    # 17 old events, the idempotency-key markers of the 14 keys they judged (written once,
    # before the first 1.1 batch: CONTRACT.md 1.1), 2 new events and their 2 keys' markers
    assert made is not None and made.events == 17 + 14 + 2 + 2
    report = verify(audit_store(reloaded), exported=read_seals(FIXTURES / "v1_seals.jsonl"))
    assert report.ok and report.seals == 2, report.as_dict()
    # The old rows were not rewritten: the fixture's first seal still matches them.
    assert (
        stored_states(path, "Provider.Applied")[0]
        == stored_states(FIXTURES / "v1_store.db", "Provider.Applied")[0]
    )


# --- the versioned contract --------------------------------------------------------------


def test_v2_is_chosen_by_dataschema_and_v1_stays_accepted() -> None:
    v2 = parse_record(line(applied_v2(A, "2026-01-01")))
    assert isinstance(v2, Envelope) and v2.payload_version == 2
    assert v2.data["address"] == ADDRESS and "entity_city" not in v2.data
    for schema in (None, "https://example.com/schemas/provider.Applied.v1", "urn:x:applied"):
        ev = event("provider.Applied", A, applied_data(), "2026-01-01")
        if schema is not None:
            ev["dataschema"] = schema
        v1 = parse_record(line(ev))
        assert isinstance(v1, Envelope) and v1.payload_version == 1, schema
    # Another type's version in the URI does not select this type's version.
    other = event(
        "provider.Applied", A, applied_data(), "2026-01-01", dataschema="x/provider.Admitted.v2"
    )
    assert isinstance(parse_record(line(other)), Envelope)


@pytest.mark.parametrize(
    ("build", "code"),
    [
        # a v2 payload without saying so is not a valid v1 payload
        (lambda: {**applied_v2(A, "2026-01-01"), "dataschema": None}, "invalid_data"),
        # a v1 payload labelled v2
        (
            lambda: event(
                "provider.Applied", A, applied_data(), "2026-01-01", dataschema=APPLIED_V2_SCHEMA
            ),
            "invalid_data",
        ),
        # a version this service does not know
        (
            lambda: {**applied_v2(A, "2026-01-01"), "dataschema": "urn:x:provider.Applied.v3"},
            "invalid_envelope",
        ),
        # v2 is only for Applied
        (
            lambda: {**admitted(A, "2026-01-01"), "dataschema": "urn:x:provider.Admitted.v2"},
            "invalid_envelope",
        ),
        # the address is strict too
        (
            lambda: applied_v2(A, "2026-01-01", address={"province": "浙江省", "city": ""}),
            "invalid_data",
        ),
    ],
)
def test_malformed_versions(build: Any, code: str) -> None:
    parsed = parse_record(line(build()))
    assert isinstance(parsed, Malformed) and parsed.code == code, parsed


def test_a1_1_1_5_compares_the_v2_address_city_with_the_service_city() -> None:
    same = run([applied_v2(A, "2026-01-01"), admitted(A, "2026-01-02")])
    assert [o["outcome"] for o in same["outcomes"]] == ["accepted", "accepted"]
    elsewhere = {**ADDRESS, "city": "宁波"}
    differs = run([applied_v2(B, "2026-01-01", address=elsewhere), admitted(B, "2026-01-02")])
    assert differs["outcomes"][1]["outcome"] == "refused"
    assert differs["outcomes"][1]["codes"] == ["A1.1.1-5"]
    assert "宁波" in differs["outcomes"][1]["reason"]
