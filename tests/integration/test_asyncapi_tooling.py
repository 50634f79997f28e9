"""The AsyncAPI document validated by the official tooling: @asyncapi/parser (the library behind
``asyncapi validate``: the specification's JSON Schema and its Spectral rules), as pinned by
tests/tooling/asyncapi/package-lock.json and installed into var/node by ``make asyncapi-tool``
(a prerequisite of ``make test``). Needs Node.js, not Kafka."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from consumers.asyncapi import asyncapi_document, to_json, to_yaml
from service.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "tooling" / "asyncapi" / "validate.cjs"
MODULES = ROOT / "var" / "node" / "node_modules"
RENAMED = Settings(
    inbound_topic="acme.providers.in",
    outbound_topic="acme.providers.events",
    refused_topic="acme.providers.refused",
    dlq_topic="acme.providers.in.dead-letters",
)


def validate(path: Path) -> tuple[int, dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "Node.js is required (the machine has Node.js 20)"
    assert (MODULES / "@asyncapi" / "parser").is_dir(), "run `make asyncapi-tool` first"
    done = subprocess.run(
        [node, str(SCRIPT), str(MODULES), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    verdict: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, verdict


def errors(verdict: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in verdict["diagnostics"] if d["severity"] == "error"]


@pytest.mark.parametrize("settings", [Settings(), RENAMED], ids=["default", "renamed"])
@pytest.mark.parametrize("form", ["json", "yaml"])
def test_the_document_validates(tmp_path: Path, settings: Settings, form: str) -> None:
    document = asyncapi_document(settings)
    path = tmp_path / f"asyncapi.{form}"
    path.write_text(to_json(document) if form == "json" else to_yaml(document))
    code, verdict = validate(path)
    assert (code, errors(verdict)) == (0, [])
    assert verdict["valid"] is True
    assert verdict["version"] == "3.0.0"
    # Nothing but the hint that AsyncAPI 3.1 exists (faststream 0.7.8 writes 3.0.0).
    assert {d["code"] for d in verdict["diagnostics"]} <= {"asyncapi-latest-version"}


def test_the_validator_finds_what_is_wrong(tmp_path: Path) -> None:
    """The verdict above means something: a broken reference and a bad schema are errors."""
    document = asyncapi_document(Settings())
    broken = copy.deepcopy(document)
    envelope = broken["components"]["schemas"]["InboundEnvelope"]
    envelope["properties"]["subject"] = {"$ref": "#/components/schemas/Missing"}
    bad_type = copy.deepcopy(document)
    bad_type["components"]["schemas"]["OutboundEvent"]["type"] = "record"
    for name, wrong in (("broken-ref", broken), ("bad-type", bad_type)):
        path = tmp_path / f"{name}.json"
        path.write_text(to_json(wrong))
        code, verdict = validate(path)
        assert code == 1, name
        assert verdict["valid"] is False
        assert errors(verdict), name
