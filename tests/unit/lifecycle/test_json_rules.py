"""CONTRACT.md 1.1 on the wire: the JSON rules (I-JSON, RFC 7493), extension attributes and
``datacontenttype`` parameters.

Every record: UTF-8 without a byte-order mark; no member name twice in one object; no lone
surrogate (escaped or not) and no U+0000 in any string; integers within ±(2^53 − 1); every
date and time between 1900-01-01 and 2999-12-31. A record that breaks one is malformed with
a reason that says which, never an exception; the next record is judged as usual.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from lifecycle.application import InboundMessage
from lifecycle.contract import Envelope
from lifecycle.parsing import Malformed, parse_record, parse_record_checked
from lifecycle.provider import Provider
from lifecycle.records import InboundRecord
from lifecycle.uscc import provider_id
from tests.factories import (
    admitted,
    applied,
    deposit_paid,
    expelled,
    line,
    onboard,
    outcomes,
    popo_app,
    process,
    run,
    uscc,
)

U = uscc(61)
MAX = 2**53 - 1  # RFC 7493 §2.2, as CONTRACT.md states it


def malformed(raw: bytes, code: str) -> Malformed:
    """Malformed with ``code`` by both parse paths, and so through ``evaluate``: one
    malformed outcome, and a valid event after it still judged."""
    fast, checked = parse_record(raw), parse_record_checked(raw)
    assert isinstance(fast, Malformed), f"expected {code}, got an envelope"
    assert fast == checked
    assert fast.code == code, fast.reason
    report = run([raw, applied(uscc(62), id="after")])
    assert outcomes(report) == ["malformed", "accepted"]
    assert report["outcomes"][0] == {
        "id": fast.id,
        "outcome": "malformed",
        "reason": fast.reason,
        "line": 1,
    }
    return fast


def accepted(raw: bytes) -> Envelope:
    fast, checked = parse_record(raw), parse_record_checked(raw)
    assert isinstance(fast, Envelope), fast
    assert isinstance(checked, Envelope) and fast.model_dump() == checked.model_dump()
    return fast


def text(ev: dict[str, Any]) -> str:
    return json.dumps(ev, ensure_ascii=False)


# --- UTF-8 only, no byte-order mark -----------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_a_record_in_utf16_or_utf32_is_malformed_not_utf8(codec: str):
    parsed = malformed(text(applied(U, id="u16")).encode(codec), "invalid_encoding")
    assert "not UTF-8" in parsed.reason and "RFC 7493" in parsed.reason
    assert parsed.id is None  # the id of a record that is not UTF-8 cannot be read


def test_a_record_in_latin1_is_malformed_not_utf8():
    raw = line(applied(U, company_name="ACME")).replace(b"ACME", "Café".encode("latin-1"))
    parsed = malformed(raw, "invalid_encoding")
    assert "byte 0xe9" in parsed.reason


def test_a_record_after_a_utf8_bom_is_malformed_and_still_names_its_id():
    parsed = malformed(b"\xef\xbb\xbf" + line(applied(U, id="bom-1")), "byte_order_mark")
    assert "byte-order mark" in parsed.reason
    assert (parsed.id, parsed.subject) == ("bom-1", U)


def test_a_bom_in_front_of_garbage_is_still_a_bom():
    assert malformed(b"\xef\xbb\xbfnot json", "byte_order_mark").id is None


# --- no member name twice ----------------------------------------------------------------


def test_a_member_name_twice_at_the_top_level_is_malformed():
    raw = line(applied(U, id="d-1"))[:-1] + b',"source":"/other"}'
    parsed = malformed(raw, "duplicate_member")
    assert parsed.reason.startswith('duplicate_member: (root): the member name "source"')
    assert parsed.id == "d-1"


def test_a_repeated_id_cannot_be_read_so_the_id_is_null():
    raw = line(applied(U, id="first"))[:-1] + b',"id":"second"}'
    assert malformed(raw, "duplicate_member").id is None


def test_a_member_name_twice_in_data_is_malformed_even_with_the_same_value():
    raw = line(deposit_paid(U, id="d-2")).replace(
        b'"amount_fen": 10000000', b'"amount_fen": 10000000, "amount_fen": 10000000'
    )
    parsed = malformed(raw, "duplicate_member")
    assert parsed.reason.startswith('duplicate_member: data: the member name "amount_fen"')


def test_a_member_name_twice_deep_inside_is_malformed():
    raw = line(applied(U, id="d-3")).replace(b'"name": ', b'"name": "x", "name": ', 1)
    parsed = malformed(raw, "duplicate_member")
    assert parsed.reason.startswith('duplicate_member: data.contact: the member name "name"')


def test_one_name_in_two_objects_is_not_a_repeat():
    ev = applied(U)
    ev["name"] = "an extension attribute"  # and data.contact.name
    assert accepted(line(ev)).extensions == {"name": "an extension attribute"}


# --- no lone surrogate, no U+0000 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("escape", "point"),
    [
        (b"\\udc00", "U+DC00"),
        (b"\\ud800", "U+D800"),
        (b"\\uDBFF", "U+DBFF"),
        (b"\\ud800\\u0041", "U+D800"),  # a high surrogate not followed by a low one
        (b"\\udc00\\ud800", "U+DC00"),  # the pair in the wrong order
    ],
)
def test_an_escaped_lone_surrogate_in_a_value_is_malformed(escape: bytes, point: str):
    raw = line(applied(U, id="s-1", company_name="ACME")).replace(b"ACME", escape)
    parsed = malformed(raw, "lone_surrogate")
    assert parsed.reason.startswith(
        f"lone_surrogate: data.company_name: a string holds the lone surrogate {point}"
    )
    assert parsed.id == "s-1"


def test_raw_surrogate_bytes_are_malformed():
    raw = line(applied(U, id="s-2", company_name="ACME")).replace(b"ACME", b"\xed\xb0\x80")
    parsed = malformed(raw, "lone_surrogate")
    assert "U+DC00" in parsed.reason
    assert parsed.id is None  # not UTF-8: nothing can be read


def test_a_lone_surrogate_in_a_member_name_or_the_id():
    ev = applied(U, id="s-3")
    raw = line(ev).replace(b'"phone"', b'"ph\\udfffone"')
    assert malformed(raw, "lone_surrogate").reason.startswith(
        "lone_surrogate: data.contact: a member name holds"
    )
    in_id = line(applied(U, id="ID")).replace(b'"ID"', b'"\\ud800x"')
    assert malformed(in_id, "lone_surrogate").id is None  # cannot be written back as UTF-8


def test_a_surrogate_pair_is_one_character_and_fine():
    raw = line(applied(U, company_name="ACME")).replace(b"ACME", b"\\ud83d\\ude00 Ltd")
    assert accepted(raw).data["company_name"] == "\U0001f600 Ltd"


def test_u0000_in_a_value_is_malformed():
    parsed = malformed(line(applied(U, id="n-1", company_name="A\x00B")), "nul_character")
    assert parsed.reason.startswith("nul_character: data.company_name: a string holds U+0000")
    assert parsed.id == "n-1"


def test_u0000_in_a_member_name_is_malformed():
    ev = applied(U, id="n-2")
    ev["data"]["contact"]["na\x00me"] = "x"
    parsed = malformed(line(ev), "nul_character")
    assert parsed.reason.startswith("nul_character: data.contact: a member name holds U+0000")
    top = applied(U, id="n-3")
    top["trace\x00"] = "x"
    assert malformed(line(top), "nul_character").reason.startswith("nul_character: (root):")


def test_u0000_in_the_id_an_extension_or_an_unknown_field():
    assert malformed(line(applied(U, id="a\x00b")), "nul_character").id is None
    ext = applied(U, id="n-4")
    ext["traceparent"] = "\x00"
    assert malformed(line(ext), "nul_character").id == "n-4"
    extra = applied(U, id="n-5")
    extra["data"]["remark"] = "\x00"  # the JSON rules come before the payload's schema
    assert malformed(line(extra), "nul_character").reason.startswith("nul_character: data.remark:")


def test_an_escaped_backslash_before_u0000_text_is_not_a_nul():
    raw = line(applied(U, company_name="ACME")).replace(b"ACME", b"\\\\u0000")
    assert accepted(raw).data["company_name"] == "\\u0000"


# --- integers within ±(2^53 − 1) ------------------------------------------------------------


def test_the_largest_safe_integer_is_accepted():
    assert accepted(line(deposit_paid(U, amount_fen=MAX))).data["amount_fen"] == MAX
    ev = applied(U, registered_capital_fen=MAX)
    ev["partitionkey"] = -MAX
    assert accepted(line(ev)).extensions == {"partitionkey": -MAX}


@pytest.mark.parametrize("value", [MAX + 1, 2**63, 2**64, 10**20, 10**400])
def test_an_integer_beyond_2_pow_53_is_malformed(value: int):
    parsed = malformed(line(deposit_paid(U, amount_fen=value, id="i-1")), "integer_out_of_range")
    assert parsed.reason.startswith("integer_out_of_range: data.amount_fen:")
    assert "2^53" in parsed.reason
    assert parsed.id == "i-1"


@pytest.mark.parametrize(
    "path", ["partitionkey", "data.registered_capital_fen", "data.remark", "data.contact.phone"]
)
def test_an_integer_beyond_minus_2_pow_53_anywhere_is_malformed(path: str):
    ev = applied(U, id="i-2")
    *parents, leaf = path.split(".")
    target = ev
    for key in parents:
        target = target[key]
    target[leaf] = -(MAX + 1)
    parsed = malformed(line(ev), "integer_out_of_range")
    assert parsed.reason.startswith(f"integer_out_of_range: {path}:")


def test_an_integer_of_thousands_of_digits_is_malformed_not_an_exception():
    raw = line(deposit_paid(U, id="i-3")).replace(b"10000000", b"9" * 20_000)
    assert "20000-digit" in malformed(raw, "integer_out_of_range").reason


# --- dates and times between 1900-01-01 and 2999-12-31 --------------------------------------


@pytest.mark.parametrize(
    "time",
    ["1900-01-01T00:00:00+08:00", "1900-01-01T00:00:00Z", "2999-12-31T23:59:59+08:00"],
)
def test_times_on_the_bounds_are_accepted(time: str):
    ev = applied(U)
    ev["time"] = time
    accepted(line(ev))


@pytest.mark.parametrize(
    "time",
    [
        "0001-01-01T00:00:00+08:00",
        "1899-12-31T23:59:59+08:00",
        "3000-01-01T00:00:00+08:00",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-12:00",
    ],
)
def test_a_time_outside_the_range_is_malformed(time: str):
    ev = applied(U, id="t-1")
    ev["time"] = time
    parsed = malformed(line(ev), "date_out_of_range")
    assert parsed.reason == (
        f"date_out_of_range: time: {time} is outside 1900-01-01…2999-12-31 (CONTRACT.md JSON rules)"
    )
    assert parsed.id == "t-1"


@pytest.mark.parametrize("day", ["1900-01-01", "2999-12-31"])
def test_dates_on_the_bounds_are_accepted(day: str):
    accepted(line(applied(U, registered_on=day)))
    accepted(line(expelled(U, ground="A1.2.2-4", readmission={"until": day})))


@pytest.mark.parametrize("day", ["0001-01-01", "1899-12-31", "3000-01-01", "9999-12-31"])
def test_a_date_outside_the_range_is_malformed(day: str):
    parsed = malformed(line(applied(U, id="r-1", registered_on=day)), "date_out_of_range")
    assert parsed.reason.startswith(f"date_out_of_range: data.registered_on: {day} is outside")
    until = expelled(U, ground="A1.2.2-4", readmission={"until": day}, id="r-2")
    parsed = malformed(line(until), "date_out_of_range")
    assert "readmission" in parsed.reason and day in parsed.reason


def test_far_dates_through_evaluate_do_not_stop_the_file():
    far = applied(U, "0001-01-01T00:00:00+08:00", id="far")
    late = applied(uscc(63), registered_on="9999-12-31", id="late")
    report = run([far, late, *onboard(U, "2026-01-01")], as_of="2026-06-01")
    assert outcomes(report) == ["malformed", "malformed", "accepted", "accepted", "accepted"]
    assert report["providers"][U]["status"] == "active"


# --- extension attributes --------------------------------------------------------------------

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def with_extensions(ev: dict[str, Any], **extensions: Any) -> dict[str, Any]:
    ev.update(extensions)
    return ev


def test_extension_attributes_are_accepted_and_kept():
    ev = with_extensions(
        applied(U),
        traceparent=TRACE,
        tracestate="congo=t61rcWkgMzE",
        partitionkey=U,
        retries=3,
        replayed=False,
        a2345678901234567890="twenty characters",
    )
    envelope = accepted(line(ev))
    assert envelope.extensions == {
        "traceparent": TRACE,
        "tracestate": "congo=t61rcWkgMzE",
        "partitionkey": U,
        "retries": 3,
        "replayed": False,
        "a2345678901234567890": "twenty characters",
    }
    # Dumped as the CloudEvent it was: extension attributes at the top level.
    assert envelope.model_dump(mode="json", exclude_none=True) == ev


def test_an_event_without_extensions_has_none():
    envelope = accepted(line(applied(U)))
    assert envelope.extensions == {}
    assert "extensions" not in envelope.model_dump()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("sequence", 1, "the service's own attribute"),
        ("recordedtime", "2026-01-01T10:00:00Z", "the service's own attribute"),
        ("traceParent", TRACE, "extension attribute name ([a-z0-9]{1,20})"),
        ("trace_parent", TRACE, "extension attribute name"),
        ("a23456789012345678901", "x", "extension attribute name"),
        ("traceparent", 1.5, "a string, an integer or a boolean"),
        ("traceparent", None, "a string, an integer or a boolean"),
        ("traceparent", {"v": 1}, "a string, an integer or a boolean"),
    ],
)
def test_reserved_and_ill_formed_attributes_are_malformed(name: str, value: Any, says: str):
    parsed = malformed(
        line(with_extensions(applied(U, id="x-1"), **{name: value})), "invalid_envelope"
    )
    assert parsed.reason.startswith(f'invalid_envelope: "{name}"'), parsed.reason
    assert says in parsed.reason
    assert parsed.id == "x-1"


def test_accepted_events_store_their_extension_attributes():
    app = popo_app()
    [result] = process(app, with_extensions(applied(U, id="k-1"), traceparent=TRACE, retries=2))
    assert result.outcome == "accepted"
    [event] = list(app.events.get(provider_id(U)))
    assert isinstance(event, Provider.Event)
    assert event.extensions == {"traceparent": TRACE, "retries": 2}
    # Stored and read back through the mapper (the store's bytes), not just in memory.
    stored = app.mapper.to_stored_event(event)
    assert app.mapper.to_domain_event(stored).extensions == {"traceparent": TRACE, "retries": 2}
    [plain] = process(app, admitted(U, id="k-2"))
    assert plain.outcome == "accepted"
    assert list(app.events.get(provider_id(U)))[-1].extensions == {}


def test_events_stored_before_1_1_read_as_without_extensions():
    app = popo_app()
    process(app, applied(U))
    [event] = list(app.events.get(provider_id(U)))
    stored = app.mapper.to_stored_event(event)
    state = json.loads(stored.state)
    del state["ce_extensions"]  # as 1.0 wrote it
    old = dataclasses.replace(stored, state=json.dumps(state).encode())
    loaded = app.mapper.to_domain_event(old)
    assert isinstance(loaded, Provider.Event)
    assert loaded.extensions == {}


def test_refused_records_keep_the_extension_attributes_in_their_event():
    app = popo_app()
    ev = with_extensions(admitted(U, id="r-ext"), traceparent=TRACE, partitionkey=7)
    [result] = app.process([InboundMessage(line(ev), "test:r-ext")])
    assert result.outcome == "refused"
    [record] = [e for e in app.iter_events() if isinstance(e, InboundRecord.Received)]
    assert record.event is not None
    assert record.event["traceparent"] == TRACE and record.event["partitionkey"] == 7
    assert record.event == ev


# --- datacontenttype -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        'application/json; charset="utf-8"',
        "Application/JSON",
        "application/json ; charset=utf-8 ; x=y",
    ],
)
def test_datacontenttype_with_parameters_is_accepted(content_type: str):
    ev = applied(U)
    ev["datacontenttype"] = content_type
    assert accepted(line(ev)).datacontenttype == content_type


def test_datacontenttype_may_be_omitted():
    ev = applied(U)
    del ev["datacontenttype"]
    assert accepted(line(ev)).datacontenttype is None


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/jsonl", "application/json x", ""]
)
def test_another_datacontenttype_is_malformed(content_type: str):
    ev = applied(U)
    ev["datacontenttype"] = content_type
    parsed = malformed(line(ev), "invalid_envelope")
    assert parsed.reason.startswith("invalid_envelope: datacontenttype:")
