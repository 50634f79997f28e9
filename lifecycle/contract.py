"""The wire contract (CONTRACT.md) as pydantic v2 models.

One Kafka record is a CloudEvents 1.0 envelope in JSON structured mode whose ``data``
is the payload of its ``type``. Everything is strict: unknown fields, wrong types,
a time without an offset, a bad USCC or a negative amount make the record *malformed*.
Every record also keeps CONTRACT.md's JSON rules (I-JSON, RFC 7493): UTF-8 without a
byte-order mark, no member name twice in one object, no lone surrogate and no U+0000
in any string, integers within ±(2^53 − 1), dates and times in 1900-01-01…2999-12-31.
``parse_record`` turns raw bytes into either an :class:`Envelope` or a
:class:`Malformed` with a machine-readable reason; it never raises.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lifecycle.rules import ARTICLE_2, Capability, Clause, business_date
from lifecycle.uscc import uscc_error

# --- the JSON rules' bounds (CONTRACT.md "JSON rules", I-JSON RFC 7493) -------------------

#: Integers within ±(2^53 − 1): exactly representable in an IEEE 754 double (RFC 7493 §2.2).
MAX_INTEGER: Final = 2**53 - 1
#: Every date and time (as written) lies between these two days.
FIRST_DATE: Final = date(1900, 1, 1)
LAST_DATE: Final = date(2999, 12, 31)
_DATE_RANGE = f"{FIRST_DATE}…{LAST_DATE}"

# --- field types ----------------------------------------------------------------------

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def _in_date_range(value: str) -> None:
    """The written date (its first ten characters, ``YYYY-MM-DD``) must be in range.

    Every day of the years 1900…2999 is, so the year decides; a date-time is judged by
    the date written in it (the calendar date at its own offset).
    """
    if not FIRST_DATE.year <= int(value[:4]) <= LAST_DATE.year:
        raise PydanticCustomError(
            "date_out_of_range",
            "{value} is outside " + _DATE_RANGE + " (CONTRACT.md JSON rules)",
            {"value": value},
        )


def _rfc3339(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError(
            "must be an RFC 3339 date-time with an offset, e.g. 2026-01-02T10:00:00+08:00"
        )
    _in_date_range(value)
    return value


def _iso_date(value: Any) -> Any:
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError("must be a date YYYY-MM-DD")
    _in_date_range(value)
    return value


def _uscc(value: str) -> str:
    error = uscc_error(value)
    if error:
        raise ValueError(f"not a valid USCC: {error}")
    return value


def _article_2(value: str) -> str:
    if value not in ARTICLE_2:
        raise ValueError("must be an Article 2 clause ID (A2.1-1 … A2.3-3)")
    return value


def _known_clause(value: str) -> str:
    if value not in Clause._value2member_map_ or value == Clause.STATE:
        raise ValueError("must be a clause ID of the rulebook")
    return value


BusinessTime = Annotated[datetime, BeforeValidator(_rfc3339)]
Day = Annotated[date, BeforeValidator(_iso_date)]
NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]
Uscc = Annotated[StrictStr, AfterValidator(_uscc)]
Article2Clause = Annotated[StrictStr, AfterValidator(_article_2)]
ClauseId = Annotated[StrictStr, AfterValidator(_known_clause)]
Fen = Annotated[StrictInt, Field(ge=0, le=MAX_INTEGER)]
PositiveFen = Annotated[StrictInt, Field(gt=0, le=MAX_INTEGER)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- payloads -------------------------------------------------------------------------


class Contact(_Strict):
    """Personal data: never logged, masked for readers without the auditor role."""

    name: StrictStr
    phone: StrictStr


class Applied(_Strict):
    company_name: NonEmptyStr
    entity_type: Literal["enterprise", "individual_business", "individual", "other"]
    real_name_verified: StrictBool
    general_taxpayer: StrictBool
    registered_capital_fen: Fen
    registered_on: Day
    advantage_statement: StrictStr | None
    is_store_account: StrictBool
    entity_city: StrictStr
    service_city: StrictStr
    capabilities: list[Capability]
    contact: Contact


class Address(_Strict):
    """A structured address (``provider.Applied`` v2)."""

    province: NonEmptyStr
    city: NonEmptyStr
    district: StrictStr | None
    street: StrictStr | None


class AppliedV2(_Strict):
    """``provider.Applied`` v2: ``address`` replaces v1's ``entity_city``; the rest is v1.

    Sent with ``dataschema`` ending in ``provider.Applied.v2`` (e.g. ``APPLIED_V2_SCHEMA``).
    """

    company_name: NonEmptyStr
    entity_type: Literal["enterprise", "individual_business", "individual", "other"]
    real_name_verified: StrictBool
    general_taxpayer: StrictBool
    registered_capital_fen: Fen
    registered_on: Day
    advantage_statement: StrictStr | None
    is_store_account: StrictBool
    address: Address
    service_city: StrictStr
    capabilities: list[Capability]
    contact: Contact


class Admitted(_Strict):
    decided_by: StrictStr


class DepositPaid(_Strict):
    amount_fen: PositiveFen
    payment_ref: StrictStr


class ViolationRecorded(_Strict):
    clause: Article2Clause
    severity: Literal["minor", "serious", "severe"]
    description: StrictStr
    evidence_ref: StrictStr | None


class Exited(_Strict):
    merchant_fees_settled: StrictBool
    transaction_obligations_fulfilled: StrictBool


class ReadmissionUntil(_Strict):
    until: Day


def _true(value: bool) -> bool:
    if value is not True:
        raise ValueError("must be true")
    return value


class ReadmissionPermanent(_Strict):
    permanent: Annotated[StrictBool, AfterValidator(_true)]


class Expelled(_Strict):
    ground: Literal["A1.2.2-1", "A1.2.2-2", "A1.2.2-3", "A1.2.2-4", "A3-2"]
    violations: list[Article2Clause]
    # Absent means the same as null: no restriction came with the event (A1.4, manual review).
    readmission: ReadmissionUntil | ReadmissionPermanent | None = None


class ApplicationDeclined(_Strict):
    reason: StrictStr
    clauses: list[ClauseId]


class DepositDeducted(_Strict):
    amount_fen: PositiveFen
    reason: StrictStr
    clause: ClauseId


class ReadmissionCleared(_Strict):
    cleared: Annotated[StrictBool, AfterValidator(_true)]


class ReadmissionDecided(_Strict):
    """The platform's decision that ends a manual review (A1.4): the re-admission
    restriction (A1.3-1) of the expulsion under review, or ``cleared`` (none)."""

    decided_by: StrictStr
    readmission: ReadmissionUntil | ReadmissionPermanent | ReadmissionCleared


PAYLOADS: Final[dict[str, type[_Strict]]] = {
    "provider.Applied": Applied,
    "provider.Admitted": Admitted,
    "provider.DepositPaid": DepositPaid,
    "provider.ViolationRecorded": ViolationRecorded,
    "provider.Exited": Exited,
    "provider.Expelled": Expelled,
    "provider.ApplicationDeclined": ApplicationDeclined,
    "provider.DepositDeducted": DepositDeducted,
    "provider.ReadmissionDecided": ReadmissionDecided,
}

#: Later versions of a payload, chosen by the envelope's ``dataschema`` (CloudEvents): one
#: ending in ``<type>.v<N>``. Without a ``dataschema``, or with one that names no version
#: of this type, the payload is v1, as it always was. Versions are added here, never edited.
VERSIONED_PAYLOADS: Final[dict[tuple[str, int], type[_Strict]]] = {
    ("provider.Applied", 2): AppliedV2,
}
APPLIED_V2_SCHEMA: Final = "urn:provider-lifecycle:schema:provider.Applied.v2"
_SCHEMA_VERSION = re.compile(r"(provider\.[A-Za-z]+)\.v([0-9]+)$")


def payload_version(event_type: str, dataschema: str | None) -> int | None:
    """The payload version ``dataschema`` selects for ``event_type``; ``None``: not one we know."""
    match = _SCHEMA_VERSION.search(dataschema or "")
    if match is None or match.group(1) != event_type:
        return 1
    version = int(match.group(2))
    return version if version == 1 or (event_type, version) in VERSIONED_PAYLOADS else None


def payload_model(event_type: str, version: int = 1) -> type[_Strict]:
    return PAYLOADS[event_type] if version == 1 else VERSIONED_PAYLOADS[(event_type, version)]


def address_from_v1(data: dict[str, Any]) -> dict[str, str | None]:
    """The structured address of a v1 application: only its city is known."""
    return {"province": None, "city": data["entity_city"], "district": None, "street": None}


def application_view(data: dict[str, Any], version: int) -> dict[str, Any]:
    """An application payload of any version in one shape: v1's fields plus ``address``."""
    if version == 1:
        return {**data, "address": address_from_v1(data)}
    return {**data, "entity_city": data["address"]["city"]}


