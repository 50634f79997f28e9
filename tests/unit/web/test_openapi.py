"""The OpenAPI document says what the routes check, and what schemathesis found stays fixed.

The routes check ``as_of``, the USCC and record ids themselves (so a bad one is answered
with the service's own error: ``invalid_as_of``, ``invalid_uscc``, ``invalid_record_id``);
the document still gives their real formats. Found by schemathesis against the app on a
demo store: an ``offset`` beyond 2^63 − 1 was a 500 (the store's integer overflowed), a
U+0000 in a text filter was a 500 on PostgreSQL, and ``as_of=`` / ``uscc=`` (empty) were
accepted although the document said ``format: date`` / a USCC.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lifecycle.uscc import ALPHABET
from tests.unit.web.fakes import (
    KNOWN,
    FakeReadModel,
    Harness,
    Settings,
    auth,
    memory_inbox,
    provider_doc,
)
from web.app import create_app
from web.audit_routes import audit_router
from web.params import MAX_OFFSET

MAX_BIGINT = 2**63 - 1


def parameters(doc: dict[str, Any], method: str, path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in doc["paths"][path][method]["parameters"]}


class FakeAuditing:
    """What the audit routes ask of ``audit.auditing.Auditing``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.entries: list[dict[str, Any]] = [{"outcome": "accepted"}]

    def history(self, uscc: str, as_of: date | None) -> dict[str, Any]:
        self.calls.append(("history", (uscc, as_of)))
        return {"uscc": uscc, "as_of": as_of, "entries": self.entries}

    def verify(self, uscc: str | None) -> dict[str, Any]:
        self.calls.append(("verify", uscc))
        return {"ok": True, "checked": 0, "streams": 0, "seals": 0, "broken": []}


@pytest.fixture
def audited() -> Iterator[tuple[TestClient, FakeAuditing]]:
    auditing = FakeAuditing()
    app = create_app(
        FakeReadModel(documents={KNOWN: provider_doc(KNOWN)}),
        memory_inbox,
        Settings(),
        readiness_checks={},
        extra_routers=[audit_router(lambda: auditing)],  # type: ignore[arg-type, return-value]
        dashboard=False,
    )
    with TestClient(app) as client:
        yield client, auditing


@pytest.fixture
def doc(audited: tuple[TestClient, FakeAuditing]) -> dict[str, Any]:
    client, _ = audited
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


# --- the document -----------------------------------------------------------------------


def test_as_of_is_a_date_in_the_document(doc: dict[str, Any]) -> None:
    for path in ("/v1/providers", "/v1/providers/{uscc}", "/v1/providers/{uscc}/history"):
        as_of = parameters(doc, "get", path)["as_of"]
        assert as_of["schema"]["type"] == "string"
        assert as_of["schema"]["format"] == "date"
        assert not as_of["required"]


def test_the_uscc_has_its_pattern_and_length_in_the_document(doc: dict[str, Any]) -> None:
    schemas = [
        parameters(doc, "get", "/v1/providers/{uscc}")["uscc"]["schema"],
        parameters(doc, "get", "/v1/providers/{uscc}/history")["uscc"]["schema"],
        parameters(doc, "get", "/v1/audit/verify")["uscc"]["schema"],
    ]
    for schema in schemas:
        assert schema["type"] == "string"
        assert (schema["minLength"], schema["maxLength"]) == (18, 18)
        assert re.fullmatch(schema["pattern"], KNOWN)
        assert not re.fullmatch(schema["pattern"], KNOWN.lower())
        assert not re.fullmatch(schema["pattern"], "I" + KNOWN[1:])  # I, O, S, V, Z: never
        assert set(schema["pattern"]) >= set(ALPHABET)


def test_record_ids_are_uuids_in_the_document(doc: dict[str, Any]) -> None:
    record = parameters(doc, "post", "/v1/inbox/{record}/resubmit")["record"]
    assert record["schema"] == {"type": "string", "format": "uuid", "title": "Record"}


