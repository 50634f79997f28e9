"""Parsing a record: bytes → an :class:`~lifecycle.contract.Envelope` or a :class:`Malformed`.

The JSON rules of CONTRACT.md 1.1 (I-JSON, RFC 7493) are checked step by step, each with its
own reason code; a valid v1 record takes the fast path (one pydantic-core pass) and every
other record the checked path, which explains what is wrong. Neither ever raises.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from pydantic import (
    TypeAdapter,
    ValidationError,
)

from lifecycle.contract import (
    CE_ATTRIBUTES,
    MAX_INTEGER,
    PAYLOADS,
    Envelope,
    extension_problem,
    payload_model,
    payload_version,
    quote,
)


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


def _where(loc: tuple[Any, ...]) -> str:
    """A location for a reason (``data.contact.name``); a very deep one keeps its ends."""
    parts = [quote(str(p))[1:-1] for p in loc]
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
                    f"{quote(value.repeated[0])} appears more than once ({_I_JSON} §2.3)"
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
            f"unknown_type: {quote(event_type)} is not a provider event type", ce_id, subject
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
            f"invalid_envelope: dataschema: {quote(envelope.dataschema or '')} names a "
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