def application_for_rules(application: dict[str, Any]) -> Applied:
    """The v1 model of an application (from :func:`application_view`): what A1.1 judges."""
    return Applied.model_validate(
        {k: v for k, v in application.items() if k in Applied.model_fields}
    )


EventType = Literal[
    "provider.Applied",
    "provider.Admitted",
    "provider.DepositPaid",
    "provider.ViolationRecorded",
    "provider.Exited",
    "provider.Expelled",
    "provider.ApplicationDeclined",
    "provider.DepositDeducted",
    "provider.ReadmissionDecided",
]
EVENT_TYPES: Final[tuple[EventType, ...]] = get_args(EventType)


# --- envelope -------------------------------------------------------------------------

#: The CloudEvents attributes this contract names (CONTRACT.md "Envelope").
CE_ATTRIBUTES: Final[frozenset[str]] = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "data",
    }
)
#: The service's own extension attributes (outbound only): an inbound event is malformed
#: with one of them.
RESERVED_ATTRIBUTES: Final[frozenset[str]] = frozenset({"sequence", "recordedtime"})
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}\Z")
ExtensionValue = StrictStr | StrictInt | StrictBool

#: ``application/json`` with or without parameters (RFC 9110 §8.3.1), e.g. ``; charset=utf-8``.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_JSON_MEDIA_TYPE = re.compile(
    rf"application/json(?:[ \t]*;(?:[ \t]*{_TOKEN}=(?:{_TOKEN}|\"(?:[^\"\\]|\\.)*\"))?)*"
    r"[ \t]*\Z",
    re.IGNORECASE,
)


