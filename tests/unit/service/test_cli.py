"""The ``lifecycle`` command line: ``evaluate`` (CONTRACT.md) and ``schemas``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lifecycle.rules import business_date
from service.cli import app
from tests.factories import (
    admitted,
    applied,
    deposit_paid,
    exited,
    expelled,
    line,
    onboard,
    uscc,
)

U = uscc(51)
V = uscc(52)
EXIT = "2026-01-01T20:00:00Z"  # 2026-01-02 in Shanghai: may apply again from 2026-07-01

runner = CliRunner()


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    records: list[Any] = [
        *onboard(U, "2025-01-01"),
        exited(U, EXIT),
        applied(V, "2026-01-05", id="v-app"),
        admitted(V, "2026-01-06"),
        b"{broken",
        applied(V, "2026-01-05", id="v-app"),
    ]
    path.write_bytes(b"".join(line(r) + b"\n" for r in records))
    return path


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_evaluate_json_prints_the_contract_shape(events_file: Path):
    result = invoke("evaluate", str(events_file), "--as-of", "2026-06-30", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"outcomes", "providers"}
    assert [o["outcome"] for o in report["outcomes"]] == [
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "malformed",
        "duplicate",
    ]
    malformed = report["outcomes"][6]
    assert malformed["id"] is None and malformed["line"] == 7
    assert malformed["reason"].startswith("invalid_json")
    assert report["outcomes"][7] == {"id": "v-app", "outcome": "duplicate"}
    assert set(report["providers"]) == {U, V}
    u = report["providers"][U]
    assert set(u) == {"status", "deposit_balance_fen", "violations", "eligibility"}
    assert (u["status"], u["deposit_balance_fen"], u["violations"]) == ("exited", 0, 0)
    assert u["eligibility"]["can_apply"] is False
    assert u["eligibility"]["from"] == "2026-07-01"
    assert u["eligibility"]["clause"] == "A1.3-5"
    assert report["providers"][V]["status"] == "admitted"


def test_evaluate_as_of_changes_the_eligibility(events_file: Path):
    before = json.loads(
        invoke("evaluate", str(events_file), "--as-of", "2026-06-30", "--json").stdout
    )
    on = json.loads(invoke("evaluate", str(events_file), "--as-of", "2026-07-01", "--json").stdout)
    assert before["providers"][U]["eligibility"]["can_apply"] is False
    assert on["providers"][U]["eligibility"]["can_apply"] is True
    assert before["outcomes"] == on["outcomes"]


def test_evaluate_exits_0_whatever_the_outcomes(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"nope\n[]\n" + line(admitted(U)) + b"\n")
    result = invoke("evaluate", str(path), "--as-of", "2026-01-01", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert [o["outcome"] for o in report["outcomes"]] == ["malformed", "malformed", "refused"]
    assert report["outcomes"][2]["codes"] == ["STATE"]


def test_evaluate_an_empty_file_gives_an_empty_report(tmp_path: Path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    result = invoke("evaluate", str(path), "--as-of", "2026-01-01", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"outcomes": [], "providers": {}}


def test_evaluate_a_missing_file_exits_2(tmp_path: Path):
    missing = tmp_path / "nope.jsonl"
    result = invoke("evaluate", str(missing), "--json")
    assert result.exit_code == 2
    assert str(missing) in result.stderr
    assert result.stdout == ""


def test_evaluate_a_directory_exits_2(tmp_path: Path):
    result = invoke("evaluate", str(tmp_path), "--json")
    assert result.exit_code == 2


def test_evaluate_a_bad_as_of_is_a_usage_error(events_file: Path):
    result = invoke("evaluate", str(events_file), "--as-of", "30/06/2026", "--json")
    assert result.exit_code == 2


def test_evaluate_without_json_prints_tables(events_file: Path):
    result = invoke("evaluate", str(events_file), "--as-of", "2026-06-30")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Outcomes" in out
    assert "Providers as of 2026-06-30" in out
    for word in ("accepted", "malformed", "duplicate", "A1.3-5"):
        assert word in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_evaluate_default_as_of_is_today_in_shanghai():
    assert business_date(datetime(2026, 1, 1, 20, 0, tzinfo=UTC)) == date(2026, 1, 2)
    assert business_date(datetime(2026, 1, 1, 15, 59, tzinfo=UTC)) == date(2026, 1, 1)


def test_evaluate_without_as_of_uses_today(tmp_path: Path):
    path = tmp_path / "x.jsonl"
    events = [
        applied(U, "2020-01-01", registered_on="2015-01-01"),
        admitted(U, "2020-01-02"),
        deposit_paid(U, "2020-01-03"),
        expelled(U, "2020-02-01", "A1.2.2-2"),
        applied(V, "2999-01-01"),  # in the future: not part of today's history
    ]
    path.write_bytes(b"".join(line(e) + b"\n" for e in events))
    result = invoke("evaluate", str(path), "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["providers"][U]["status"] == "expelled"
    # Expelled in 2020 under A1.2.2-2: by any "today" after mid-2020 the cooldown is over.
    assert report["providers"][U]["eligibility"]["can_apply"] is True
    assert report["providers"][U]["eligibility"]["from"] is None
    assert report["providers"][V]["eligibility"]["clause"] is None  # no tenure yet today


def test_the_installed_entry_point_prints_only_json(events_file: Path):
    exe = Path(sys.executable).with_name("lifecycle")
    if not exe.exists():
        pytest.fail(f"console script not installed at {exe}")
    done = subprocess.run(
        [str(exe), "evaluate", str(events_file), "--as-of", "2026-07-01", "--json"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["providers"][U]["eligibility"]["can_apply"] is True


def test_schemas_writes_one_json_schema_per_type_and_the_envelope(tmp_path: Path):
    out = tmp_path / "schemas"
    result = invoke("schemas", str(out))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"{name}.schema.json"
        for name in (
            "envelope",
            "outbound",
            "refused",
            "provider.Applied",
            "provider.Admitted",
            "provider.DepositPaid",
            "provider.ViolationRecorded",
            "provider.Exited",
            "provider.Expelled",
            "provider.ApplicationDeclined",
            "provider.DepositDeducted",
            "provider.Applied.v2",
        )
    )
    applied_schema = json.loads((out / "provider.Applied.schema.json").read_text())
    assert applied_schema["type"] == "object"
    assert "capabilities" in applied_schema["properties"]
    envelope = json.loads((out / "envelope.schema.json").read_text())
    assert {"specversion", "id", "source", "type", "subject", "time", "data"} <= set(
        envelope["required"]
    )
