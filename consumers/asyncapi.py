"""The AsyncAPI 3.0 document of the service's four topics, generated from a ``KafkaBroker``.

:func:`asyncapi_document` declares the topics on a broker that is never started (no Kafka
needed): a batch subscriber on the inbound topic, publishers for the outbound, refused and
dead-letter topics, all named as the settings name them. faststream's ``AsyncAPI`` factory
writes the servers, channels, operations and messages; the payloads are then those of the
contract (``lifecycle.schemas``), not the placeholders faststream sees:

- ``components.schemas`` holds the envelope (``InboundEnvelope``), the outbound event
  (``OutboundEvent``) and the refused record (``RefusedEvent``), each the contract's JSON
  Schema with its ``$defs`` moved to ``components.schemas`` (the payload versions, shared by
  the three: one definition of each) and its ``#/$defs/X`` references rewritten to
  ``#/components/schemas/X``. ``$schema`` and ``$id`` are left out, because inside an AsyncAPI
  document a schema is an AsyncAPI Schema Object (a superset of JSON Schema draft-07 whose
  references resolve against the document) and an ``$id`` would move their base; the ``$id``
  is kept as ``x-schema-id``, so a schema can be matched with ``lifecycle schemas``. Every
  keyword the contract uses means the same in draft-07 and in draft 2020-12 (a test checks).
- one Kafka record is one message: the inbound one is one envelope, although the service
  reads them in batches (faststream documents a batch handler's list as an array);
- the messages carry their Kafka headers and key (message bindings); the dead letter's payload
  is the original record's bytes, its headers ``x-error`` and ``x-original-*``;
- faststream's ``correlationId`` is dropped: the service sets no correlation id.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Final, Protocol

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, ConfigDict, SkipValidation

from lifecycle.schemas import USCC_PATTERN, USCC_RULE, json_schemas

TITLE: Final = "Provider lifecycle service"
#: The contract revision (CONTRACT.md) the document describes.
VERSION: Final = "1.1"
CLOUDEVENTS_JSON: Final = "application/cloudevents+json; charset=UTF-8"
KAFKA_BINDING: Final = "0.4.0"

#: The channel (and operation) names: fixed, whatever the topics are called.
INBOUND: Final = "inbound"
OUTBOUND: Final = "outbound"
REFUSED: Final = "refused"
DLQ: Final = "dlq"

#: Contract schema name (``lifecycle.schemas.json_schemas``) → its name in the document.
CONTRACT_SCHEMAS: Final[dict[str, str]] = {
    "envelope": "InboundEnvelope",
    "outbound": "OutboundEvent",
    "refused": "RefusedEvent",
}
_DEFS: Final = "#/$defs/"
_COMPONENTS: Final = "#/components/schemas/"


class Topics(Protocol):
    """What the document reads from ``service.settings.Settings``."""

    @property
    def inbound_topic(self) -> str: ...
    @property
    def outbound_topic(self) -> str: ...
    @property
    def refused_topic(self) -> str: ...
    @property
    def dlq_topic(self) -> str: ...
    @property
    def kafka_bootstrap(self) -> str: ...
    @property
    def group_id(self) -> str: ...


# Placeholders: faststream documents a payload from a type; the contract's schema replaces
# each one in the document (pydantic cannot carry a foreign JSON Schema with its own $defs).
class InboundEnvelope(BaseModel):
    model_config = ConfigDict(extra="allow")


class OutboundEvent(BaseModel):
    model_config = ConfigDict(extra="allow")


class RefusedEvent(BaseModel):
    model_config = ConfigDict(extra="allow")


def broker_for(topics: Topics) -> KafkaBroker:
    """A broker (not started) on which the four topics are declared as the service uses them."""
    broker = KafkaBroker(
        [s.strip() for s in topics.kafka_bootstrap.split(",") if s.strip()],
        description="Kafka (the bootstrap servers as configured)",
    )

    @broker.subscriber(
        topics.inbound_topic,
        group_id=topics.group_id,
        batch=True,
        title=INBOUND,
        description=(
            "Provider lifecycle events from the platform: one CloudEvent (JSON, structured "
            "mode) per record, key = its subject (the USCC). The service consumes them in "
            "batches in its consumer group, judges each against the rulebook and records it "
            "exactly once: accepted (→ outbound), refused (→ refused) or malformed (→ dead "
            "letters), a repeat of (source, id) being a duplicate."
        ),
    )
    async def consume(body: SkipValidation[list[InboundEnvelope]]) -> None:  # pragma: no cover
        """Documentation only: the service's own consumer lives in ``consumers.inbound``."""

    broker.publisher(
        topics.outbound_topic,
        schema=OutboundEvent,
        title=OUTBOUND,
        description=(
            "Every accepted event, in store order, key = the USCC: the inbound CloudEvent plus "
            "`sequence` (the provider's stream position, contiguous from 1) and `recordedtime`. "
            "At-least-once: drop repeats by (subject, sequence) or (source, id)."
        ),
    )
    broker.publisher(
        topics.refused_topic,
        schema=RefusedEvent,
        title=REFUSED,
        description=(
            "Every refused inbound event, key = the USCC: a CloudEvent of type "
            "provider.Refused whose data holds the event, the clauses it breaks and the reason."
        ),
    )
    broker.publisher(
        topics.dlq_topic,
        schema=bytes,
        title=DLQ,
        description=(
            "Dead letters: every malformed inbound record (and one the service cannot judge), "
            "its bytes and key unchanged, with the reason and its origin as headers."
        ),
    )
    return broker