def _json_media_type(value: str) -> str:
    if not _JSON_MEDIA_TYPE.match(value):
        raise ValueError(
            "must be application/json, parameters allowed (application/json; charset=utf-8)"
        )
    return value


def extension_problem(name: Any, value: Any) -> str | None:
    """Why an attribute outside :data:`CE_ATTRIBUTES` is not a valid extension attribute.

    CONTRACT.md: name ``[a-z0-9]{1,20}``, value a string, integer or boolean; ``sequence``
    and ``recordedtime`` are the service's own.
    """
    quoted = _quote(str(name))
    if name in RESERVED_ATTRIBUTES:
        return f"{quoted} is the service's own attribute (outbound only), not for an inbound event"
    if not isinstance(name, str) or not _EXTENSION_NAME.match(name):
        return (
            f"{quoted} is neither an attribute of this contract nor an extension attribute "
            "name ([a-z0-9]{1,20})"
        )
    if isinstance(value, bool | str):
        return None
    if isinstance(value, int):
        if -MAX_INTEGER <= value <= MAX_INTEGER:
            return None
        return f"{quoted}: an integer beyond ±(2^53 − 1)"
    return f"{quoted}: an extension attribute is a string, an integer or a boolean"


def _wire_schema(schema: dict[str, Any]) -> None:
    """The envelope's JSON Schema: extension attributes, and not the reserved ones."""
    schema["propertyNames"] = {"pattern": "^[a-z0-9]{1,20}$"}
    schema["additionalProperties"] = {
        "anyOf": [
            {"type": "string"},
            {"type": "integer", "minimum": -MAX_INTEGER, "maximum": MAX_INTEGER},
            {"type": "boolean"},
        ]
    }
    schema["not"] = {"anyOf": [{"required": [name]} for name in sorted(RESERVED_ATTRIBUTES)]}