def test_offsets_limits_and_text_filters_have_their_bounds_in_the_document(
    doc: dict[str, Any],
) -> None:
    for path in ("/v1/providers", "/v1/inbox"):
        found = parameters(doc, "get", path)
        assert found["offset"]["schema"]["maximum"] == MAX_BIGINT == MAX_OFFSET
        assert found["offset"]["schema"]["minimum"] == 0
        assert (found["limit"]["schema"]["minimum"], found["limit"]["schema"]["maximum"]) == (
            1,
            200,
        )
    texts = [parameters(doc, "get", "/v1/providers")[name] for name in ("city", "q")] + [
        parameters(doc, "get", "/v1/inbox")[name] for name in ("code", "subject", "type")
    ]
    for text in texts:
        string = next(s for s in text["schema"]["anyOf"] if s.get("type") == "string")
        assert string["maxLength"] > 0
        assert not re.search(string["pattern"], "a\x00b") and re.search(string["pattern"], "云帆")


def test_the_service_errors_are_documented_as_its_json_errors(doc: dict[str, Any]) -> None:
    operation = doc["paths"]["/v1/providers/{uscc}"]["get"]
    error = operation["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    # Every status a route answers is in the document (schemathesis: undocumented 404).
    for method, path, statuses in (
        ("get", "/v1/providers", {"200", "401", "403", "422"}),
        ("get", "/v1/providers/{uscc}", {"200", "401", "403", "404", "422"}),
        ("get", "/v1/inbox", {"200", "401", "403", "422"}),
        ("post", "/v1/inbox/{record}/resubmit", {"202", "401", "403", "404", "409", "422"}),
        ("get", "/v1/providers/{uscc}/history", {"200", "401", "403", "404", "422", "501"}),
        ("get", "/v1/audit/verify", {"200", "401", "403", "422", "501"}),
    ):
        assert statuses <= set(doc["paths"][path][method]["responses"]), (method, path)


# --- the answers ------------------------------------------------------------------------


def test_the_largest_offset_reaches_the_read_model(h: Harness) -> None:
    for path, name in (("/v1/providers", "providers"), ("/v1/inbox", "inbox")):
        response = h.client.get(f"{path}?offset={MAX_BIGINT}", headers=auth("reader"))
        assert response.status_code == 200
        assert response.json()["offset"] == MAX_BIGINT
        assert h.read_model.last(name)[1] == MAX_BIGINT


@pytest.mark.parametrize("offset", [str(MAX_BIGINT + 1), "9" * 40, str(2**64)])
def test_an_offset_beyond_a_bigint_is_422_not_500(h: Harness, offset: str) -> None:
    for path in ("/v1/providers", "/v1/inbox"):
        response = h.client.get(f"{path}?offset={offset}", headers=auth("reader"))
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["details"][0]["loc"] == ["query", "offset"]
    assert not [c for c in h.read_model.calls if c[0] in ("providers", "inbox")]


@pytest.mark.parametrize("query", ["code=A1%00", "subject=%00", "type=provider.%00"])
def test_a_nul_in_an_inbox_filter_is_422(h: Harness, query: str) -> None:
    response = h.client.get(f"/v1/inbox?{query}", headers=auth("reader"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_the_history_checks_its_uscc_and_date_itself(
    audited: tuple[TestClient, FakeAuditing],
) -> None:
    client, auditing = audited
    ok = client.get(f"/v1/providers/{KNOWN}/history?as_of=2025-02-01", headers=auth("auditor"))
    assert ok.status_code == 200
    assert auditing.calls == [("history", (KNOWN, date(2025, 2, 1)))]
    for query, code in (
        ("as_of=", "invalid_as_of"),
        ("as_of=2025-2-1", "invalid_as_of"),
    ):
        bad = client.get(f"/v1/providers/{KNOWN}/history?{query}", headers=auth("auditor"))
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, code)
    wrong = client.get(f"/v1/providers/{KNOWN[:17]}0/history", headers=auth("auditor"))
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (422, "invalid_uscc")
    assert len(auditing.calls) == 1
    auditing.entries = []
    unknown = client.get(f"/v1/providers/{KNOWN}/history", headers=auth("auditor"))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "provider_not_found")


def test_verify_takes_a_uscc_or_none_but_not_an_empty_one(
    audited: tuple[TestClient, FakeAuditing],
) -> None:
    client, auditing = audited
    assert client.get("/v1/audit/verify", headers=auth("auditor")).status_code == 200
    assert client.get(f"/v1/audit/verify?uscc={KNOWN}", headers=auth("auditor")).status_code == 200
    assert auditing.calls == [("verify", None), ("verify", KNOWN)]
    for bad in ("", KNOWN.lower(), KNOWN + "0"):
        response = client.get(f"/v1/audit/verify?uscc={bad}", headers=auth("auditor"))
        assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_uscc")
    assert len(auditing.calls) == 2
