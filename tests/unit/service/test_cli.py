"""The ``lifecycle`` command line: ``evaluate`` (CONTRACT.md) and ``schemas``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lifecycle.rules import business_date
from service.cli import app
from tests.factories import (
    admitted,
    applied,
    deposit_deducted,
    deposit_paid,
    exited,
    expelled,
    line,
    onboard,
    uscc,
    violation,
)
from tests.strategies import json_rule_records

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
    # 1.1: as of today V has no event yet: listed, with no status and never seen.
    assert report["providers"][V]["status"] is None
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
            "provider.ReadmissionDecided",
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


# --- as of D, every field (CONTRACT.md 1.1) ----------------------------------------------

W = uscc(53)
NEVER_SEEN = {
    "status": None,
    "deposit_balance_fen": 0,
    "violations": 0,
    "eligibility": {
        "can_apply": True,
        "from": None,
        "permanent": False,
        "clause": None,
        "requires": None,
        "reason": "never applied",
    },
}


def evaluate_json(path: Path, as_of: str) -> dict[str, Any]:
    result = invoke("evaluate", str(path), "--as-of", as_of, "--json")
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.fixture
def history_file(tmp_path: Path) -> Path:
    path = tmp_path / "history.jsonl"
    records = [
        *onboard(U, "2026-01-01"),  # applied 01-01, admitted 01-02, full deposit 01-03
        violation(U, "2026-02-01"),
        deposit_deducted(U, "2026-03-01", amount_fen=1),
        exited(U, "2026-04-01"),
    ]
    path.write_bytes(b"".join(line(r) + b"\n" for r in records))
    return path


@pytest.mark.parametrize(
    ("as_of", "status", "deposit", "violations", "clause", "can_apply"),
    [
        ("2025-12-31", None, 0, 0, None, True),  # nothing dated yet: as if never seen
        ("2026-01-01", "applied", 0, 0, "STATE", False),
        ("2026-01-02", "admitted", 0, 0, "STATE", False),
        ("2026-01-03", "active", 10_000_000, 0, "STATE", False),
        ("2026-01-31", "active", 10_000_000, 0, "STATE", False),
        ("2026-02-01", "active", 10_000_000, 1, "STATE", False),
        ("2026-03-01", "admitted", 9_999_999, 1, "STATE", False),  # a shortfall
        ("2026-04-01", "exited", 0, 1, "A1.3-5", False),
        ("2026-09-28", "exited", 0, 1, None, True),  # 180 days after the exit
        ("9999-12-31", "exited", 0, 1, None, True),
    ],
)
def test_evaluate_answers_every_field_as_of_the_date(
    history_file: Path,
    as_of: str,
    status: str | None,
    deposit: int,
    violations: int,
    clause: str | None,
    can_apply: bool,
):
    report = evaluate_json(history_file, as_of)
    assert [o["outcome"] for o in report["outcomes"]] == ["accepted"] * 6  # whatever the date
    u = report["providers"][U]
    assert (u["status"], u["deposit_balance_fen"], u["violations"]) == (status, deposit, violations)
    assert (u["eligibility"]["clause"], u["eligibility"]["can_apply"]) == (clause, can_apply)
    if status is None:
        assert u == NEVER_SEEN


def test_evaluate_lists_every_subject_with_an_accepted_or_refused_record(tmp_path: Path):
    path = tmp_path / "subjects.jsonl"
    bad_data = applied(W, id="w-bad")
    bad_data["data"]["registered_capital_fen"] = "lots"
    records = [
        applied(U, "2026-01-01"),
        admitted(V, "2026-01-01"),  # refused (STATE): V never applied
        bad_data,  # malformed: W has no accepted or refused record
        applied(uscc(54), "2026-05-01"),  # accepted, but after the date
    ]
    path.write_bytes(b"".join(line(r) + b"\n" for r in records))
    report = evaluate_json(path, "2026-02-01")
    assert [o["outcome"] for o in report["outcomes"]] == [
        "accepted",
        "refused",
        "malformed",
        "accepted",
    ]
    assert list(report["providers"]) == [U, V, uscc(54)]
    assert report["providers"][U]["status"] == "applied"
    assert report["providers"][V] == NEVER_SEEN  # only refused: no status
    assert report["providers"][uscc(54)] == NEVER_SEEN  # none of its events dated by then


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"id": 17, "specversion": "1.0"}',
        b'{"specversion": "1.0"}',
        b'{"id": "", "specversion": "1.0"}',
        b'{"id": "\\udc00", "specversion": "1.0"}',  # an escaped lone surrogate
        b'{"id": "\xed\xb0\x80", "specversion": "1.0"}',  # a raw one: not UTF-8
        b'{"id": "a\\u0000b", "specversion": "1.0"}',
        b'{"id": "one", "id": "two", "specversion": "1.0"}',
    ],
)
def test_a_malformed_line_whose_id_cannot_be_read_gets_null_and_its_line(
    tmp_path: Path, raw: bytes
):
    path = tmp_path / "ids.jsonl"
    path.write_bytes(line(applied(U)) + b"\n\n" + raw + b"\n")
    report = evaluate_json(path, "2026-02-01")
    assert report["outcomes"][1]["outcome"] == "malformed"
    assert report["outcomes"][1]["id"] is None
    assert report["outcomes"][1]["line"] == 3  # the blank line 2 still counts


HOSTILE_LINES = [
    b"\xef\xbb\xbf" + line(applied(W, id="bom")),
    json.dumps(applied(W, id="utf16")).encode("utf-16-le"),
    line(applied(W, "0001-01-01T00:00:00+08:00", id="far")),
    line(applied(W, registered_on="9999-12-31", id="late")),
    line(applied(W, id="SURR")).replace(b"SURR", b"\xed\xb0\x80"),  # raw surrogate bytes
    line(applied(W, id="SURR")).replace(b"SURR", b"\\udc00"),  # an escaped one
    b'{"specversion":"1.0","id":"x","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    line(deposit_paid(W, amount_fen=10**30, id="huge")),
    b"\x00\x00\x00\x00",
    b"\xff" * 40,
]


def test_evaluate_always_prints_its_json_and_exits_0(tmp_path: Path):
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join([*HOSTILE_LINES, line(applied(U, "2026-01-01"))]) + b"\n")
    exe = Path(sys.executable).with_name("lifecycle")
    done = subprocess.run(
        [str(exe), "evaluate", str(path), "--as-of", "2026-02-01", "--json"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.decode("utf-8"))  # strict UTF-8: writable as it is
    outcomes = [o["outcome"] for o in report["outcomes"]]
    assert outcomes[-1] == "accepted"
    assert set(outcomes[:-1]) == {"malformed"}
    assert len(outcomes) == len(
        [x for x in path.read_bytes().split(b"\n") if x.strip()]
    )  # one outcome per non-blank line (the UTF-16 one may split in several)
    assert list(report["providers"]) == [U]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(json_rule_records(), min_size=1, max_size=6))
def test_evaluate_gives_one_outcome_per_hostile_line_and_writable_json(lines: list[bytes]):
    from lifecycle.evaluate import evaluate

    records = [r for r in lines if r.strip()]
    report = evaluate([r + b"\n" for r in records], date(2026, 6, 1))
    assert len(report["outcomes"]) == len(records)
    for entry in report["outcomes"]:
        assert entry["outcome"] in {"accepted", "refused", "malformed", "duplicate"}
        if entry["outcome"] == "malformed":
            assert not entry["reason"].startswith("internal_error"), entry["reason"]
    json.dumps(report, ensure_ascii=False).encode("utf-8")  # strict: no lone surrogate