class Envelope(_Strict):
    """A CloudEvents 1.0 envelope (JSON structured mode) of a provider lifecycle event.

    Any other attribute is an extension attribute (name [a-z0-9]{1,20}; a string, an
    integer or a boolean), kept with the event; sequence and recordedtime are the
    service's own and never inbound. Dumped, the extension attributes are at the top
    level again: the CloudEvent as received.
    """

    model_config = ConfigDict(extra="allow", frozen=True, json_schema_extra=_wire_schema)
    __pydantic_extra__: dict[str, ExtensionValue] = Field(init=False)

    specversion: Literal["1.0"]
    id: NonEmptyStr
    source: Annotated[StrictStr, Field(min_length=1, pattern=r"^\S+$")]
    type: EventType
    subject: Uscc
    time: BusinessTime
    datacontenttype: Annotated[StrictStr, AfterValidator(_json_media_type)] | None = None
    dataschema: StrictStr | None = None
    data: dict[str, Any]

    @model_validator(mode="after")
    def _extension_attributes(self) -> Envelope:
        for name, value in (self.__pydantic_extra__ or {}).items():
            problem = extension_problem(name, value)
            if problem is not None:
                raise PydanticCustomError("extension_attribute", "{problem}", {"problem": problem})
        return self

    @property
    def extensions(self) -> dict[str, str | int | bool]:
        """The CloudEvents extension attributes (e.g. ``traceparent``), kept with the event."""
        return self.__pydantic_extra__ or {}

    @property
    def business_date(self) -> date:
        """The Asia/Shanghai calendar date of ``time``: what day counting uses."""
        return business_date(self.time)

    @property
    def payload_version(self) -> int:
        version = payload_version(self.type, self.dataschema)
        if version is None:
            raise ValueError(f"dataschema {self.dataschema!r} is not a known version")
        return version

    def payload(self) -> _Strict:
        return payload_model(self.type, self.payload_version).model_validate(self.data)


# --- parsing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Malformed:
    """A record that is not a valid event; ``reason`` starts with a stable code.

    Codes: ``invalid_json``, ``not_an_object``, ``invalid_envelope``, ``unknown_type``,
    ``invalid_subject``, ``invalid_data``; and one per JSON rule (CONTRACT.md, I-JSON):
    ``invalid_encoding`` (not UTF-8), ``byte_order_mark``, ``duplicate_member``,
    ``lone_surrogate``, ``nul_character``, ``integer_out_of_range``, ``date_out_of_range``.
    """

    reason: str
    id: str | None = None
    subject: str | None = None

    @property
    def code(self) -> str:
        return self.reason.split(":", 1)[0]


#: The reason codes of the JSON rules (CONTRACT.md, I-JSON), one per rule.
JSON_RULE_CODES: Final = (
    "invalid_encoding",
    "byte_order_mark",
    "lone_surrogate",
    "nul_character",
    "duplicate_member",
    "integer_out_of_range",
    "date_out_of_range",
)
#: Every reason code of a malformed record that the parser gives.
MALFORMED_CODES: Final = (
    "invalid_json",
    "not_an_object",
    "unknown_type",
    "invalid_envelope",
    "invalid_subject",
    "invalid_data",
    *JSON_RULE_CODES,
)

_ENVELOPE_JSON = TypeAdapter(Envelope)


def _quote(text: str, limit: int = 40) -> str:
    """``text`` for a reason: quoted, clipped, and writable as UTF-8 whatever it holds."""
    clipped = text if len(text) <= limit else text[:limit] + "…"
    quoted = json.dumps(clipped, ensure_ascii=False)
    return quoted.encode("utf-8", "backslashreplace").decode("utf-8")


def _where(loc: tuple[Any, ...]) -> str:
    """A location for a reason (``data.contact.name``); a very deep one keeps its ends."""
    parts = [_quote(str(p))[1:-1] for p in loc]
    if len(parts) > 8:
        parts = [*parts[:4], f"…({len(parts) - 7} more)…", *parts[-3:]]
    return ".".join(parts) or "(root)"


