"""The machine-readable contract (CONTRACT.md): JSON Schemas, draft 2020-12.

``json_schemas()`` answers, by name, a schema of the inbound CloudEvent (``envelope``), of
every payload version (``provider.Applied``, ``provider.Applied.v2``, …: generated from
``contract.PAYLOADS`` and ``contract.VERSIONED_PAYLOADS``, so a payload registered there
appears here by itself), of the outbound event (``outbound``: what the relay publishes,
with ``sequence`` and ``recordedtime``) and of the refused record (``refused``:
``provider.Refused``). ``lifecycle schemas DIR`` writes them.

Each is as strict as the service wherever JSON Schema can say it (enums of clause IDs, the
USCC alphabet and length, date and date-time formats, the years 1900–2999 as written,
integers within ±(2^53 − 1), amounts > 0, no unknown field); what it cannot say (the USCC
check character, the I-JSON rules) is in its ``description``. Every schema is one
self-contained document: the payloads an envelope may carry are in its ``$defs``.

A payload's ``$id`` is also a ``dataschema`` that selects it:
``urn:provider-lifecycle:schema:provider.Applied.v2`` is ``contract.APPLIED_V2_SCHEMA``.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from lifecycle.contract import EVENT_TYPES, PAYLOADS, VERSIONED_PAYLOADS
from lifecycle.rules import ARTICLE_2, Clause
from lifecycle.uscc import ALPHABET

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_URN: Final = "urn:provider-lifecycle:schema:"

#: I-JSON (RFC 7493): the integers every record keeps to, ±(2^53 − 1).
MAX_SAFE_INTEGER: Final = 2**53 - 1

#: Codes a refusal carries: a clause ID of the rulebook, ``STATE`` or ``ORDER`` (CONTRACT.md).
REFUSAL_CODES: Final[tuple[str, ...]] = tuple(dict.fromkeys([*(c.value for c in Clause), "ORDER"]))

_YEAR: Final = "(19[0-9]{2}|2[0-9]{3})"  # 1900–2999, as written
DATE_PATTERN: Final = f"^{_YEAR}-[0-9]{{2}}-[0-9]{{2}}$"
DATE_TIME_PATTERN: Final = (
    f"^{_YEAR}-[0-9]{{2}}-[0-9]{{2}}[Tt][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(\\.[0-9]{{1,9}})?"
    "([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
USCC_PATTERN: Final = f"^[{ALPHABET}]{{18}}$"
EXTENSION_NAME_PATTERN: Final = "^[a-z0-9]{1,20}$"
_TOKEN: Final = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 token
#: ``application/json`` (any case) with parameters or none (RFC 9110 §8.3.1).
JSON_MEDIA_TYPE_PATTERN: Final = (
    "^[Aa][Pp][Pp][Ll][Ii][Cc][Aa][Tt][Ii][Oo][Nn]/[Jj][Ss][Oo][Nn]"
    f'(?:[ \\t]*;(?:[ \\t]*{_TOKEN}=(?:{_TOKEN}|"(?:[^"\\\\]|\\\\.)*"))?)*[ \\t]*$'
)

JSON_RULES: Final = (
    "What JSON Schema cannot say, and the service checks (a record that breaks one is "
    "malformed): the JSON rules of I-JSON (RFC 7493): UTF-8 without a byte-order mark, no "
    "member name twice in one object, no lone surrogate (escaped or not) and no U+0000 in "
    "any string; integers are written without a fraction or an exponent (1.0 is not an "
    "integer here) and lie within ±(2^53 − 1); every date and time lies between 1900-01-01 "
    "and 2999-12-31 (the patterns bound the year as written)."
)
USCC_RULE: Final = (
    "The provider's Unified Social Credit Code: 18 characters of the GB 32100-2015 alphabet; "
    "the 18th is the check character of the first 17 (GB 32100-2015, weights 1, 3, 9, …, "
    "modulo 31), which JSON Schema cannot check and the service does (invalid_subject)."
)


def _id(name: str) -> str:
    return f"{SCHEMA_URN}{name}"


def payload_id(event_type: str, version: int) -> str:
    """The ``$id`` of a payload version, which is also a ``dataschema`` that selects it."""
    return _id(f"{event_type}.v{version}")


# --- the payloads, from the contract's models -----------------------------------------

_ARTICLE_2: Final = sorted(c.value for c in ARTICLE_2)
_CLAUSE_IDS: Final = [c.value for c in Clause if c is not Clause.STATE]

#: What each validator of ``lifecycle.contract`` adds to the schema of the type it checks,
#: by the validator's name. A validator missing here is listed by :func:`unexpressed`
#: (and a test fails): add what JSON Schema can say of it, or ``{}`` with a description.
VALIDATOR_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "_article_2": {"enum": _ARTICLE_2, "description": "an Article 2 clause ID (RULEBOOK.md)"},
    "_known_clause": {"enum": _CLAUSE_IDS, "description": "a clause ID of the rulebook"},
    "_true": {"const": True},
    "_uscc": {"pattern": USCC_PATTERN, "minLength": 18, "maxLength": 18},
    "_rfc3339": {"format": "date-time", "pattern": DATE_TIME_PATTERN},
    "_iso_date": {"format": "date", "pattern": DATE_PATTERN},
}


class _ContractSchema(GenerateJsonSchema):
    """Pydantic's schema generator, told what the contract's validators check."""

    unknown: set[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unknown = set()

    def _validated(self, inner: JsonSchemaValue, schema: Any) -> JsonSchemaValue:
        function = schema["function"]["function"]
        name = getattr(function, "__name__", repr(function))
        extra = VALIDATOR_SCHEMAS.get(name)
        if extra is None:
            self.unknown.add(f"{getattr(function, '__module__', '?')}.{name}")
            return inner
        return {**inner, **extra}

    def function_after_schema(
        self, schema: core_schema.AfterValidatorFunctionSchema
    ) -> JsonSchemaValue:
        return self._validated(self.generate_inner(schema["schema"]), schema)

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        return self._validated(super().function_before_schema(schema), schema)

    def function_wrap_schema(
        self, schema: core_schema.WrapValidatorFunctionSchema
    ) -> JsonSchemaValue:
        return self._validated(super().function_wrap_schema(schema), schema)

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        out = super().int_schema(schema)  # I-JSON: within ±(2^53 − 1) whatever else holds
        if "exclusiveMinimum" not in out:
            out["minimum"] = max(out.get("minimum", -MAX_SAFE_INTEGER), -MAX_SAFE_INTEGER)
        if "exclusiveMaximum" not in out:
            out["maximum"] = min(out.get("maximum", MAX_SAFE_INTEGER), MAX_SAFE_INTEGER)
        return out


def _versions() -> dict[tuple[str, int], type[BaseModel]]:
    """Every payload version the service knows: (type, version) → model."""
    found: dict[tuple[str, int], type[BaseModel]] = {
        (name, 1): model for name, model in PAYLOADS.items()
    }
    found.update(VERSIONED_PAYLOADS)
    return dict(sorted(found.items()))


def _payload_defs() -> tuple[dict[tuple[str, int], str], dict[str, Any], set[str]]:
    """(type, version) → its ``$defs`` name; the ``$defs``; validators it could not express."""
    versions = _versions()
    generator = _ContractSchema(ref_template="#/$defs/{model}")
    refs, defs = generator.generate_definitions(
        [(model, "validation", model.__pydantic_core_schema__) for model in versions.values()]
    )
    names = {
        key: refs[(model, "validation")]["$ref"].removeprefix("#/$defs/")
        for key, model in versions.items()
    }
    return names, {str(k): v for k, v in defs.items()}, generator.unknown


def unexpressed() -> set[str]:
    """Validators of the contract that the schemas do not express (should be none)."""
    return _payload_defs()[2]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].removeprefix("#/$defs/")} if "$ref" in node else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def _closure(name: str, defs: dict[str, Any]) -> dict[str, Any]:
    """``defs[name]`` and every definition it needs, transitively."""
    needed: dict[str, Any] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in needed:
            continue
        needed[current] = defs[current]
        todo.extend(_refs(defs[current]) - needed.keys())
    return dict(sorted(needed.items()))


def _payload_schema(
    event_type: str, version: int, name: str, defs: dict[str, Any]
) -> dict[str, Any]:
    needed = _closure(name, defs)
    body = needed.pop(name)
    selected = (
        "without a dataschema (or one ending in v1)"
        if version == 1
        else f"with a dataschema ending in {event_type}.v{version}"
    )
    lead = f"The data of a {event_type} event {selected}."
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "$id": payload_id(event_type, version),
        "title": f"{event_type} v{version} (data)",
        "description": "\n\n".join(
            part for part in (lead, body.pop("description", None), JSON_RULES) if part
        ),
        **{k: v for k, v in body.items() if k != "title"},
    }
    if needed:
        schema["$defs"] = needed
    return schema


# --- the envelopes -------------------------------------------------------------------


def _version_pattern(event_type: str, versions: str) -> str:
    # The same choice as contract.payload_version: a dataschema ending in <type>.v<N>.
    return f"{re.escape(event_type)}\\.v{versions}$"


def _data_rules(names: dict[tuple[str, int], str]) -> list[dict[str, Any]]:
    """``data`` by ``type`` and the version its ``dataschema`` selects (else v1)."""
    rules: list[dict[str, Any]] = []
    for event_type in EVENT_TYPES:
        versions = sorted(v for t, v in names if t == event_type)
        any_version = _version_pattern(event_type, "[0-9]+")
        for version in versions:
            selects = _version_pattern(event_type, f"0*{version}")
            dataschema: dict[str, Any] = {"type": "string", "pattern": selects}
            required = ["type", "dataschema"]
            if version == 1:
                dataschema = {
                    "anyOf": [{"type": "null"}, {"not": {"pattern": any_version}}, dataschema]
                }
                required = ["type"]
            rules.append(
                {
                    "if": {
                        "required": required,
                        "properties": {"type": {"const": event_type}, "dataschema": dataschema},
                    },
                    "then": {
                        "properties": {"data": {"$ref": f"#/$defs/{names[event_type, version]}"}}
                    },
                }
            )
        known = "|".join(str(v) for v in versions)
        rules.append(
            {
                "if": {
                    "required": ["type", "dataschema"],
                    "properties": {
                        "type": {"const": event_type},
                        "dataschema": {"type": "string", "pattern": any_version},
                    },
                },
                "then": {
                    "properties": {
                        "dataschema": {
                            "description": f"a version of {event_type} the service knows",
                            "pattern": _version_pattern(event_type, f"0*({known})"),
                        }
                    }
                },
            }
        )
    return rules


def _integer() -> dict[str, Any]:
    return {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER}


def _extension_value() -> dict[str, Any]:
    return {
        "description": "an extension attribute (e.g. traceparent): a string, integer or boolean",
        "type": ["string", "integer", "boolean"],
        "minimum": -MAX_SAFE_INTEGER,
        "maximum": MAX_SAFE_INTEGER,
    }


def _date_time(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "type": "string",
        "format": "date-time",
        "pattern": DATE_TIME_PATTERN,
    }


def _uscc() -> dict[str, Any]:
    return {
        "description": USCC_RULE,
        "type": "string",
        "minLength": 18,
        "maxLength": 18,
        "pattern": USCC_PATTERN,
    }


def _attributes() -> dict[str, Any]:
    """The context attributes of an inbound provider event (CONTRACT.md, "Envelope")."""
    return {
        "specversion": {"const": "1.0"},
        "id": {
            "description": "unique per event at its source: (source, id) is the idempotency key",
            "type": "string",
            "minLength": 1,
        },
        "source": {
            "description": "a URI-reference (RFC 3986) of the publishing system, e.g. "
            "/taobao-live/provider-admin; the service checks that it is not empty and "
            "holds no white space",
            "type": "string",
            "minLength": 1,
            "pattern": "^\\S+$",
        },
        "type": {"enum": list(EVENT_TYPES)},
        "subject": _uscc(),
        "time": _date_time(
            "RFC 3339 with an offset: when it happened upstream (business time); day "
            "counting uses its Asia/Shanghai calendar date. (The service also reads a space "
            "for the T, as RFC 3339 section 5.6 allows.)"
        ),
        "datacontenttype": {
            "description": "application/json, parameters allowed; may be omitted",
            "type": ["string", "null"],
            "pattern": JSON_MEDIA_TYPE_PATTERN,
        },
        "dataschema": {
            "description": "selects a payload version: one ending in <type>.v<N> (e.g. "
            f"{payload_id('provider.Applied', 2)}); absent, or naming no version of the "
            "type: v1; a version the service does not know: malformed",
            "type": ["string", "null"],
        },
        "data": {"description": "the payload of the type (and version)", "type": "object"},
    }


def _event_schema(
    names: dict[tuple[str, int], str],
    properties: dict[str, Any],
    required: list[str],
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "propertyNames": {"pattern": EXTENSION_NAME_PATTERN},
        "additionalProperties": _extension_value(),
        "allOf": _data_rules(names),
    }


def _inbound_body(names: dict[tuple[str, int], str]) -> dict[str, Any]:
    reserved = "reserved: the service's own outbound attribute makes an inbound event malformed"
    properties = {
        **_attributes(),
        "sequence": {"description": reserved, "not": {}},
        "recordedtime": {"description": reserved, "not": {}},
    }
    required = ["specversion", "id", "source", "type", "subject", "time", "data"]
    return _event_schema(names, properties, required)


def _envelope(names: dict[tuple[str, int], str], defs: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": DRAFT,
        "$id": _id("envelope"),
        "title": "Provider lifecycle event (inbound CloudEvent)",
        "description": (
            "One Kafka record of the inbound topic: a CloudEvents 1.0 event in JSON structured "
            "mode, record key = subject. Extension attributes are allowed: a name of 1 to 20 "
            "lower-case letters and digits, a string, integer or boolean value (sequence and "
            "recordedtime are reserved).\n\n"
            f"{USCC_RULE}\n\n{JSON_RULES}"
        ),
        **_inbound_body(names),
        "$defs": defs,
    }


def _outbound(names: dict[tuple[str, int], str], defs: dict[str, Any]) -> dict[str, Any]:
    later = sorted(payload_id(t, v) for t, v in names if v > 1)
    properties = {
        **_attributes(),
        "datacontenttype": {"const": "application/json"},
        "dataschema": {
            "description": "present when the payload is not v1: the $id of its schema",
            "enum": later,
        },
        "sequence": {
            "description": "the provider's stream position: 1, 2, 3 … contiguous per provider; "
            "(subject, sequence) identifies the event",
            **_integer(),
            "minimum": 1,
        },
        "recordedtime": {
            "description": "RFC 3339: when the service stored the event",
            "type": "string",
            "format": "date-time",
        },
    }
    required = [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "sequence",
        "recordedtime",
        "data",
    ]
    return {
        "$schema": DRAFT,
        "$id": _id("outbound"),
        "title": "Provider lifecycle event (outbound, provider-lifecycle.events.v1)",
        "description": (
            "Every accepted event, in store order, record key = subject: the inbound event "
            "(its id, source, type, subject, time, dataschema when not v1, extension "
            "attributes and data as received) plus the service's extension attributes "
            "sequence and recordedtime. Delivery is at-least-once: (subject, sequence) and "
            "(source, id) identify an event.\n\n"
            f"{USCC_RULE}\n\n{JSON_RULES}"
        ),
        **_event_schema(names, properties, required),
        "$defs": defs,
    }


def _refused(names: dict[tuple[str, int], str], defs: dict[str, Any]) -> dict[str, Any]:
    properties = {
        "specversion": {"const": "1.0"},
        "id": {
            "description": "refused:<where the event was consumed>",
            "type": "string",
            "pattern": "^refused:.",
        },
        "source": {
            "description": "the service (/taobao-live/provider-lifecycle-service)",
            "type": "string",
            "minLength": 1,
        },
        "type": {"const": "provider.Refused"},
        "subject": _uscc(),
        "time": {
            "description": "RFC 3339: when the service judged and kept the refusal",
            "type": "string",
            "format": "date-time",
        },
        "datacontenttype": {"const": "application/json"},
        "data": {
            "type": "object",
            "properties": {
                "event": {
                    "description": "the refused inbound event, as the service read it",
                    "$ref": "#/$defs/InboundEvent",
                },
                "codes": {
                    "description": "the clauses it breaks (RULEBOOK.md), STATE or ORDER",
                    "type": "array",
                    "minItems": 1,
                    "items": {"enum": list(REFUSAL_CODES)},
                },
                "reason": {"type": "string", "minLength": 1},
            },
            "required": ["event", "codes", "reason"],
            "additionalProperties": False,
        },
    }
    required = ["specversion", "id", "source", "type", "subject", "time", "data"]
    return {
        "$schema": DRAFT,
        "$id": _id("refused"),
        "title": "Refused event (provider-lifecycle.refused.v1)",
        "description": (
            "An inbound event the rulebook refuses, kept with its codes and reason, record "
            "key = subject: a CloudEvent of type provider.Refused.\n\n"
            f"{USCC_RULE}\n\n{JSON_RULES}"
        ),
        "type": "object",
        "properties": properties,
        "required": required,
        "propertyNames": {"pattern": EXTENSION_NAME_PATTERN},
        "additionalProperties": _extension_value(),
        "$defs": {"InboundEvent": _inbound_body(names), **defs},
    }


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every published schema by name: ``envelope``, each payload version, ``outbound``,
    ``refused``. A v1 payload is named by its type (``provider.Applied``), a later one with
    its version (``provider.Applied.v2``)."""
    names, defs, _ = _payload_defs()
    schemas: dict[str, dict[str, Any]] = {"envelope": _envelope(names, defs)}
    for (event_type, version), name in names.items():
        key = event_type if version == 1 else f"{event_type}.v{version}"
        schemas[key] = _payload_schema(event_type, version, name, defs)
    schemas["outbound"] = _outbound(names, defs)
    schemas["refused"] = _refused(names, defs)
    return schemas


def payload_json_schemas() -> dict[str, dict[str, Any]]:
    """The envelope and every payload version (what ``json_schemas`` has but the topics)."""
    return {k: v for k, v in json_schemas().items() if k not in ("outbound", "refused")}
