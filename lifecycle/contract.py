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

import json
import re
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


def quote(text: str, limit: int = 40) -> str:
    """``text`` for a reason: quoted, clipped, and writable as UTF-8 whatever it holds."""
    clipped = text if len(text) <= limit else text[:limit] + "…"
    quoted = json.dumps(clipped, ensure_ascii=False)
    return quoted.encode("utf-8", "backslashreplace").decode("utf-8")


def extension_problem(name: Any, value: Any) -> str | None:
    """Why an attribute outside :data:`CE_ATTRIBUTES` is not a valid extension attribute.

    CONTRACT.md: name ``[a-z0-9]{1,20}``, value a string, integer or boolean; ``sequence``
    and ``recordedtime`` are the service's own.
    """
    quoted = quote(str(name))
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