def _describe(error: ValidationError, prefix: str = "", only: str | None = None) -> str:
    parts = []
    items = [e for e in error.errors(include_url=False) if only is None or e["type"] == only]
    for item in items[:3]:
        if item["type"] == "extension_attribute":
            parts.append(f"{prefix}{item['msg']}")  # the message names the attribute
        else:
            parts.append(f"{prefix}{_where(item['loc'])}: {item['msg']}")
    return "; ".join(parts)


def _date_errors(error: ValidationError) -> bool:
    return any(e["type"] == "date_out_of_range" for e in error.errors())


# --- the JSON rules, step by step -------------------------------------------------------

_I_JSON = "I-JSON, RFC 7493"


def _decode(data: bytes) -> str | Malformed:
    """UTF-8 only (RFC 7493 §2.1): the text of the record, or why it is not UTF-8."""
    for bom, name in ((codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF32_LE, "UTF-32")):
        if data.startswith(bom):
            return Malformed(
                f"invalid_encoding: the record is {name} (by its byte-order "
                f"mark), not UTF-8 ({_I_JSON} §2.1)"
            )
    for bom in (codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE):
        if data.startswith(bom):
            return Malformed(
                f"invalid_encoding: the record is UTF-16 (by its byte-order "
                f"mark), not UTF-8 ({_I_JSON} §2.1)"
            )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = exc.start
        surrogate = data[at : at + 3]
        if _encodes_a_surrogate(surrogate):
            point = ((surrogate[1] & 0x3F) << 6 | (surrogate[2] & 0x3F)) + 0xD000
            return Malformed(
                f"lone_surrogate: the bytes at {at} encode U+{point:04X}, a lone "
                f"surrogate, which UTF-8 cannot hold ({_I_JSON} §2.1)"
            )
        return Malformed(
            f"invalid_encoding: not UTF-8: byte 0x{data[at]:02x} at {at} ({exc.reason}) "
            f"({_I_JSON} §2.1)"
        )
    if "\x00" in text:
        guess = json.detect_encoding(data)
        if guess.startswith(("utf-16", "utf-32")):
            return Malformed(
                f"invalid_encoding: the record looks like {guess.upper()} (NUL bytes "
                f"between its characters), not UTF-8 ({_I_JSON} §2.1)"
            )
    return text


def _encodes_a_surrogate(seq: bytes) -> bool:
    """``ED A0..BF 80..BF``: the UTF-8 form of U+D800..U+DFFF, which UTF-8 excludes."""
    return len(seq) == 3 and seq[0] == 0xED and 0xA0 <= seq[1] <= 0xBF and 0x80 <= seq[2] <= 0xBF


class _Repeated(dict[str, Any]):
    """A JSON object in which some member name came more than once (the last value kept)."""

    repeated: list[str]


class _HugeInteger:
    """An integer literal too long to be within ±(2^53 − 1) (kept as its digits)."""

    def __init__(self, digits: str) -> None:
        self.digits = digits


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    repeated = _Repeated(obj)
    repeated.repeated = []
    for name, _ in pairs:
        if name in seen and name not in repeated.repeated:
            repeated.repeated.append(name)
        seen.add(name)
    return repeated


def _integer(literal: str) -> int | _HugeInteger:
    # JSON integers have no leading zeros: 17 characters hold -(2^53 − 1) … 2^53 − 1 and
    # more; a longer literal is out of range (and int() of thousands of digits is slow).
    return int(literal) if len(literal) <= 17 else _HugeInteger(literal)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value (RFC 8259)")


def _loads(text: str) -> Any:
    try:
        return json.loads(
            text, object_pairs_hook=_object, parse_int=_integer, parse_constant=_not_json
        )
    except (ValueError, RecursionError) as exc:
        return Malformed(f"invalid_json: {exc}")


