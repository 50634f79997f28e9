"""The published JSON Schemas (CONTRACT.md, "Machine-readable contract").

They must describe what the service really does: every record the relay publishes
validates against the outbound or refused schema, every event the service judges
(accepted, refused, duplicate) validates against the envelope schema, and the malformed
records that JSON Schema can tell apart are rejected by it as they are by the service.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from consumers.relay import Relay, RelayConfig
from lifecycle.application import InboundMessage
from lifecycle.contract import (
    APPLIED_V2_SCHEMA,
    EVENT_TYPES,
    PAYLOADS,
    VERSIONED_PAYLOADS,
    Envelope,
    payload_version,
)
from lifecycle.parsing import Malformed, parse_record
from lifecycle.rules import Clause
from lifecycle.schemas import (
    DRAFT,
    MAX_SAFE_INTEGER,
    json_schemas,
    payload_id,
    payload_json_schemas,
    unexpressed,
)
from service.demo.stream import records
from tests.factories import (
    admitted,
    applied,
    applied_data,
    declined,
    deposit_deducted,
    deposit_paid,
    event,
    exited,
    expelled,
    line,
    popo_app,
    uscc,
    violation,
)

SCHEMAS = json_schemas()
U = uscc(901)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ADDRESS = {"province": "浙江省", "city": "杭州", "district": None, "street": None}


def validator(name: str) -> Draft202012Validator:
    """A draft 2020-12 validator of one published schema, checking formats too."""
    return Draft202012Validator(SCHEMAS[name], format_checker=Draft202012Validator.FORMAT_CHECKER)


ENVELOPE = validator("envelope")
OUTBOUND = validator("outbound")
REFUSED = validator("refused")


def errors(v: Draft202012Validator, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(instance)]


def applied_v2(subject: str, when: str, **overrides: Any) -> dict[str, Any]:
    data = applied_data(**overrides)
    data.pop("entity_city")
    data["address"] = ADDRESS
    return event("provider.Applied", subject, data, when, dataschema=APPLIED_V2_SCHEMA)


# --- the documents ----------------------------------------------------------------------


def test_every_schema_is_a_valid_draft_2020_12_document_with_its_own_id():
    for name, schema in SCHEMAS.items():
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == DRAFT, name
        assert schema["$id"].startswith("urn:provider-lifecycle:schema:"), name
        assert schema["description"], name
    ids = [s["$id"] for s in SCHEMAS.values()]
    assert len(set(ids)) == len(ids)


def test_there_is_a_schema_for_the_envelope_every_payload_version_and_both_topics():
    payloads = {*PAYLOADS, *(f"{t}.v{v}" for t, v in VERSIONED_PAYLOADS)}
    assert set(SCHEMAS) == {"envelope", "outbound", "refused", *payloads}
    assert set(payload_json_schemas()) == {"envelope", *payloads}
    assert set(EVENT_TYPES) == set(PAYLOADS)
    assert SCHEMAS["envelope"]["properties"]["type"]["enum"] == list(EVENT_TYPES)
    assert SCHEMAS["outbound"]["properties"]["type"]["enum"] == list(EVENT_TYPES)
    assert SCHEMAS["provider.Applied"]["additionalProperties"] is False
    assert "registered_capital_fen" in SCHEMAS["provider.Applied"]["required"]
    assert "subject" in SCHEMAS["envelope"]["properties"]


def test_every_validator_of_the_contract_is_expressed_in_the_schemas():
    assert unexpressed() == set()


def test_a_payload_id_is_a_dataschema_that_selects_that_version():
    assert payload_id("provider.Applied", 2) == APPLIED_V2_SCHEMA
    assert SCHEMAS["provider.Applied.v2"]["$id"] == APPLIED_V2_SCHEMA
    for event_type in PAYLOADS:
        assert SCHEMAS[event_type]["$id"] == payload_id(event_type, 1)
        assert payload_version(event_type, payload_id(event_type, 1)) == 1
    for event_type, version in VERSIONED_PAYLOADS:
        assert payload_version(event_type, payload_id(event_type, version)) == version


def test_what_json_schema_cannot_say_is_in_the_description():
    for name in ("envelope", "outbound", "refused"):
        text = SCHEMAS[name]["description"]
        for rule in ("check character", "RFC 7493", "byte-order mark", "U+0000", "2^53"):
            assert rule in text, (name, rule)
        assert "1900-01-01" in text and "2999-12-31" in text


def test_the_schemas_are_as_strict_as_the_service_where_json_schema_can_say_it():
    subject = SCHEMAS["envelope"]["properties"]["subject"]
    assert (subject["minLength"], subject["maxLength"]) == (18, 18)
    expelled_ = SCHEMAS["provider.Expelled"]["properties"]
    assert expelled_["ground"]["enum"] == ["A1.2.2-1", "A1.2.2-2", "A1.2.2-3", "A1.2.2-4", "A3-2"]
    assert len(expelled_["violations"]["items"]["enum"]) == 12
    deducted = SCHEMAS["provider.DepositDeducted"]["properties"]
    assert "STATE" not in deducted["clause"]["enum"] and "A4-1" in deducted["clause"]["enum"]
    assert deducted["amount_fen"]["exclusiveMinimum"] == 0
    assert deducted["amount_fen"]["maximum"] == MAX_SAFE_INTEGER
    capital = SCHEMAS["provider.Applied"]["properties"]["registered_capital_fen"]
    assert (capital["minimum"], capital["maximum"]) == (0, MAX_SAFE_INTEGER)
    assert SCHEMAS["provider.Applied"]["properties"]["registered_on"]["format"] == "date"
    assert SCHEMAS["envelope"]["properties"]["time"]["format"] == "date-time"
    codes = SCHEMAS["refused"]["properties"]["data"]["properties"]["codes"]["items"]["enum"]
    assert {"STATE", "ORDER", *(c.value for c in Clause)} == set(codes)


# --- what the relay publishes for a realistic stream ------------------------------------


def published() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The demo stream (and a few v2 applications) through ``process`` and the relay."""
    lines = [raw for raw, _, _ in records(150, 7, date(2024, 1, 1))]
    # A v2 application accepted, then one refused (STATE: the tenure is open); then events
    # with extension attributes (1.1: kept and published), one accepted and one refused.
    v2 = (applied_v2(U, "2026-01-01"), admitted(U, "2026-01-02"), applied_v2(U, "2026-01-03"))
    extended = (
        {**deposit_paid(U, "2026-01-04"), "traceparent": TRACEPARENT, "partitionkey": 7},
        {**exited(U, "2026-01-05", settled=False), "traceparent": TRACEPARENT, "replay": True},
    )
    lines += [line(e) for e in (*v2, *extended)]
    app = popo_app()
    for start in range(0, len(lines), 500):
        app.process(
            [
                InboundMessage(raw, f"kafka:inbound:0:{n}")
                for n, raw in enumerate(lines[start : start + 500], start=start)
            ]
        )
    relay = Relay(app, RelayConfig("127.0.0.1:9", "out", "refused", "dlq"))
    outgoing = relay.translate(app.process_recorder.select_notifications(1, 1_000_000))
    outbound = [json.loads(o.value) for o in outgoing if o.topic == "out"]
    refused = [json.loads(o.value) for o in outgoing if o.topic == "refused"]
    return outbound, refused


