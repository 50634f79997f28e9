"""The wire contract: every malformed record is dead-lettered with a stable reason code.

CONTRACT.md: a record that is not valid JSON, not a valid envelope, of an unknown type,
with a payload that does not match its schema, or with an invalid USCC is *malformed*,
never applied and never an exception.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.contract import Envelope
from lifecycle.parsing import Malformed, parse_record
from tests.factories import (
    admitted,
    applied,
    bad_check_uscc,
    deposit_deducted,
    deposit_paid,
    exited,
    expelled,
    line,
    outcomes,
    run,
    uscc,
    violation,
)

U = uscc(7)
CODES = (
    "invalid_json",
    "not_an_object",
    "unknown_type",
    "invalid_envelope",
    "invalid_subject",
    "invalid_data",
    # CONTRACT.md 1.1, JSON rules (I-JSON): one code per rule.
    "invalid_encoding",
    "byte_order_mark",
    "duplicate_member",
    "lone_surrogate",
    "nul_character",
    "integer_out_of_range",
    "date_out_of_range",
)

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(ev: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = ev
        for key in parents:
            target = target[key]
        target[leaf] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(ev: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = ev
        for key in parents:
            target = target[key]
        del target[leaf]

    return mutate


def _malformed(raw: bytes) -> Malformed:
    """Malformed for the parser, and the same single outcome through ``evaluate``."""
    parsed = parse_record(raw)
    assert isinstance(parsed, Malformed), f"expected malformed, got {parsed!r}"
    assert parsed.reason.split(":", 1)[0] in CODES
    if not raw.strip():
        return parsed  # evaluate skips blank lines (README)
    report = run([raw])
    assert report["outcomes"] == [
        {"id": parsed.id, "outcome": "malformed", "reason": parsed.reason, "line": 1}
    ]
    assert report["providers"] == {}
    return parsed


# --- bytes that are not an event ------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"not json", "invalid_json"),
        (b'{"specversion": "1.0",', "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_encoding"),  # 1.1: UTF-16 (by its BOM), not UTF-8
        (b"", "invalid_json"),
        (b"[]", "not_an_object"),
        (b"[1, 2]", "not_an_object"),
        (b"42", "not_an_object"),
        (b'"provider.Applied"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"true", "not_an_object"),
    ],
)
def test_not_json_or_not_an_object_is_malformed_without_an_id(raw: bytes, code: str):
    parsed = _malformed(raw)
    assert parsed.reason.startswith(f"{code}:")
    assert parsed.code == code
    assert parsed.id is None


def test_deeply_nested_json_is_malformed_not_an_exception():
    # An unterminated 100,000-deep array is not valid JSON. parse_record promises to
    # never raise; a RecursionError here would crash the consumer's whole batch.
    parsed = parse_record(b"[" * 100_000)
    assert isinstance(parsed, Malformed)
    assert parsed.code == "invalid_json"


def test_deeply_nested_data_in_evaluate_is_one_malformed_outcome():
    nested = b'{"specversion": "1.0", "data": ' + b'{"a": ' * 50_000
    report = run([nested, applied(U)])
    assert outcomes(report) == ["malformed", "accepted"]
    assert report["outcomes"][0]["line"] == 1


# --- the envelope ---------------------------------------------------------------------

ENVELOPE_CASES: list[tuple[str, Mutation, tuple[str, ...]]] = [
    ("unknown type", _set("type", "provider.Suspended"), ("unknown_type",)),
    ("type without prefix", _set("type", "Applied"), ("unknown_type",)),
    ("type not a string", _set("type", 7), ("invalid_envelope", "unknown_type")),
    ("missing type", _drop("type"), ("invalid_envelope", "unknown_type")),
    ("missing specversion", _drop("specversion"), ("invalid_envelope",)),
    ("specversion 0.3", _set("specversion", "0.3"), ("invalid_envelope",)),
    ("specversion as number", _set("specversion", 1.0), ("invalid_envelope",)),
    ("missing source", _drop("source"), ("invalid_envelope",)),
    ("empty source", _set("source", ""), ("invalid_envelope",)),
    ("missing time", _drop("time"), ("invalid_envelope",)),
    ("time without offset", _set("time", "2026-01-01T10:00:00"), ("invalid_envelope",)),
    ("time is only a date", _set("time", "2026-01-01"), ("invalid_envelope",)),
    ("time as epoch number", _set("time", 1767225600), ("invalid_envelope",)),
    ("time not a real instant", _set("time", "2026-02-30T10:00:00+08:00"), ("invalid_envelope",)),
    ("missing data", _drop("data"), ("invalid_envelope", "invalid_data")),
    ("data is a list", _set("data", []), ("invalid_envelope", "invalid_data")),
    ("data is null", _set("data", None), ("invalid_envelope", "invalid_data")),
    # 1.1: an unknown attribute is an extension attribute if its name fits [a-z0-9]{1,20}.
    ("extra envelope field", _set("partitionKey", "x"), ("invalid_envelope",)),
    ("extension name too long", _set("a" * 21, "x"), ("invalid_envelope",)),
    ("extension name with a dash", _set("trace-parent", "x"), ("invalid_envelope",)),
    ("extension value an object", _set("traceparent", {"v": 1}), ("invalid_envelope",)),
    ("extension value a list", _set("traceparent", ["x"]), ("invalid_envelope",)),
    ("extension value a float", _set("traceparent", 1.5), ("invalid_envelope",)),
    ("extension value null", _set("traceparent", None), ("invalid_envelope",)),
    ("reserved sequence", _set("sequence", 1), ("invalid_envelope",)),
    ("reserved recordedtime", _set("recordedtime", "2026-01-01T10:00:00Z"), ("invalid_envelope",)),
    (
        "content type with a bad parameter",
        _set("datacontenttype", "application/json; x"),
        ("invalid_envelope",),
    ),
    (
        "content type json-seq",
        _set("datacontenttype", "application/json-seq"),
        ("invalid_envelope",),
    ),
    ("other content type", _set("datacontenttype", "text/plain"), ("invalid_envelope",)),
    ("bad check character", _set("subject", bad_check_uscc(7)), ("invalid_subject",)),
    ("lowercase subject", _set("subject", U.lower()), ("invalid_subject",)),
    ("17-char subject", _set("subject", U[:17]), ("invalid_subject",)),
    ("subject with I/O", _set("subject", "91330100IO0000001X"), ("invalid_subject",)),
    ("subject with S/V/Z", _set("subject", "9133010000SVZ00011"), ("invalid_subject",)),
    ("subject a number", _set("subject", 91330100), ("invalid_subject",)),
    # 1.1: an 18-digit number is beyond ±(2^53 − 1) before it is a bad subject.
    ("subject an 18-digit number", _set("subject", 913301000000000011), ("integer_out_of_range",)),
    ("missing subject", _drop("subject"), ("invalid_subject", "invalid_envelope")),
]


@pytest.mark.parametrize(
    ("mutation", "codes"),
    [pytest.param(m, c, id=name) for name, m, c in ENVELOPE_CASES],
)
def test_invalid_envelope_is_malformed_with_a_stable_code(mutation: Mutation, codes):
    ev = applied(U, id="env-1")
    mutation(ev)
    parsed = _malformed(line(ev))
    assert parsed.code in codes, parsed.reason
    assert parsed.id == "env-1"


@pytest.mark.parametrize("bad_id", [None, "", 17, ["e1"], {"id": "e1"}])
def test_unreadable_id_is_malformed_and_reported_as_null(bad_id: Any):
    ev = applied(U)
    ev["id"] = bad_id
    parsed = _malformed(line(ev))
    assert parsed.code == "invalid_envelope"
    assert parsed.id is None


def test_missing_id_is_malformed_with_a_null_id():
    ev = applied(U)
    del ev["id"]
    parsed = _malformed(line(ev))
    assert parsed.code == "invalid_envelope"
    assert parsed.id is None


def test_datacontenttype_may_be_omitted():
    ev = applied(U)
    del ev["datacontenttype"]
    assert isinstance(parse_record(line(ev)), Envelope)


# --- payloads -------------------------------------------------------------------------

Builder = Callable[[], dict[str, Any]]

DATA_CASES: list[tuple[str, Builder, Mutation]] = [
    # Applied: missing and extra fields
    *[
        (f"Applied missing {field}", lambda: applied(U), _drop(f"data.{field}"))
        for field in (
            "company_name",
            "entity_type",
            "real_name_verified",
            "general_taxpayer",
            "registered_capital_fen",
            "registered_on",
            "advantage_statement",
            "is_store_account",
            "entity_city",
            "service_city",
            "capabilities",
            "contact",
        )
    ],
    ("Applied extra field", lambda: applied(U), _set("data.deposit_fen", 1)),
    ("contact extra field", lambda: applied(U), _set("data.contact.email", "a@b.c")),
    ("contact missing phone", lambda: applied(U), _drop("data.contact.phone")),
    ("empty company name", lambda: applied(U), _set("data.company_name", "")),
    # wrong types for an int
    ("capital as string", lambda: applied(U), _set("data.registered_capital_fen", "50000000")),
    ("capital as float", lambda: applied(U), _set("data.registered_capital_fen", 50000000.0)),
    ("capital as bool", lambda: applied(U), _set("data.registered_capital_fen", True)),
    ("capital null", lambda: applied(U), _set("data.registered_capital_fen", None)),
    ("negative capital", lambda: applied(U), _set("data.registered_capital_fen", -1)),
    # wrong types for a bool
    ("verified as string", lambda: applied(U), _set("data.real_name_verified", "true")),
    ("verified as int", lambda: applied(U), _set("data.real_name_verified", 1)),
    ("store account as int", lambda: applied(U), _set("data.is_store_account", 0)),
    # enumerations
    ("unknown entity type", lambda: applied(U), _set("data.entity_type", "company")),
    ("unknown capability", lambda: applied(U), _set("data.capabilities", ["livestreaming"])),
    ("capabilities a string", lambda: applied(U), _set("data.capabilities", "operations")),
    # dates are YYYY-MM-DD
    ("date with slashes", lambda: applied(U), _set("data.registered_on", "2020/05/01")),
    ("date compact", lambda: applied(U), _set("data.registered_on", "20200501")),
    ("date unpadded", lambda: applied(U), _set("data.registered_on", "2020-5-1")),
    ("date impossible", lambda: applied(U), _set("data.registered_on", "2021-02-29")),
    ("date with time", lambda: applied(U), _set("data.registered_on", "2020-05-01T00:00:00Z")),
    ("date as number", lambda: applied(U), _set("data.registered_on", 20200501)),
    # amounts
    ("deposit zero", lambda: deposit_paid(U), _set("data.amount_fen", 0)),
    ("deposit negative", lambda: deposit_paid(U), _set("data.amount_fen", -10_000_000)),
    ("deposit as string", lambda: deposit_paid(U), _set("data.amount_fen", "10000000")),
    ("deposit as float", lambda: deposit_paid(U), _set("data.amount_fen", 10_000_000.0)),
    ("deposit as bool", lambda: deposit_paid(U), _set("data.amount_fen", True)),
    ("deposit extra field", lambda: deposit_paid(U), _set("data.currency", "CNY")),
    ("deduction zero", lambda: deposit_deducted(U), _set("data.amount_fen", 0)),
    ("deduction negative", lambda: deposit_deducted(U), _set("data.amount_fen", -1)),
    ("deduction clause STATE", lambda: deposit_deducted(U), _set("data.clause", "STATE")),
    ("deduction clause unknown", lambda: deposit_deducted(U), _set("data.clause", "A9-9")),
    # other payloads
    ("Admitted missing decided_by", lambda: admitted(U), _drop("data.decided_by")),
    ("Admitted extra field", lambda: admitted(U), _set("data.note", "ok")),
    ("violation not Article 2", lambda: violation(U), _set("data.clause", "A1.1.1-1")),
    ("violation unknown severity", lambda: violation(U), _set("data.severity", "critical")),
    ("violation missing evidence", lambda: violation(U), _drop("data.evidence_ref")),
    ("exit flag as string", lambda: exited(U), _set("data.merchant_fees_settled", "yes")),
    ("exit flag missing", lambda: exited(U), _drop("data.transaction_obligations_fulfilled")),
    ("expulsion unknown ground", lambda: expelled(U), _set("data.ground", "A1.3-1")),
    ("expulsion non-A2 violation", lambda: expelled(U), _set("data.violations", ["A1.1.2"])),
    (
        "readmission permanent false",
        lambda: expelled(U, ground="A1.2.2-4"),
        _set("data.readmission", {"permanent": False}),
    ),
    (
        "readmission until and permanent",
        lambda: expelled(U, ground="A1.2.2-4"),
        _set("data.readmission", {"until": "2027-01-01", "permanent": True}),
    ),
    (
        "readmission empty object",
        lambda: expelled(U, ground="A1.2.2-4"),
        _set("data.readmission", {}),
    ),
    (
        "readmission until bad date",
        lambda: expelled(U, ground="A1.2.2-4"),
        _set("data.readmission", {"until": "2027-1-1"}),
    ),
    (
        "readmission permanent as string",
        lambda: expelled(U, ground="A1.2.2-4"),
        _set("data.readmission", {"permanent": "true"}),
    ),
    (
        "readmission permanent as int",
        lambda: expelled(U, ground="A1.2.2-4"),
        _set("data.readmission", {"permanent": 1}),
    ),
    (
        "readmission permanent as float",
        lambda: expelled(U, ground="A1.2.2-4"),
        _set("data.readmission", {"permanent": 1.0}),
    ),
]


@pytest.mark.parametrize(
    ("build", "mutation"),
    [pytest.param(b, m, id=name) for name, b, m in DATA_CASES],
)
def test_payload_not_matching_its_schema_is_invalid_data(build: Builder, mutation: Mutation):
    ev = build()
    ev["id"] = "data-1"
    mutation(ev)
    parsed = _malformed(line(ev))
    assert parsed.reason.startswith("invalid_data:"), parsed.reason
    assert parsed.id == "data-1"
    assert parsed.subject == U


def test_every_builder_is_valid_before_mutation():
    for build in {b for _, b, _ in DATA_CASES} | {lambda: applied(U)}:
        assert isinstance(parse_record(line(build())), Envelope)


def test_invalid_data_reason_names_the_offending_field():
    ev = deposit_paid(U)
    ev["data"]["amount_fen"] = 0
    parsed = _malformed(line(ev))
    assert "amount_fen" in parsed.reason


@pytest.mark.parametrize(
    "readmission", [None, {"until": "2027-01-01"}, {"permanent": True}], ids=str
)
def test_the_three_readmission_shapes_are_valid(readmission):
    ev = expelled(U, ground="A1.2.2-4", readmission=readmission)
    assert isinstance(parse_record(line(ev)), Envelope)


def test_valid_time_forms_with_offsets_parse_to_the_right_instant():
    for time in ("2026-01-01T20:00:00Z", "2026-01-02T04:00:00+08:00", "2026-01-01T20:00:00.5Z"):
        ev = applied(U)
        ev["time"] = time
        parsed = parse_record(line(ev))
        assert isinstance(parsed, Envelope), time
        assert parsed.business_date == date(2026, 1, 2)


def test_a_valid_record_keeps_its_payload_in_canonical_json():
    parsed = parse_record(line(applied(U)))
    assert isinstance(parsed, Envelope)
    assert parsed.subject == U
    assert parsed.data == json.loads(line(applied(U)))["data"]


# --- malformed records through evaluate ----------------------------------------------


def test_malformed_lines_carry_their_line_number_and_id_or_null():
    good = applied(U, id="ok-1")
    bad_type = applied(U, id="bad-type")
    bad_type["type"] = "provider.Nope"
    report = run([good, b"{oops", bad_type, b"[]"])
    assert outcomes(report) == ["accepted", "malformed", "malformed", "malformed"]
    _, broken, unknown, array = report["outcomes"]
    assert broken == {"id": None, "outcome": "malformed", "reason": broken["reason"], "line": 2}
    assert broken["reason"].startswith("invalid_json")
    assert unknown["id"] == "bad-type" and unknown["line"] == 3
    assert unknown["reason"].startswith("unknown_type")
    assert array["id"] is None and array["line"] == 4
    assert array["reason"].startswith("not_an_object")


def test_blank_lines_are_skipped_but_still_counted_in_line_numbers():
    from lifecycle.evaluate import evaluate

    lines = [line(applied(U)) + b"\n", b"\n", b"   \r\n", b"garbage\n"]
    report = evaluate(lines, date(2026, 6, 1))
    assert outcomes(report) == ["accepted", "malformed"]
    assert report["outcomes"][1]["line"] == 4


def test_crlf_line_endings_are_not_part_of_the_record():
    from lifecycle.evaluate import evaluate

    report = evaluate([line(applied(U)) + b"\r\n", line(admitted(U)) + b"\r\n"], date(2026, 6, 1))
    assert outcomes(report) == ["accepted", "accepted"]


def test_a_malformed_event_has_no_effect_on_the_provider():
    bad = applied(U)
    bad["data"]["registered_capital_fen"] = "lots"
    report = run([bad, admitted(U)])
    assert outcomes(report) == ["malformed", "refused"]
    assert report["outcomes"][1]["codes"] == ["STATE"]
    assert report["providers"][U]["status"] is None


def test_malformed_expelled_readmission_is_not_applied():
    from tests.factories import onboard

    bad = expelled(U, "2026-03-01", "A1.2.2-4", readmission={"permanent": False})
    report = run([*onboard(U), bad], as_of="2026-03-02")
    assert outcomes(report) == ["accepted"] * 3 + ["malformed"]
    assert report["outcomes"][-1]["reason"].startswith("invalid_data")
    assert report["providers"][U]["status"] == "active"


# --- never an exception ---------------------------------------------------------------


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_parse_record_never_raises_on_arbitrary_bytes(raw: bytes):
    parsed = parse_record(raw)
    assert isinstance(parsed, Envelope | Malformed)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.sampled_from(
        [applied(U), admitted(U), deposit_paid(U), violation(U), exited(U), expelled(U)]
    ),
    st.lists(st.tuples(st.booleans(), st.text(max_size=25), json_values), max_size=3),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_parse_record_never_raises_on_mutated_events(base, edits):
    ev = copy.deepcopy(base)
    for in_data, key, value in edits:
        target = ev["data"] if in_data else ev
        field = key if key else next(iter(target), "x")
        target[field] = value
    parsed = parse_record(json.dumps(ev).encode())
    if isinstance(parsed, Malformed):
        assert parsed.code in CODES
    else:
        assert parsed.type == ev["type"]