_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def _character_breach(found: str, where: str, what: str) -> str:
    if found == "\x00":
        return f"nul_character: {where}: {what} holds U+0000 (CONTRACT.md JSON rules)"
    return (
        f"lone_surrogate: {where}: {what} holds the lone surrogate U+{ord(found):04X} "
        f"({_I_JSON} §2.1)"
    )


def _json_rule_breach(obj: Any) -> str | None:
    """The first breach of the JSON rules in document order (depth first), or ``None``."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(obj, ())]
    while stack:
        value, path = stack.pop()
        kind = type(value)
        if kind is str:
            found = _BAD_CHARACTER.search(value)
            if found is not None:
                return _character_breach(found.group(), _where(path), "a string")
        elif kind is int:
            if not -MAX_INTEGER <= value <= MAX_INTEGER:
                return (
                    f"integer_out_of_range: {_where(path)}: {value} is beyond ±(2^53 − 1) "
                    f"({_I_JSON} §2.2)"
                )
        elif kind is _HugeInteger:
            return (
                f"integer_out_of_range: {_where(path)}: a {len(value.digits.lstrip('-'))}-digit "
                f"integer is beyond ±(2^53 − 1) ({_I_JSON} §2.2)"
            )
        elif kind is list:
            stack.extend(reversed([(item, (*path, i)) for i, item in enumerate(value)]))
        elif kind is dict or kind is _Repeated:
            children = []
            for name, item in value.items():
                found = _BAD_CHARACTER.search(name)
                if found is not None:
                    return _character_breach(found.group(), _where(path), "a member name")
                children.append((item, (*path, name)))
            if kind is _Repeated:
                return (
                    f"duplicate_member: {_where(path)}: the member name "
                    f"{_quote(value.repeated[0])} appears more than once ({_I_JSON} §2.3)"
                )
            stack.extend(reversed(children))
    return None


def _identity(obj: Any) -> tuple[str | None, str | None]:
    """The record's ``id`` and ``subject`` when they can be read and written back as UTF-8."""
    if not isinstance(obj, dict):
        return None, None
    repeated = obj.repeated if isinstance(obj, _Repeated) else []

    def readable(name: str) -> str | None:
        value = obj.get(name)
        if not isinstance(value, str) or name in repeated or _BAD_CHARACTER.search(value):
            return None
        return value

    ce_id = readable("id")
    return ce_id or None, readable("subject")


def parse_record(raw: bytes | str) -> Envelope | Malformed:
    """Parse one record into an envelope with a validated payload, or say why not.

    Never raises: whatever the bytes, the answer is an envelope or a :class:`Malformed`.
    """
    try:
        return _parse_valid_v1(raw) or _parse_checked(raw)
    except Exception as exc:  # a bug must not stall a partition: the record is malformed
        return _internal_error(exc)


_UTF8_BOM = codecs.BOM_UTF8
_NUL_ESCAPE = b"\\u0000"
_SPACE_BEFORE_COLON = re.compile(rb'"[ \t\r\n]+:')


def _parse_valid_v1(raw: bytes | str) -> Envelope | None:
    """The common case in one pass of pydantic-core: a valid event with a v1 payload.

    ``None`` sends the record down :func:`parse_record_checked`, which accepts exactly
    the same records and says why the others are malformed. A valid payload is already
    canonical (strict formats, no defaults), so it is kept as it came.

    pydantic-core's JSON parser already refuses what is not UTF-8, a byte-order mark and
    lone surrogates (escaped or not); the models bound every integer and date. What it
    lets through is U+0000 written ``\u0000`` (sent down the checked path) and a member
    name given twice (the last wins), which the member count below detects.
    """
    if type(raw) is not bytes or _NUL_ESCAPE in raw or raw.startswith(_UTF8_BOM):
        return None
    try:
        envelope = _ENVELOPE_JSON.validate_json(raw)
        if envelope.dataschema is not None:
            return None
        model = PAYLOADS[envelope.type]
        model.model_validate(envelope.data)
    except (ValidationError, ValueError, RecursionError):
        return None
    if len(envelope.data) != len(model.model_fields):
        return None  # a defaulted field was left out: store the canonical form
    # I-JSON: no member name twice. In valid JSON every member name is a string followed
    # by ``:``; without whitespace in between, each ends in ``":``, and ``":`` elsewhere
    # can only be inside a string (an escaped quote). So the count of ``":`` is at least
    # the number of member names in the record; it equals the number of distinct ones
    # parsed only when no object repeats a name.
    if raw.count(b'":') != _members(envelope) or _SPACE_BEFORE_COLON.search(raw):
        return None
    return envelope