OUT, REFUSALS = published()


def test_every_outbound_record_of_a_realistic_stream_validates():
    assert len(OUT) > 500
    assert Counter(e.get("dataschema") for e in OUT)[APPLIED_V2_SCHEMA] == 1
    for record in OUT:
        assert errors(OUTBOUND, record) == [], record["id"]


def test_every_refused_record_of_a_realistic_stream_validates():
    assert len(REFUSALS) > 5
    assert any(r["data"]["event"].get("dataschema") == APPLIED_V2_SCHEMA for r in REFUSALS)
    for record in REFUSALS:
        assert errors(REFUSED, record) == [], record["id"]
        # The refused event inside is an inbound event the envelope schema accepts.
        assert errors(ENVELOPE, record["data"]["event"]) == []


def test_the_demo_stream_covers_most_types():
    seen = {e["type"] for e in OUT}
    assert {"provider.Applied", "provider.Admitted", "provider.DepositPaid"} <= seen
    assert {"provider.Exited", "provider.Expelled", "provider.ViolationRecorded"} <= seen


def broken(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``record`` with one attribute (``a.b`` for nested) set, or removed when ``...``."""
    out = copy.deepcopy(record)
    *parents, leaf = path.split(".")
    target = out
    for key in parents:
        target = target[key]
    if value is ...:
        del target[leaf]
    else:
        target[leaf] = value
    return out


OUTBOUND_BREAKS = [
    ("sequence", ...),
    ("sequence", 0),
    ("sequence", "1"),
    ("sequence", MAX_SAFE_INTEGER + 1),
    ("recordedtime", ...),
    ("recordedtime", "yesterday"),  # only the format checker can tell
    ("recordedtime", "2026-01-02T10:00:00"),
    ("time", "2026-02-30T10:00:00+08:00"),
    ("subject", "91330100000000001c"),
    ("subject", "9133010000000000"),
    ("specversion", "0.3"),
    ("type", "provider.Suspended"),
    ("datacontenttype", "text/plain"),
    ("dataschema", "urn:x:provider.Admitted.v2"),
    ("TraceParent", "00-abc"),
    ("trace_parent", "00-abc"),
    ("traceparent", {"version": "00"}),
    ("traceparent", 1.5),
    ("partitionkey", MAX_SAFE_INTEGER + 1),
    ("data.remark", "补录"),
    ("data", ...),
]


@pytest.mark.parametrize(("path", "value"), OUTBOUND_BREAKS)
def test_the_outbound_schema_rejects_what_the_relay_never_publishes(path: str, value: Any):
    record = next(e for e in OUT if e["type"] == "provider.Admitted")
    assert errors(OUTBOUND, record) == []
    assert errors(OUTBOUND, broken(record, path, value))


def test_the_outbound_schema_takes_the_inbound_extension_attributes():
    record = next(e for e in OUT if e["type"] == "provider.DepositPaid")
    extended = {
        **record,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "partitionkey": -42,
        "replayed": False,
    }
    assert errors(OUTBOUND, extended) == []


REFUSED_BREAKS = [
    ("data.codes", []),
    ("data.codes", ["A9.9"]),
    ("data.reason", ...),
    ("data.extra", 1),
    ("data.event.subject", "91330100000000001c"),
    ("data.event.sequence", 1),
    ("data.event.data.remark", "补录"),
    ("type", "provider.Applied"),
    ("id", "e-1"),
    ("subject", None),
]


@pytest.mark.parametrize(("path", "value"), REFUSED_BREAKS)
def test_the_refused_schema_rejects_what_the_relay_never_publishes(path: str, value: Any):
    record = REFUSALS[0]
    assert errors(REFUSED, broken(record, path, value))


# --- the inbound envelope and the service agree -----------------------------------------


def test_the_envelope_schema_accepts_every_event_the_service_judges():
    judged = Counter()
    for raw, outcome, _ in records(150, 7, date(2024, 1, 1)):
        if outcome == "malformed":
            continue
        judged[outcome] += 1
        assert errors(ENVELOPE, json.loads(raw)) == [], raw
    assert judged["accepted"] > 500 and judged["refused"] and judged["duplicate"]


def test_the_envelope_schema_rejects_the_demo_streams_malformed_records_it_can_tell():
    told = 0
    for raw, outcome, _ in records(600, 7, date(2024, 1, 1)):
        if outcome != "malformed":
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            continue  # not JSON: no instance to validate
        parsed = parse_record(raw)
        assert isinstance(parsed, Malformed)
        if parsed.code == "invalid_subject" and len(obj["subject"]) == 18:
            assert errors(ENVELOPE, obj) == []  # the check character: only the service
        else:
            assert errors(ENVELOPE, obj), parsed.reason
            told += 1
    assert told > 10


VALID = [
    applied(U),
    applied(U, advantage_statement="产业带头部"),
    applied_v2(U, "2026-01-01"),
    event("provider.Applied", U, applied_data(), "2026-01-01", dataschema="x/provider.Applied.v1"),
    event("provider.Applied", U, applied_data(), "2026-01-01", dataschema="urn:x:other"),
    event("provider.Applied", U, applied_data(), "2026-01-01", datacontenttype=None),
    {k: v for k, v in applied(U).items() if k != "datacontenttype"},
    admitted(U),
    deposit_paid(U),
    deposit_deducted(U),
    violation(U),
    exited(U, settled=False),
    expelled(U),
    expelled(U, ground="A1.2.2-4", readmission={"until": "2027-01-01"}),
    expelled(U, ground="A3-2", readmission={"permanent": True}, violations=["A2.2-4"]),
    {**expelled(U), "data": {"ground": "A1.2.2-3", "violations": []}},
    declined(U),
    event("provider.Admitted", U, {"decided_by": "ops"}, "2026-01-02T10:00:00.123456789Z"),
    event("provider.Admitted", U, {"decided_by": "ops"}, "2026-01-02T10:00:00-05:00"),
]


@pytest.mark.parametrize("ev", VALID, ids=lambda e: e["type"])
def test_the_envelope_schema_accepts_what_the_service_accepts(ev: dict[str, Any]):
    assert isinstance(parse_record(line(ev)), Envelope)
    assert errors(ENVELOPE, ev) == []


def _with(ev: dict[str, Any], **attributes: Any) -> dict[str, Any]:
    return {**ev, **attributes}


def _data(ev: dict[str, Any], **fields: Any) -> dict[str, Any]:
    out = {**ev, "data": {**ev["data"], **fields}}
    for key in [k for k, v in fields.items() if v is ...]:
        del out["data"][key]
    return out


def _without(ev: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k != key}


#: Malformed records that JSON Schema can tell, each with the service's reason code.
MALFORMED = [
    ("not_an_object", ["a", "list"]),
    ("invalid_envelope", _with(admitted(U), specversion="0.3")),
    ("invalid_envelope", _without(admitted(U), "id")),
    ("invalid_envelope", _with(admitted(U), id="")),
    ("invalid_envelope", _with(admitted(U), id=7)),
    ("invalid_envelope", _with(admitted(U), source="")),
    ("invalid_envelope", _with(admitted(U), source="taobao live")),
    ("invalid_envelope", _without(admitted(U), "time")),
    ("invalid_envelope", _with(admitted(U), time="2026-01-02T10:00:00")),
    ("invalid_envelope", _with(admitted(U), time="2026-01-02")),
    ("invalid_envelope", _with(admitted(U), time="2026-02-30T10:00:00+08:00")),
    ("invalid_envelope", _with(admitted(U), time="2026-01-02T25:00:00+08:00")),
    ("invalid_envelope", _with(admitted(U), datacontenttype="text/plain")),
    ("invalid_envelope", _with(admitted(U), dataschema=2)),
    ("invalid_envelope", _with(admitted(U), data=None)),
    ("invalid_envelope", _with(admitted(U), data_base64="e30=")),
    ("invalid_envelope", _with(applied(U), dataschema="urn:x:provider.Applied.v7")),
    ("invalid_envelope", _with(admitted(U), dataschema="urn:x:provider.Admitted.v2")),
    ("unknown_type", _with(admitted(U), type="provider.Suspended")),
    ("invalid_subject", _with(admitted(U), subject=U.lower())),
    ("invalid_subject", _with(admitted(U), subject=U[:17])),
    ("invalid_subject", _with(admitted(U), subject=U + "1")),
    ("invalid_subject", _with(admitted(U), subject="I" + U[1:])),
    ("invalid_subject", _without(admitted(U), "subject")),
    ("invalid_data", _data(admitted(U), remark="补录")),
    ("invalid_data", _data(admitted(U), decided_by=...)),
    ("invalid_data", _data(admitted(U), decided_by=None)),
    ("invalid_data", _data(applied(U), company_name="")),
    ("invalid_data", _data(applied(U), entity_type="company")),
    ("invalid_data", _data(applied(U), real_name_verified="true")),
    ("invalid_data", _data(applied(U), registered_capital_fen=-1)),
    ("invalid_data", _data(applied(U), registered_capital_fen="100")),
    ("invalid_data", _data(applied(U), registered_on="2020-5-1")),
    ("invalid_data", _data(applied(U), registered_on="2020-02-30")),
    ("invalid_data", _data(applied(U), capabilities=["singing"])),
    ("invalid_data", _data(applied(U), contact={"name": "张三"})),
    ("invalid_data", _data(applied(U), entity_city=...)),
    ("invalid_data", _with(applied(U), dataschema=APPLIED_V2_SCHEMA)),
    ("invalid_data", _data(applied_v2(U, "2026-01-01"), entity_city="杭州")),
    ("invalid_data", _data(deposit_paid(U), amount_fen=0)),
    ("invalid_data", _data(deposit_paid(U), amount_fen=-10_000_000)),
    ("invalid_data", _data(deposit_deducted(U), clause="STATE")),
    ("invalid_data", _data(deposit_deducted(U), clause="A9-9")),
    ("invalid_data", _data(violation(U), clause="A1.3-5")),
    ("invalid_data", _data(violation(U), severity="mild")),
    ("invalid_data", _data(expelled(U), ground="A2.2-4")),
    ("invalid_data", _data(expelled(U), violations=["A1.1.2"])),
    ("invalid_data", _data(expelled(U), readmission={"permanent": False})),
    ("invalid_data", _data(expelled(U), readmission={"until": "2027-13-01"})),
    ("invalid_data", _data(expelled(U), readmission={"until": "2027-01-01", "x": 1})),
    ("invalid_data", _data(declined(U), clauses=["STATE"])),
    ("invalid_data", _data(exited(U), merchant_fees_settled=1)),
]


@pytest.mark.parametrize(("code", "ev"), MALFORMED, ids=[c for c, _ in MALFORMED])
def test_the_envelope_schema_rejects_what_the_service_calls_malformed(code: str, ev: Any):
    parsed = parse_record(json.dumps(ev, ensure_ascii=False).encode())
    assert isinstance(parsed, Malformed) and parsed.code == code, parsed
    assert errors(ENVELOPE, ev)


#: Malformed under the 1.1 rules (the JSON rules, reserved attributes, extension attribute
#: values), which the schema says as far as JSON Schema can.
MALFORMED_1_1 = [
    _with(admitted(U), sequence=1),
    _with(admitted(U), recordedtime="2026-01-02T10:00:00Z"),
    _with(admitted(U), TraceParent="00-abc"),
    _with(admitted(U), traceparent={"version": "00"}),
    _with(admitted(U), traceparent=None),
    _with(admitted(U), priority=2.5),
    _with(admitted(U), partitionkey=2**53),
    _with(admitted(U), averyveryverylongname1="x"),
    _with(admitted(U), time="0001-01-01T00:00:00+08:00"),
    _with(admitted(U), time="3000-01-01T00:00:00+08:00"),
    _data(applied(U), registered_on="9999-12-31"),
    _data(applied(U), registered_on="1899-12-31"),
    _data(applied(U), registered_capital_fen=10**20),
    _data(deposit_paid(U), amount_fen=2**53),
    _data(expelled(U), readmission={"until": "0001-01-01"}),
]


@pytest.mark.parametrize("ev", MALFORMED_1_1)
def test_the_envelope_schema_rejects_what_the_1_1_rules_make_malformed(ev: dict[str, Any]):
    assert errors(ENVELOPE, ev)


def test_the_envelope_schema_takes_extension_attributes_as_the_1_1_rule_says():
    for extensions in (
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"tracestate": "", "partitionkey": U},
        {"attempt": 3, "replayed": True, "a1b2c3d4e5f6g7h8i9j0": -(2**53 - 1)},
    ):
        assert errors(ENVELOPE, {**admitted(U), **extensions}) == []


@pytest.mark.parametrize(
    ("media_type", "ok"),
    [
        ("application/json", True),
        ("Application/JSON", True),
        ("application/json; charset=utf-8", True),
        ('application/json;charset="utf-8"', True),
        ("application/json ; charset=utf-8 ", True),
        ("text/plain", False),
        ("application/jsonx", False),
        ("application/json; charset", False),
        ("application/json charset=utf-8", False),
        # (Not "application/json\n": the patterns are ECMA-262, where $ ends the text;
        # Python's re, which jsonschema uses, also lets $ match before a final newline.)
    ],
)
def test_the_envelope_schema_takes_datacontenttype_parameters(media_type: str, ok: bool):
    assert (errors(ENVELOPE, _with(admitted(U), datacontenttype=media_type)) == []) is ok


# --- dataschema picks the version as the service does -----------------------------------

PAYLOAD_SAMPLES: dict[tuple[str, int], dict[str, Any]] = {
    ("provider.Applied", 1): applied_data(),
    ("provider.Applied", 2): applied_v2(U, "2026-01-01")["data"],
    ("provider.Admitted", 1): {"decided_by": "ops-1"},
}

dataschemas = st.one_of(
    st.none(),
    st.text(alphabet="provider.AdmitdApl:/v0123x", max_size=30),
    st.builds(
        lambda prefix, name, digits, suffix: f"{prefix}{name}.v{digits}{suffix}",
        st.sampled_from(["", "x", "urn:x:", "https://e.example/s/", "provider.", "a.", "/"]),
        st.sampled_from(["provider.Applied", "provider.Admitted", "provider.XApplied", "Applied"]),
        st.from_regex(r"\A[0-9]{1,3}\Z"),
        st.sampled_from(["", "", "", "x", ".json", "/"]),
    ),
)


@given(dataschema=dataschemas, sample=st.sampled_from(sorted(PAYLOAD_SAMPLES)))
def test_dataschema_selects_the_payload_version_in_the_schema_as_in_the_service(
    dataschema: str | None, sample: tuple[str, int]
):
    event_type, version = sample
    ev = event(event_type, U, PAYLOAD_SAMPLES[sample], "2026-01-01", dataschema=dataschema)
    by_service = isinstance(parse_record(line(ev)), Envelope)
    assert by_service == (payload_version(event_type, dataschema) == version)
    assert (errors(ENVELOPE, ev) == []) == by_service, (dataschema, errors(ENVELOPE, ev))


# --- the command ---------------------------------------------------------------------------


def test_the_schemas_command_writes_every_schema(tmp_path):
    from typer.testing import CliRunner

    from service.cli import app

    result = CliRunner().invoke(app, ["schemas", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = {
        p.name.removesuffix(".schema.json"): json.loads(p.read_text()) for p in tmp_path.iterdir()
    }
    assert written == SCHEMAS
