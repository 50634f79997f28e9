"""The wire contract (CONTRACT.md) as pydantic v2 models.

One Kafka record is a CloudEvents 1.0 envelope in JSON structured mode whose ``data``
is the payload of its ``type``. Everything is strict: unknown fields, wrong types,
a time without an offset, a bad USCC or a negative amount make the record *malformed*.
``parse_record`` turns raw bytes into either an :class:`Envelope` or a
:class:`Malformed` with a machine-readable reason; it never raises.
"""

from __future__ import annotations

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
)

from lifecycle.rules import ARTICLE_2, Capability, Clause, business_date
from lifecycle.uscc import uscc_error

# --- field types ----------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _rfc3339(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError(
            "must be an RFC 3339 date-time with an offset, e.g. 2026-01-02T10:00:00+08:00"
        )
    return value


def _iso_date(value: Any) -> Any:
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError("must be a date YYYY-MM-DD")
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
Fen = Annotated[StrictInt, Field(ge=0)]
PositiveFen = Annotated[StrictInt, Field(gt=0)]


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


PAYLOADS: Final[dict[str, type[_Strict]]] = {
    "provider.Applied": Applied,
    "provider.Admitted": Admitted,
    "provider.DepositPaid": DepositPaid,
    "provider.ViolationRecorded": ViolationRecorded,
    "provider.Exited": Exited,
    "provider.Expelled": Expelled,
    "provider.ApplicationDeclined": ApplicationDeclined,
    "provider.DepositDeducted": DepositDeducted,
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
]
EVENT_TYPES: Final[tuple[EventType, ...]] = get_args(EventType)


# --- envelope -------------------------------------------------------------------------


class Envelope(_Strict):
    """A CloudEvents 1.0 envelope (JSON structured mode) of a provider lifecycle event."""

    specversion: Literal["1.0"]
    id: NonEmptyStr
    source: Annotated[StrictStr, Field(min_length=1, pattern=r"^\S+$")]
    type: EventType
    subject: Uscc
    time: BusinessTime
    datacontenttype: Literal["application/json"] | None = None
    dataschema: StrictStr | None = None
    data: dict[str, Any]

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
    ``invalid_subject``, ``invalid_data``.
    """

    reason: str
    id: str | None = None
    subject: str | None = None

    @property
    def code(self) -> str:
        return self.reason.split(":", 1)[0]


_ENVELOPE_JSON = TypeAdapter(Envelope)


def _describe(error: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in error.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "(root)"
        parts.append(f"{prefix}{where}: {item['msg']}")
    return "; ".join(parts)


def parse_record(raw: bytes | str) -> Envelope | Malformed:
    """Parse one record into an envelope with a validated payload, or say why not."""
    return _parse_valid_v1(raw) or parse_record_checked(raw)


def _parse_valid_v1(raw: bytes | str) -> Envelope | None:
    """The common case in one pass of pydantic-core: a valid event with a v1 payload.

    ``None`` sends the record down :func:`parse_record_checked`, which accepts exactly
    the same records and says why the others are malformed. A valid payload is already
    canonical (strict formats, no defaults), so it is kept as it came.
    """
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
    return envelope


def parse_record_checked(raw: bytes | str) -> Envelope | Malformed:
    """Step by step, so a malformed record gets a precise, machine-readable reason."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return Malformed(f"invalid_json: {exc}")
    if not isinstance(obj, dict):
        return Malformed(f"not_an_object: the record is a JSON {type(obj).__name__}")
    ce_id = obj.get("id") if isinstance(obj.get("id"), str) and obj.get("id") else None
    subject = obj.get("subject") if isinstance(obj.get("subject"), str) else None
    event_type = obj.get("type")
    if isinstance(event_type, str) and event_type not in PAYLOADS and "type" in obj:
        return Malformed(
            f"unknown_type: {event_type!r} is not a provider event type", ce_id, subject
        )
    try:
        envelope = _ENVELOPE_JSON.validate_python(obj)
    except ValidationError as exc:
        if any(e["loc"][:1] == ("subject",) for e in exc.errors()):
            return Malformed(f"invalid_subject: {_describe(exc)}", ce_id, subject)
        return Malformed(f"invalid_envelope: {_describe(exc)}", ce_id, subject)
    version = payload_version(envelope.type, envelope.dataschema)
    if version is None:
        return Malformed(
            f"invalid_envelope: dataschema: {envelope.dataschema!r} names a version of "
            f"{envelope.type} this service does not know",
            ce_id,
            subject,
        )
    try:
        payload = payload_model(envelope.type, version).model_validate(envelope.data)
    except ValidationError as exc:
        return Malformed(f"invalid_data: {_describe(exc, 'data.')}", ce_id, subject)
    # Keep the payload in its canonical JSON form (dates as strings) for storage.
    canonical = payload.model_dump(mode="json")
    return envelope.model_copy(update={"data": canonical})