def _members(envelope: Envelope) -> int:
    """How many members the parsed record has (repeated names collapsed), at every depth."""
    return len(envelope.model_fields_set) + _members_of(envelope.data)  # extensions too


def _members_of(value: Any) -> int:
    is_object = type(value) is dict
    count = len(value) if is_object else 0
    for item in value.values() if is_object else value:
        kind = type(item)
        if kind is dict or kind is list:
            count += _members_of(item)
    return count


def parse_record_checked(raw: bytes | str) -> Envelope | Malformed:
    """Step by step, so a malformed record gets a precise, machine-readable reason."""
    try:
        return _parse_checked(raw)
    except Exception as exc:  # a bug must not stall a partition: the record is malformed
        return _internal_error(exc)


def _internal_error(exc: Exception) -> Malformed:
    return Malformed(f"internal_error: parsing raised {type(exc).__name__}")


def _parse_checked(raw: bytes | str) -> Envelope | Malformed:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if data.startswith(_UTF8_BOM):
        # Malformed, but say whose record it is when the rest can be read.
        rest = _decode(data[len(_UTF8_BOM) :])
        obj = _loads(rest) if isinstance(rest, str) else None
        ce_id, subject = _identity(obj)
        return Malformed(
            "byte_order_mark: the record starts with a byte-order mark (EF BB BF); "
            "records are UTF-8 without one (I-JSON, RFC 7493 §2.1)",
            ce_id,
            subject,
        )
    text = _decode(data)
    if isinstance(text, Malformed):
        return text
    obj = _loads(text)
    if isinstance(obj, Malformed):
        return obj
    breach = _json_rule_breach(obj)
    if breach is not None:
        return Malformed(breach, *_identity(obj))
    if not isinstance(obj, dict):
        return Malformed(f"not_an_object: the record is a JSON {type(obj).__name__}")
    ce_id, subject = _identity(obj)
    event_type = obj.get("type")
    if isinstance(event_type, str) and event_type not in PAYLOADS:
        return Malformed(
            f"unknown_type: {_quote(event_type)} is not a provider event type", ce_id, subject
        )
    try:
        envelope = _ENVELOPE_JSON.validate_python(obj)
    except ValidationError as exc:
        if _date_errors(exc):
            reason = _describe(exc, only="date_out_of_range")
            return Malformed(f"date_out_of_range: {reason}", ce_id, subject)
        if any(e["loc"][:1] == ("subject",) for e in exc.errors()):
            return Malformed(f"invalid_subject: {_describe(exc)}", ce_id, subject)
        for name, value in obj.items():  # say which extension attribute, and why
            problem = None if name in CE_ATTRIBUTES else extension_problem(name, value)
            if problem is not None:
                return Malformed(f"invalid_envelope: {problem}", ce_id, subject)
        return Malformed(f"invalid_envelope: {_describe(exc)}", ce_id, subject)
    version = payload_version(envelope.type, envelope.dataschema)
    if version is None:
        return Malformed(
            f"invalid_envelope: dataschema: {_quote(envelope.dataschema or '')} names a "
            f"version of {envelope.type} this service does not know",
            ce_id,
            subject,
        )
    try:
        payload = payload_model(envelope.type, version).model_validate(envelope.data)
    except ValidationError as exc:
        if _date_errors(exc):
            reason = _describe(exc, "data.", only="date_out_of_range")
            return Malformed(f"date_out_of_range: {reason}", ce_id, subject)
        return Malformed(f"invalid_data: {_describe(exc, 'data.')}", ce_id, subject)
    # Keep the payload in its canonical JSON form (dates as strings) for storage.
    canonical = payload.model_dump(mode="json")
    return envelope.model_copy(update={"data": canonical})