def asyncapi_document(topics: Topics) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the four topics (a JSON-able dict)."""
    spec = AsyncAPI(
        broker_for(topics),
        title=TITLE,
        version=VERSION,
        description=(
            "The topics of the provider lifecycle service (CONTRACT.md): what it consumes and "
            "what it publishes. The payload schemas are the contract's JSON Schemas "
            "(`lifecycle schemas DIR`), whose `$defs` are `components.schemas` here."
        ),
        schema_version="3.0.0",
    )
    document: dict[str, Any] = spec.to_specification().to_jsonable()
    _contract_payloads(document)
    _messages(document, topics)
    return document


def to_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def to_yaml(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=100)


# --- the contract's schemas in the document -------------------------------------------


def _rebase(node: Any) -> Any:
    """``node`` with every ``#/$defs/X`` reference pointing at ``#/components/schemas/X``."""
    if isinstance(node, dict):
        return {
            k: (_COMPONENTS + v.removeprefix(_DEFS))
            if k == "$ref" and isinstance(v, str) and v.startswith(_DEFS)
            else _rebase(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rebase(v) for v in node]
    return node


def contract_components() -> dict[str, dict[str, Any]]:
    """The contract's envelope, outbound and refused schemas and their shared ``$defs``, as
    ``components.schemas`` (raises if two schemas define one name differently)."""
    schemas = json_schemas()
    out: dict[str, dict[str, Any]] = {}
    for contract_name, name in CONTRACT_SCHEMAS.items():
        schema = copy.deepcopy(schemas[contract_name])
        for def_name, definition in schema.pop("$defs", {}).items():
            rebased = _rebase(definition)
            if out.setdefault(def_name, rebased) != rebased:
                raise ValueError(f"two contract schemas define {def_name} differently")
        schema.pop("$schema", None)
        schema_id = schema.pop("$id")
        if name in out:
            raise ValueError(f"a contract schema defines {name}")
        out[name] = {**_rebase(schema), "x-schema-id": schema_id}
    return out


def _contract_payloads(document: dict[str, Any]) -> None:
    schemas: dict[str, Any] = document["components"]["schemas"]
    contract = contract_components()
    for name in CONTRACT_SCHEMAS.values():
        if name not in schemas:  # faststream names a model's schema by its title
            raise RuntimeError(f"faststream did not document {name}")
    clashes = (schemas.keys() - CONTRACT_SCHEMAS.values()) & contract.keys()
    if clashes:
        raise RuntimeError(f"schema names used twice: {sorted(clashes)}")
    schemas.update(contract)


# --- messages: one record each, its headers and key --------------------------------------


def _headers(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


def _key(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "kafka": {"key": {"description": description, **schema}, "bindingVersion": KAFKA_BINDING}
    }


def _uscc_key(description: str) -> dict[str, Any]:
    return _key(
        f"{description} {USCC_RULE}",
        {"type": "string", "minLength": 18, "maxLength": 18, "pattern": USCC_PATTERN},
    )


def _content_type() -> dict[str, Any]:
    return _headers(
        {"content-type": {"type": "string", "const": CLOUDEVENTS_JSON}}, ["content-type"]
    )


def _dlq_headers(topics: Topics) -> dict[str, Any]:
    number = {"type": "string", "pattern": "^[0-9]+$"}
    return _headers(
        {
            "x-error": {
                "type": "string",
                "description": "the machine-readable reason (e.g. `invalid_json: …`, "
                "`internal_error: …`), at most 1 KiB of UTF-8: a longer one is cut with `…`",
            },
            "x-original-topic": {
                "type": "string",
                "description": "the topic the record was read from",
                "examples": [topics.inbound_topic],
            },
            "x-original-partition": {**number, "description": "its partition (decimal)"},
            "x-original-offset": {**number, "description": "its offset (decimal)"},
        },
        ["x-error", "x-original-topic", "x-original-partition", "x-original-offset"],
    )


def _message(document: dict[str, Any], channel: str) -> dict[str, Any]:
    (reference,) = document["channels"][channel]["messages"].values()
    name = reference["$ref"].removeprefix("#/components/messages/")
    message: dict[str, Any] = document["components"]["messages"][name]
    message.pop("correlationId", None)
    return message


def _messages(document: dict[str, Any], topics: Topics) -> None:
    schemas = document["components"]["schemas"]
    inbound = _message(document, INBOUND)
    batch = inbound["payload"]["$ref"].removeprefix(_COMPONENTS)
    if schemas[batch].get("type") == "array":  # faststream's view of a batch handler
        del schemas[batch]
    inbound.update(
        {
            "name": "InboundEnvelope",
            "summary": "A provider lifecycle event (CloudEvents 1.0, JSON)",
            "contentType": "application/json",
            "payload": {"$ref": _COMPONENTS + "InboundEnvelope"},
            "bindings": _uscc_key("The event's subject (producers key by it; not checked)."),
        }
    )
    _message(document, OUTBOUND).update(
        {
            "name": "OutboundEvent",
            "summary": "An accepted provider lifecycle event",
            "contentType": CLOUDEVENTS_JSON,
            "headers": _content_type(),
            "bindings": _uscc_key("The event's subject."),
        }
    )
    _message(document, REFUSED).update(
        {
            "name": "RefusedEvent",
            "summary": "A refused provider lifecycle event, with its codes and reason",
            "contentType": CLOUDEVENTS_JSON,
            "headers": _content_type(),
            "bindings": _uscc_key("The refused event's subject."),
        }
    )
    dlq = _message(document, DLQ)
    payload = dlq["payload"]["$ref"].removeprefix(_COMPONENTS)
    schemas[payload]["description"] = (
        "the original record's value, byte for byte (not necessarily JSON, nor UTF-8)"
    )
    dlq.update(
        {
            "name": "DeadLetter",
            "summary": "A malformed inbound record, unchanged, with the reason",
            "contentType": "application/octet-stream",
            "headers": _dlq_headers(topics),
            "bindings": _key(
                "the original record's key, unchanged (may be absent)",
                {"type": ["string", "null"], "format": "binary"},
            ),
        }
    )
    group = {"type": "string", "const": topics.group_id}
    document["operations"][INBOUND]["bindings"] = {
        "kafka": {"groupId": group, "bindingVersion": KAFKA_BINDING}
    }
