"""The hash chain, the seals, ``verify``, history and export (memory and SQLite stores).

Tampering on both database stores, directly in SQL, is in
``tests/integration/test_audit_tampering.py``.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import logging
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from audit.auditing import Auditing
from audit.history import export_rows, history
from audit.seal import seal, seal_daily, stored_seals
from audit.verify import read_seals, verify, write_seals
from lifecycle.application import InboundMessage, ProviderLifecycle
from lifecycle.evaluate import evaluate
from lifecycle.ports import Position
from lifecycle.records import record_id
from lifecycle.uscc import provider_id
from service.cli_audit import audit_app
from store.audit_port import AuditStore
from store.chain import (
    GENESIS,
    MISSING,
    Link,
    MerkleBuilder,
    event_hash,
    link_batch,
    merkle_root,
)
from store.heads import HeadCache
from tests.factories import (
    admitted,
    applied,
    deposit_paid,
    line,
    onboard,
    process,
    uscc,
)
from web.audit_routes import audit_router
from web.auth import ApiError, TokenTable

FIXTURES = Path(__file__).parents[2] / "fixtures"
A = uscc(701)  # the fixture's provider with several tenures
B = uscc(702)
U = uscc(811)
AS_OF = date(2026, 11, 27)


def sqlite_env(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "store.sqlite:Factory", "SQLITE_DBNAME": str(path)}


def audit_store(app: ProviderLifecycle) -> AuditStore:
    recorder = app.recorder
    assert isinstance(recorder, AuditStore)
    return recorder


@pytest.fixture
def fixture_store(tmp_path: Path) -> Iterator[tuple[ProviderLifecycle, Path]]:
    """A copy of the store written by the v1 code (tests/fixtures/make_v1_store.py)."""
    path = tmp_path / "store.db"
    shutil.copy(FIXTURES / "v1_store.db", path)
    app = ProviderLifecycle(env=sqlite_env(path))
    yield app, path
    app.close()


def inbound_lines() -> list[bytes]:
    return (FIXTURES / "v1_inbound.jsonl").read_bytes().splitlines()


# --- the hash and the Merkle tree ---------------------------------------------------------


def test_the_event_hash_is_sha256_over_length_prefixed_fields() -> None:
    oid = provider_id(U)
    state = b'{"a":1}'
    expected = hashlib.sha256(
        b"provider-lifecycle/chain/v1"
        + (16).to_bytes(8, "big")
        + oid.bytes
        + (8).to_bytes(8, "big")
        + (3).to_bytes(8, "big")
        + (5).to_bytes(8, "big")
        + b"t:T.E"
        + (7).to_bytes(8, "big")
        + state
        + (32).to_bytes(8, "big")
        + GENESIS
    ).digest()
    assert event_hash(oid, 3, "t:T.E", state, GENESIS) == expected
    # Length prefixes: moving a byte from the topic to the state changes the hash.
    assert event_hash(oid, 3, "t:T.", b'E{"a":1}', GENESIS) != expected
    assert event_hash(oid, 3, "t:T.E", state, MISSING) != expected


def test_the_merkle_root_is_rfc_6962_with_its_test_vectors() -> None:
    data = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        bytes(range(0x50, 0x58)),
        bytes(range(0x60, 0x70)),
    ]
    leaves = [hashlib.sha256(b"\x00" + d).digest() for d in data]
    assert merkle_root(leaves[:1]).hex().startswith("6e340b9cffb37a98")
    assert merkle_root(leaves[:7]).hex().startswith("ddb89be403809e32")
    assert merkle_root(leaves).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )
    assert merkle_root([]) == hashlib.sha256(b"").digest()


def _reference_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = _reference_root(leaves[:k]), _reference_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70))
def test_the_streaming_merkle_builder_matches_the_recursive_definition(
    leaves: list[bytes],
) -> None:
    builder = MerkleBuilder()
    for leaf in leaves:
        builder.add(leaf)
    assert builder.count == len(leaves)
    assert builder.root() == _reference_root(leaves)


# --- the recorders keep the chain ----------------------------------------------------------


@pytest.mark.parametrize("module", ["store.memory:Factory", "store.sqlite:Factory"])
def test_every_stored_event_is_linked_in_the_same_transaction(module: str, tmp_path: Path) -> None:
    env = {"PERSISTENCE_MODULE": module, "SQLITE_DBNAME": str(tmp_path / "s.db")}
    app = ProviderLifecycle(env=env)
    process(app, *onboard(U, "2025-01-01"), b"{", admitted(uscc(812), "2025-01-01"))
    record = app.record(next(iter(_records(app))))
    record.resubmit("ops", record.recorded_at)
    app.save(record)  # the inbox's path: a plain save, no positions
    store = audit_store(app)
    with store.audit_reader() as reader:
        links = list(reader.links())
        events = list(reader.events())
    # 4 provider events, 2 inbound records (malformed, refused), a re-submission and the
    # idempotency-key markers of the 3 accepted events and the refused one (CONTRACT.md 1.1)
    assert len(links) == len(events) == 10
    assert {(link.originator_id, link.originator_version) for link in links} == {
        (e.originator_id, e.originator_version) for e in events
    }
    report = verify(store)
    assert report.ok and report.checked == 10 and report.streams == 7, report.as_dict()


def _records(app: ProviderLifecycle) -> list[Any]:
    return [e.originator_id for e in app.iter_events() if type(e).__name__ == "Received"]


def test_a_batch_rolled_back_leaves_no_trace_in_the_chain(tmp_path: Path) -> None:
    app = ProviderLifecycle(env=sqlite_env(tmp_path / "s.db"))
    first = [InboundMessage(line(e), f"kafka:t:0:{i}") for i, e in enumerate(onboard(U))]
    app.process(first, [Position("kafka:t:0", 0, 2)])
    stale = [InboundMessage(line(admitted(U, "2025-02-01")), "kafka:t:0:1")]
    with pytest.raises(Exception, match="batch starts at 1"):
        app.process(stale, [Position("kafka:t:0", 1, 1)])  # refused: already past 1
    app.process(
        [InboundMessage(line(deposit_paid(U, "2025-02-02")), "kafka:t:0:3")],
        [Position("kafka:t:0", 3, 3)],
    )
    report = verify(audit_store(app))
    # 4 events and their 4 idempotency-key markers
    assert report.ok and report.checked == 8, report.as_dict()


def test_a_stream_written_by_another_process_meanwhile_still_chains(tmp_path: Path) -> None:
    one = ProviderLifecycle(env=sqlite_env(tmp_path / "s.db"))
    other = ProviderLifecycle(env=sqlite_env(tmp_path / "s.db"))
    process(one, applied(U, "2025-01-01"))
    process(other, admitted(U, "2025-01-02"))  # one's cached head is now stale
    one.clear_cache()  # as after a rebalance
    process(one, deposit_paid(U, "2025-01-03"))
    report = verify(audit_store(one))
    assert report.ok and report.checked == 6, report.as_dict()  # 3 events, 3 key markers


def test_an_event_after_a_removed_link_is_recorded_and_the_break_named(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    process(ProviderLifecycle(env=sqlite_env(path)), *onboard(U, "2025-01-01"))
    with sqlite3.connect(path) as conn:
        conn.execute(
            "DELETE FROM stored_events_chain WHERE originator_version = 3 AND originator_id = ?",
            (provider_id(U).hex,),
        )
    app = ProviderLifecycle(env=sqlite_env(path))
    process(app, deposit_paid(U, "2025-02-01"))  # ingestion goes on
    with audit_store(app).audit_reader() as reader:
        fourth = [link for link in reader.links() if link.originator_version == 4]
    assert fourth[0].prev_hash == MISSING
    report = verify(audit_store(app))
    assert [(b.uscc, b.sequence, b.reason) for b in report.broken] == [
        (U, 3, "inserted: the event has no link in the hash chain")
    ]


def test_a_store_made_before_the_chain_is_linked_once_when_opened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.db"
    # The library's own recorder: what older code of this service wrote (no chain table).
    old = ProviderLifecycle(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    )
    process(old, *onboard(U, "2025-01-01"), b"{")
    old.close()
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "stored_events_chain" not in tables
    with caplog.at_level(logging.WARNING):
        app = ProviderLifecycle(env=sqlite_env(path))
    # 3 events with their idempotency-key markers, and the malformed record
    assert "hash chain created for 7 events" in caplog.text
    process(app, deposit_paid(U, "2025-02-01"))
    again = ProviderLifecycle(env=sqlite_env(path))  # no second backfill
    report = verify(audit_store(again))
    assert report.ok and report.checked == 9, report.as_dict()


# --- seals -----------------------------------------------------------------------------


def test_seals_chain_and_cover_every_streams_head(tmp_path: Path) -> None:
    app = ProviderLifecycle(env=sqlite_env(tmp_path / "s.db"))
    process(app, *onboard(U, "2025-01-01"), b"{")
    first = seal(audit_store(app), label="d1")
    assert first is not None
    # the provider (3 events), its 3 idempotency-key markers, the malformed record
    assert (first.seq, first.streams, first.events, first.max_notification_id) == (1, 5, 7, 7)
    assert first.prev == GENESIS.hex() and first.hash == first.expected_hash()
    process(app, deposit_paid(U, "2025-02-01"))
    second = seal(audit_store(app), label="d2")
    assert second is not None and second.prev == first.hash and second.events == 9
    assert second.root != first.root
    assert seal(audit_store(app), label="d2", daily=True) is None
    path = tmp_path / "seals.jsonl"
    assert write_seals(stored_seals(audit_store(app)), path) == 2
    assert read_seals(path) == [first, second]
    report = verify(audit_store(app), exported=read_seals(path))
    assert report.ok and report.seals == 2, report.as_dict()


# --- history and export on the v1 fixture ----------------------------------------------------


def _expected(subject: str) -> list[tuple[str | None, str]]:
    """(CloudEvents id, outcome) of every inbound line with ``subject``, in order."""
    lines = inbound_lines()
    outcomes = evaluate([raw + b"\n" for raw in lines], AS_OF)["outcomes"]
    out = []
    for raw, outcome in zip(lines, outcomes, strict=True):
        try:
            ev = json.loads(raw)
        except ValueError:
            continue
        if ev.get("subject") == subject:
            out.append((ev["id"], outcome["outcome"]))
    return out


def test_history_lists_every_inbound_record_of_a_provider_one_to_one(
    fixture_store: tuple[ProviderLifecycle, Path],
) -> None:
    app, _ = fixture_store
    for subject in (A, B):
        result = history(app, audit_store(app), subject)
        assert [(e["id"], e["outcome"]) for e in result["entries"]] == _expected(subject)
        assert result["verify"]["ok"]
    entries = history(app, audit_store(app), A)["entries"]
    assert [e["outcome"] for e in entries].count("accepted") == 9
    assert [e["sequence"] for e in entries if e["outcome"] == "accepted"] == list(range(1, 10))
    duplicate = next(e for e in entries if e["outcome"] == "duplicate")
    assert duplicate["duplicate_of"] == 8 and duplicate["id"] == "a-pay-2"
    malformed = next(e for e in entries if e["outcome"] == "malformed")
    assert malformed["reason"].startswith("invalid_data")
    assert malformed["time"] == "2025-01-13T10:00:00+08:00"  # read from the original bytes
    refused = [e for e in entries if e["outcome"] == "refused"]
    assert [e["codes"] for e in refused] == [["A1.3-5"], ["A1.3-3"]]
    assert refused[0]["position"] == "kafka:fixture.inbound:0:5"
    first = entries[0]
    assert first["time"] == "2024-01-05T10:00:00+08:00"
    assert first["recorded_at"] == "2025-09-01T02:00:00+00:00"
    assert first["source"] == "/taobao-live/provider-admin"


def test_history_as_of_a_date_stops_at_that_business_date(
    fixture_store: tuple[ProviderLifecycle, Path],
) -> None:
    app, _ = fixture_store
    ids = [e["id"] for e in history(app, audit_store(app), A, date(2024, 12, 31))["entries"]]
    assert ids == ["a-app-1", "a-adm-1", "a-pay-1", "a-vio-1", "a-exit-1", "a-app-early"]
    assert history(app, audit_store(app), uscc(799))["entries"] == []


def test_export_streams_every_event_and_record_and_masks_personal_data(
    fixture_store: tuple[ProviderLifecycle, Path],
) -> None:
    app, _ = fixture_store
    rows = list(export_rows(app))
    assert [r["notification"] for r in rows] == list(range(1, 18))
    assert [(r["id"], r["outcome"]) for r in rows if r["uscc"] == A] == _expected(A)
    assert sum(r["kind"] == "record" for r in rows) == 6
    applications = [r for r in rows if r["type"] == "provider.Applied"]
    assert all(
        r["data"]["contact"] == {"name": "张*", "phone": "138****0000"} for r in applications
    )
    assert all(r["raw_b64"] is None for r in rows)
    clear = list(export_rows(app, include_personal_data=True))
    assert clear[0]["data"]["contact"] == {"name": "张三", "phone": "13800000000"}
    assert all(r["raw_b64"] for r in clear if r["kind"] == "record")
    within = list(export_rows(app, since=date(2024, 9, 1), until=date(2024, 9, 4)))
    assert [r["id"] for r in within] == ["a-app-early", "b-app", "b-adm", "b-dec"]


# --- the command line ------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli_store(
    fixture_store: tuple[ProviderLifecycle, Path], monkeypatch: pytest.MonkeyPatch
) -> Path:
    _, path = fixture_store
    monkeypatch.setenv("LIFECYCLE_STORE", f"sqlite:///{path}")
    return path


def test_cli_verify_reports_ok_then_the_changed_event_with_exit_status_1(
    cli_store: Path,
) -> None:
    ok = runner.invoke(audit_app, ["verify", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout) == {
        "ok": True,
        "checked": 17,
        "streams": 8,
        "seals": 1,
        "broken": [],
    }
    with sqlite3.connect(cli_store) as conn:
        conn.execute(
            "UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), 'ops-1', "
            "'ops-9') AS BLOB) WHERE originator_version = 2 AND originator_id = ?",
            (provider_id(A).hex,),
        )
    broken = runner.invoke(audit_app, ["verify", "--json"])
    assert broken.exit_code == 1
    report = json.loads(broken.stdout)
    assert report["ok"] is False
    assert [(b["uscc"], b["sequence"]) for b in report["broken"]] == [(A, 2)]
    assert set(report["broken"][0]) >= {"uscc", "sequence", "reason"}
    human = runner.invoke(audit_app, ["verify"])
    assert human.exit_code == 1 and "changed" in human.stdout


def test_cli_seal_export_and_verify_against_the_kept_copy(cli_store: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.jsonl"
    made = runner.invoke(audit_app, ["seal", "--label", "d2", "--export", str(kept), "--json"])
    assert made.exit_code == 0, made.output
    out = json.loads(made.stdout)
    assert out["sealed"]["seal"] == 2 and out["exported"] == 2
    assert [json.loads(x)["seal"] for x in kept.read_text().splitlines()] == [1, 2]
    again = runner.invoke(audit_app, ["seal", "--label", "d2", "--daily", "--json"])
    assert json.loads(again.stdout)["sealed"] is None
    checked = runner.invoke(audit_app, ["verify", "--seals", str(kept), "--json"])
    assert checked.exit_code == 0 and json.loads(checked.stdout)["seals"] == 2
    with sqlite3.connect(cli_store) as conn:
        conn.execute("DELETE FROM stored_events_seals WHERE seq = 2")
    lost = runner.invoke(audit_app, ["verify", "--seals", str(kept), "--json"])
    assert lost.exit_code == 1
    assert [b["reason"] for b in json.loads(lost.stdout)["broken"]] == [
        "seal 2 of the exported file is missing from the store"
    ]


def test_cli_history_json_and_timeline(cli_store: Path) -> None:
    result = runner.invoke(audit_app, ["history", A, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(e["id"], e["outcome"]) for e in data["entries"]] == _expected(A)
    as_of = runner.invoke(audit_app, ["history", A, "--as-of", "2024-06-30", "--json"])
    assert json.loads(as_of.stdout)["count"] == 5
    timeline = runner.invoke(audit_app, ["history", A], env={"COLUMNS": "160"})
    assert timeline.exit_code == 0
    assert "a-app-early" in timeline.stdout and "A1.3-5" in timeline.stdout
    assert "hash chain intact" in timeline.stdout
    bad = runner.invoke(audit_app, ["history", "91330100000000701X"])
    assert bad.exit_code == 2


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_cli_export_writes_every_row(cli_store: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"export.{fmt}"
    result = runner.invoke(audit_app, ["export", str(out), "--format", fmt])
    assert result.exit_code == 0, result.output
    if fmt == "jsonl":
        rows = [json.loads(x) for x in out.read_text().splitlines()]
    else:
        with out.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    assert len(rows) == 17
    assert "13800000000" not in out.read_text()
    personal = runner.invoke(
        audit_app, ["export", str(out), "--format", fmt, "--include-personal-data"]
    )
    assert personal.exit_code == 0 and "13800000000" in out.read_text()
    partial = runner.invoke(audit_app, ["export", str(out), "--since", "2025-06-01"])
    assert partial.exit_code == 0
    # The record without a readable time counts on its recorded date (2025-09-01).
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [
        "a-expel",
        None,
        "a-app-3",
    ]


# --- the HTTP endpoints ------------------------------------------------------------------------


@pytest.fixture
def client(fixture_store: tuple[ProviderLifecycle, Path]) -> TestClient:
    app, _ = fixture_store
    api = FastAPI()
    api.state.tokens = TokenTable({"r": "reader", "a": "auditor"})
    api.include_router(audit_router(lambda: Auditing(app)))

    @api.exception_handler(ApiError)
    def api_error(_: Any, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)

    return TestClient(api)


AUDITOR = {"Authorization": "Bearer a"}


def test_api_history_for_auditors_only(client: TestClient) -> None:
    ok = client.get(f"/v1/providers/{A}/history", headers=AUDITOR)
    assert ok.status_code == 200
    assert [(e["id"], e["outcome"]) for e in ok.json()["entries"]] == _expected(A)
    as_of = client.get(f"/v1/providers/{A}/history?as_of=2024-06-30", headers=AUDITOR)
    assert as_of.json()["count"] == 5
    assert client.get(f"/v1/providers/{A}/history").status_code == 401
    reader = client.get(f"/v1/providers/{A}/history", headers={"Authorization": "Bearer r"})
    assert reader.status_code == 403
    bad = client.get("/v1/providers/not-a-uscc/history", headers=AUDITOR)
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_uscc")
    bad_day = client.get(f"/v1/providers/{A}/history?as_of=2024-6-30", headers=AUDITOR)
    assert bad_day.status_code == 422
    unknown = client.get(f"/v1/providers/{uscc(799)}/history", headers=AUDITOR)
    assert unknown.status_code == 404


def test_api_verify(client: TestClient, fixture_store: tuple[ProviderLifecycle, Path]) -> None:
    ok = client.get("/v1/audit/verify", headers=AUDITOR)
    assert ok.status_code == 200
    assert ok.json() == {"ok": True, "checked": 17, "streams": 8, "seals": 1, "broken": []}
    one = client.get(f"/v1/audit/verify?uscc={B}", headers=AUDITOR).json()
    assert one["ok"] and one["checked"] == 3  # B's two events and its refused admission
    _, path = fixture_store
    with sqlite3.connect(path) as conn:
        conn.execute(
            "DELETE FROM stored_events WHERE originator_id = ?",
            (record_id("kafka:fixture.inbound:0:15").hex,),
        )
    broken = client.get("/v1/audit/verify", headers=AUDITOR).json()
    assert broken["ok"] is False
    assert [(b["sequence"], b["kind"]) for b in broken["broken"]] == [(1, "stream")]
    assert client.get("/v1/audit/verify", headers={"Authorization": "Bearer r"}).status_code == 403


def test_the_service_seals_each_business_day_once(tmp_path: Path) -> None:
    app = ProviderLifecycle(env=sqlite_env(tmp_path / "s.db"))
    process(app, *onboard(U, "2025-01-01"))
    stopped = asyncio.Event()
    stopped.set()  # one check, then return
    asyncio.run(seal_daily(audit_store(app), stopped))
    asyncio.run(seal_daily(audit_store(app), stopped))
    seals = stored_seals(audit_store(app))
    assert [(s.seq, s.events) for s in seals] == [(1, 6)]  # 3 events, 3 key markers


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.text(max_size=40), st.binary(max_size=300)),
        min_size=1,
        max_size=20,
    )
)
def test_the_recorders_batch_hashing_is_the_event_hash(rows: list[tuple[int, str, bytes]]) -> None:
    """``chain_batch`` (inlined for speed) computes exactly ``event_hash`` along each stream."""
    versions: dict[int, int] = {}
    events = []
    for stream, topic, state in rows:
        versions[stream] = versions.get(stream, 0) + 1
        events.append(StoredEvent(provider_id(uscc(stream + 1)), versions[stream], topic, state))
    links = link_batch(events, list(range(1, len(events) + 1)), {})
    prev: dict[Any, bytes] = {}
    for event, link in zip(events, links, strict=True):
        expected_prev = prev.get(event.originator_id, GENESIS)
        assert link.prev_hash == expected_prev
        assert link.hash == event_hash(
            event.originator_id, event.originator_version, event.topic, event.state, expected_prev
        )
        prev[event.originator_id] = link.hash


def test_the_head_cache_is_bounded_and_keeps_the_latest_writes() -> None:
    cache = HeadCache(size=10)
    links = [Link(provider_id(uscc(n)), 1, n, None, GENESIS, bytes([n]) * 32) for n in range(1, 26)]
    cache.stage(links)
    cache.commit()
    hits, misses = cache.split([(link.originator_id, 1) for link in links])
    assert len(hits) <= 10 and len(hits) + len(misses) == 25
    assert links[-1].originator_id in hits and links[0].originator_id not in hits
    cache.stage(links[:1])
    cache.discard()  # rolled back: nothing learnt
    cache.commit()
    assert links[0].originator_id not in cache.split([(links[0].originator_id, 1)])[0]
