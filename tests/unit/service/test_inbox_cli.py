"""``lifecycle inbox resubmit``: a record whose re-submission is still in flight cannot be
re-submitted again (CONTRACT.md): exit 2 with the reason; ``--all`` leaves such records out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

import service.bootstrap
from lifecycle.application import InboundMessage, ProviderLifecycle
from lifecycle.records import InboundRecord, record_id
from service.cli import app as cli
from store.url import persistence_env
from tests.factories import admitted, line, uscc

U = uscc(81)
runner = CliRunner()


@dataclass
class FakeSender:
    """Stands in for the Kafka sender: remembers what it was asked to produce."""

    bootstrap: str
    topic: str

    def __call__(self, records: Sequence[InboundRecord], by: str) -> int:
        SENT.extend(r.id for r in records)
        return len(records)


SENT: list[UUID] = []


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("LIFECYCLE_STORE", url)
    monkeypatch.setattr(service.bootstrap, "KafkaSender", FakeSender)
    SENT.clear()
    app = ProviderLifecycle(env=persistence_env(url))
    app.process(
        [
            InboundMessage(line(admitted(U, "2026-01-02", id="a")), "kafka:in:0:0"),
            InboundMessage(b"{broken", "kafka:in:0:1"),
        ]
    )
    app.close()
    return url


def come_back(url: str, record: UUID) -> None:
    app = ProviderLifecycle(env=persistence_env(url))
    raw = app.record(record).raw
    app.process([InboundMessage(raw, "kafka:in:0:50", None, True, record)])
    app.close()


def test_resubmitting_a_record_in_flight_exits_2_with_the_reason(store: str) -> None:
    refused = str(record_id("kafka:in:0:0"))
    first = runner.invoke(cli, ["inbox", "resubmit", refused])
    assert first.exit_code == 0, first.output
    assert [UUID(refused)] == SENT
    again = runner.invoke(cli, ["inbox", "resubmit", refused])
    assert again.exit_code == 2
    assert "has not come back" in again.stderr
    assert [UUID(refused)] == SENT
    listed = json.loads(runner.invoke(cli, ["inbox", "list", "--json"]).stdout)
    assert {e["record"]: e["in_flight"] for e in listed}[refused] is True

    come_back(store, UUID(refused))
    after = runner.invoke(cli, ["inbox", "resubmit", refused])
    assert after.exit_code == 0, after.output
    assert [UUID(refused)] * 2 == SENT


def test_resubmit_all_leaves_out_the_records_in_flight(store: str) -> None:
    refused = record_id("kafka:in:0:0")
    assert runner.invoke(cli, ["inbox", "resubmit", str(refused)]).exit_code == 0
    bulk = runner.invoke(cli, ["inbox", "resubmit", "--all"])
    assert bulk.exit_code == 0, bulk.output
    assert "left out 1 records" in bulk.stderr
    assert "re-submitted 1 records" in bulk.stdout
    assert [refused, record_id("kafka:in:0:1")] == SENT
