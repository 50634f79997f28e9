"""The AsyncAPI document: every configured topic, the contract's payloads, the CLI and the route."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from consumers.asyncapi import CONTRACT_SCHEMAS, asyncapi_document
from lifecycle.schemas import json_schemas
from service.bootstrap import Bootstrap
from service.cli import app as cli
from service.settings import Settings
from tests.unit.web.fakes import FakeReadModel, memory_inbox
from web.app import create_app

RENAMED = {
    "inbound_topic": "acme.providers.in",
    "outbound_topic": "acme.providers.events",
    "refused_topic": "acme.providers.refused",
    "dlq_topic": "acme.providers.in.dead-letters",
}
TOPIC_FIELDS = tuple(RENAMED)
#: Draft-07 keywords that mean the same in draft 2020-12, plus what only names a resource.
SAME_IN_DRAFT_07 = {
    "$ref", "additionalProperties", "allOf", "anyOf", "const", "default", "description",
    "enum", "exclusiveMinimum", "exclusiveMaximum", "format", "if", "then", "else", "items",
    "maxLength", "maximum", "minItems", "maxItems", "minLength", "minimum", "not", "oneOf",
    "pattern", "properties", "propertyNames", "required", "title", "type", "examples",
}  # fmt: skip
RESOURCE = {"$schema", "$id", "$defs"}


def channels_by_address(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["address"]: c for c in document["channels"].values()}


def resolve(document: dict[str, Any], node: Any, seen: tuple[str, ...] = ()) -> Any:
    """``node`` with every ``#/components/...`` reference of ``document`` inlined."""
    if isinstance(node, dict):
        if "$ref" in node:
            pointer = node["$ref"]
            assert pointer not in seen, f"recursive {pointer}"
            target: Any = document
            for part in pointer.removeprefix("#/").split("/"):
                target = target[part]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**resolve(document, target, (*seen, pointer)), **resolve(document, rest)}
        return {k: resolve(document, v, seen) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(document, v, seen) for v in node]
    return node


def inline_contract(schema: dict[str, Any]) -> dict[str, Any]:
    """A contract schema with its ``#/$defs/X`` references inlined, without what names it."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                name = node["$ref"].removeprefix("#/$defs/")
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**walk(defs[name]), **walk(rest)}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk({k: v for k, v in schema.items() if k not in RESOURCE})


def message(document: dict[str, Any], address: str) -> dict[str, Any]:
    (reference,) = channels_by_address(document)[address]["messages"].values()
    resolved: dict[str, Any] = resolve(document, reference)
    return resolved


@pytest.mark.parametrize("renamed", [False, True], ids=["default", "renamed"])
def test_every_configured_topic_is_a_channel(renamed: bool) -> None:
    settings = Settings(**RENAMED) if renamed else Settings()
    document = asyncapi_document(settings)
    topics = {getattr(settings, f) for f in TOPIC_FIELDS}
    assert set(channels_by_address(document)) == topics
    assert len(topics) == 4
    # Each operation is on one of them: the inbound one received, the others sent.
    actions = {
        resolve(document, op["channel"])["address"]: op["action"]
        for op in document["operations"].values()
    }
    assert actions == {
        settings.inbound_topic: "receive",
        settings.outbound_topic: "send",
        settings.refused_topic: "send",
        settings.dlq_topic: "send",
    }
    if renamed:
        assert not set(json.dumps(document).split('"')) & {
            getattr(Settings(), f) for f in TOPIC_FIELDS
        }


def test_message_payloads_are_the_contract_schemas() -> None:
    settings = Settings()
    document = asyncapi_document(settings)
    contract = json_schemas()
    expected = {
        settings.inbound_topic: "envelope",
        settings.outbound_topic: "outbound",
        settings.refused_topic: "refused",
    }
    for topic, name in expected.items():
        payload = message(document, topic)["payload"]
        assert payload.pop("x-schema-id") == contract[name]["$id"]
        assert payload == inline_contract(contract[name]), topic
        assert payload["type"] == "object"  # one record is one event, not a batch
    # Each is a component of its own, named by CONTRACT_SCHEMAS, referenced by its message.
    schemas = document["components"]["schemas"]
    for name in CONTRACT_SCHEMAS.values():
        assert name in schemas
    assert not any("$defs" in s or "$id" in s or "$schema" in s for s in schemas.values())


def test_the_dead_letter_is_the_original_bytes_with_the_reason_and_origin() -> None:
    settings = Settings()
    dlq = message(asyncapi_document(settings), settings.dlq_topic)
    assert dlq["payload"]["type"] == "string"
    assert dlq["payload"]["format"] == "binary"
    headers = dlq["headers"]
    names = ["x-error", "x-original-topic", "x-original-partition", "x-original-offset"]
    assert headers["type"] == "object"
    assert sorted(headers["required"]) == sorted(names)
    assert sorted(headers["properties"]) == sorted(names)
    assert dlq["contentType"] == "application/octet-stream"


def test_published_records_carry_their_content_type_and_key() -> None:
    settings = Settings()
    document = asyncapi_document(settings)
    for topic in (settings.outbound_topic, settings.refused_topic):
        record = message(document, topic)
        content_type = record["headers"]["properties"]["content-type"]["const"]
        assert content_type == "application/cloudevents+json; charset=UTF-8"
        assert record["bindings"]["kafka"]["key"]["maxLength"] == 18
        assert "correlationId" not in record


def test_contract_keywords_mean_the_same_in_draft_07() -> None:
    """An AsyncAPI Schema Object is draft-07 with extensions: the contract's schemas (draft
    2020-12) keep their meaning there only if they use no keyword of 2020-12 alone."""
    used: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("properties", "$defs"):
                    for sub in value.values():
                        walk(sub)
                else:
                    used.add(key)
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for name in CONTRACT_SCHEMAS:
        walk(json_schemas()[name])
    assert used - SAME_IN_DRAFT_07 - RESOURCE == set()


def test_cli_prints_the_document_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for field, topic in RENAMED.items():
        monkeypatch.setenv(f"LIFECYCLE_{field.upper()}", topic)
    expected = asyncapi_document(Settings())
    assert set(channels_by_address(expected)) == set(RENAMED.values())
    runner = CliRunner()
    as_json = runner.invoke(cli, ["asyncapi"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == expected
    as_yaml = runner.invoke(cli, ["asyncapi", "--yaml"])
    assert as_yaml.exit_code == 0, as_yaml.output
    assert not as_yaml.stdout.lstrip().startswith("{")
    assert yaml.safe_load(as_yaml.stdout) == expected


def test_read_api_serves_it_without_a_token() -> None:
    settings = Settings(api_tokens="reader:r-token")
    document = asyncapi_document(settings)
    calls: list[int] = []

    def build() -> dict[str, Any]:
        calls.append(1)
        return document

    client = TestClient(create_app(FakeReadModel(), memory_inbox, settings, asyncapi=build))
    for _ in range(2):
        response = client.get("/asyncapi.json")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == document
    assert calls == [1]  # built once
    assert client.get("/v1/stats").status_code == 401  # the others still need a token
    without = TestClient(create_app(FakeReadModel(), memory_inbox, settings))
    assert without.get("/asyncapi.json").status_code == 404


def test_bootstrap_passes_the_document_of_its_settings(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'lifecycle.db'}"
    settings = Settings(store=store, api_tokens="reader:r-token", **RENAMED)
    with Bootstrap(settings) as deps:
        response = TestClient(deps.api).get("/asyncapi.json")
    assert response.status_code == 200
    assert set(channels_by_address(response.json())) == set(RENAMED.values())
