"""The audit against the real service: ``lifecycle run`` killed with SIGKILL and restarted,
on PostgreSQL and SQLite, leaves a store whose hash chain and seals verify; a provider's
history and the export match what went into Kafka, one to one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from audit.history import export_rows, history
from audit.seal import seal, stored_seals
from audit.verify import read_seals, verify, write_seals
from lifecycle.application import ProviderLifecycle
from lifecycle.evaluate import evaluate
from service.demo import generate
from store.audit_port import AuditStore
from store.url import persistence_env
from tests.factories import (
    admitted,
    applied,
    deposit_paid,
    exited,
    expelled,
    line,
    uscc,
    violation,
)
from tests.integration.harness import Service, Topics, produce_lines, stats, wait_for

pytestmark = pytest.mark.integration

AS_OF = date(2026, 11, 27)


def recorded(store: str) -> int:
    """A cheap progress probe: the last notification id (0 before the first start)."""
    try:
        app = ProviderLifecycle(env=persistence_env(store))
    except Exception:  # the first start is creating the tables
        return 0
    try:
        return app.process_recorder.max_notification_id() or 0
    finally:
        app.close()


def consumed(store: str) -> int:
    try:
        return stats(store)["consumed"]
    except Exception:  # tables not created yet by the first start
        return 0


class Opened:
    """Applications opened by a test, kept open until it ends (a recorder closes with its app)."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.apps: list[ProviderLifecycle] = []

    def app(self) -> ProviderLifecycle:
        app = ProviderLifecycle(env=persistence_env(self.store))
        self.apps.append(app)
        return app

    def audit(self) -> AuditStore:
        recorder = self.app().recorder
        assert isinstance(recorder, AuditStore)
        return recorder


@pytest.fixture(params=["postgres", "sqlite"])
def any_store(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.getfixturevalue(f"{request.param}_store")


@pytest.mark.slow
def test_chain_and_seals_verify_after_sigkill_and_restart_cycles(
    kafka_bootstrap: str, any_store: str, topics: Topics, tmp_path: Path
) -> None:
    lines = list(generate(providers=1500, seed=29))
    env = topics.env(kafka_bootstrap, any_store, LIFECYCLE_BATCH_SIZE="40")
    assert produce_lines(kafka_bootstrap, topics.inbound, lines) == len(lines)
    opened = Opened(any_store)
    kept = tmp_path / "seals.jsonl"
    log = tmp_path / "run.log"

    seen = 0
    for cycle in range(2):
        service = Service(env, log).start()
        before = seen
        wait_for(lambda before=before: recorded(any_store) > before, 120, f"progress {cycle}")
        service.kill()  # SIGKILL: whatever batch was in flight is lost or committed whole
        seen = recorded(any_store)
        assert consumed(any_store) < len(lines), "the kill must interrupt the stream"
        report = verify(opened.audit())
        assert report.ok, report.as_dict()
        made = seal(opened.audit(), label=f"after-kill-{cycle}")
        assert made is not None and made.events == report.checked
        write_seals(stored_seals(opened.audit()), kept)

    service = Service(env, log).start()
    try:
        wait_for(lambda: consumed(any_store) >= len(lines), 240, "every record consumed")
        service.assert_alive()
    finally:
        assert service.stop() == 0

    counts = stats(any_store)
    offline = evaluate(lines, AS_OF)
    assert counts["consumed"] == len(lines)
    assert counts["accepted"] == sum(o["outcome"] == "accepted" for o in offline["outcomes"])
    report = verify(opened.audit(), exported=read_seals(kept))
    assert report.ok, report.as_dict()
    assert report.seals >= 2  # the two kept here, plus the daily seals `lifecycle run` made
    # One stored event per consumed record, plus the marker of each (source, id) judged,
    # accepted or refused (CONTRACT.md 1.1; the stream re-sends but re-submits nothing).
    assert report.checked == counts["consumed"] + counts["accepted"] + counts["refused"]
    assert seal(opened.audit(), label="end") is not None


X = uscc(901)


def several_tenures() -> list[bytes]:
    """One provider through three applications, with every kind of outcome on the way."""
    paid = deposit_paid(X, "2025-01-03", id="x-pay-1")
    records: list[dict[str, Any] | bytes] = [
        applied(X, "2025-01-01", id="x-app-1"),
        admitted(X, "2025-01-02", id="x-adm-1"),
        paid,
        paid,  # duplicate
        violation(X, "2025-02-01", id="x-vio-1"),
        exited(X, "2025-03-01", id="x-exit-1"),
        applied(X, "2025-04-01", id="x-app-early"),  # refused A1.3-5
        {**admitted(X, "2025-04-02", id="x-bad"), "data": {}},  # malformed, subject X
        applied(X, "2025-09-01", id="x-app-2"),
        admitted(X, "2025-09-02", id="x-adm-2"),
        expelled(X, "2025-10-01", "A1.2.2-3", id="x-expel"),  # permanent
        applied(X, "2026-06-01", id="x-app-3"),  # refused A1.3-4
    ]
    return [line(r) for r in records]


def test_history_and_export_of_a_provider_match_its_inbound_records(
    kafka_bootstrap: str, postgres_store: str, topics: Topics, tmp_path: Path
) -> None:
    mine = several_tenures()
    noise = list(generate(providers=40, seed=31))
    stream = noise[: len(noise) // 2] + mine + noise[len(noise) // 2 :]
    produce_lines(kafka_bootstrap, topics.inbound, stream)
    service = Service(topics.env(kafka_bootstrap, postgres_store), tmp_path / "run.log").start()
    try:
        wait_for(lambda: consumed(postgres_store) >= len(stream), 120, "all consumed")
    finally:
        assert service.stop() == 0

    expected = [
        (json.loads(raw)["id"], o["outcome"])
        for raw, o in zip(mine, evaluate(mine, AS_OF)["outcomes"], strict=True)
    ]
    assert [o for _, o in expected] == [
        "accepted",
        "accepted",
        "accepted",
        "duplicate",
        "accepted",
        "accepted",
        "refused",
        "malformed",
        "accepted",
        "accepted",
        "accepted",
        "refused",
    ]

    opened = Opened(postgres_store)
    app = opened.app()
    result = history(app, opened.audit(), X)
    assert [(e["id"], e["outcome"]) for e in result["entries"]] == expected
    assert [e["sequence"] for e in result["entries"] if e["outcome"] == "accepted"] == list(
        range(1, 9)
    )
    refused = [e for e in result["entries"] if e["outcome"] == "refused"]
    assert [e["codes"] for e in refused] == [["A1.3-5"], ["A1.3-4"]]
    assert all(e["position"].startswith(f"kafka:{topics.inbound}:") for e in refused)
    assert result["verify"]["ok"]
    # As of a date: only what had happened (business time) by then.
    first_tenure = history(app, opened.audit(), X, date(2025, 3, 1))
    assert [e["id"] for e in first_tenure["entries"]] == [i for i, _ in expected[:6]]

    rows = [r for r in export_rows(app) if r["uscc"] == X and r["kind"] in ("event", "record")]
    assert [(r["id"], r["outcome"]) for r in rows] == expected
    assert rows[0]["data"]["contact"] == {"name": "张*", "phone": "138****0000"}
