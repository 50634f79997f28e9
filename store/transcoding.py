"""A faster transcoder for stored event state: ``orjson`` writing the library's own format.

The library's :class:`~eventsourcing.persistence.JSONTranscoder` encodes with the ``json``
module and a ``default`` hook; it was ≈ 9 µs of each recorded event. This one encodes
the same state with ``orjson`` into the **same bytes** for the states this service
records (compact separators, UTF-8, no ASCII escaping, registered types written as the
library's tagged ``{"_type_": …, "_data_": …}`` objects), so every stored event, old or
new, is decoded by the library's decoder unchanged (``decode`` is inherited).

``orjson`` would write some types natively where the library writes a tagged object or
refuses (``UUID``, ``Enum``, ``date``, dataclasses, …). So the fast path is taken only
when every top-level value of the state is a plain JSON type or a ``datetime`` (the
domain events' ``timestamp`` and ``recorded_at``); nested values are the JSON payloads
of the inbound records. Anything else, or anything ``orjson`` refuses (an integer
beyond 64 bits, a non-string key), falls back to the library's encoder.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder, Transcoder, TranscodingNotRegisteredError
from eventsourcing.utils import Environment

_PLAIN: frozenset[type] = frozenset({str, int, bool, type(None), dict, list, datetime})
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class OrjsonTranscoder(JSONTranscoder):
    """The library's JSON format, encoded with ``orjson`` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        # Every event of a batch shares ``recorded_at``, and events alternate it with their
        # own ``timestamp``: remember the last two datetimes encoded (most recent first).
        self._recent: list[tuple[datetime | None, dict[str, Any]]] = [(None, {}), (None, {})]

    def encode(self, obj: Any) -> bytes:
        if type(obj) is dict:
            for value in obj.values():
                kind = type(value)
                if kind not in _PLAIN and not (kind is float and math.isfinite(value)):
                    return super().encode(obj)
            try:
                return orjson.dumps(obj, default=self._default, option=_OPTIONS)
            except (orjson.JSONEncodeError, TranscodingNotRegisteredError):
                pass
        return super().encode(obj)

    def _default(self, o: Any) -> dict[str, Any]:
        if type(o) is datetime:
            recent = self._recent
            if o is recent[0][0]:
                return recent[0][1]
            if o is recent[1][0]:
                recent.reverse()
                return recent[0][1]
            tagged = self._encode_obj(o)
            recent[1] = recent[0]
            recent[0] = (o, tagged)
            return tagged
        return self._encode_obj(o)


class OrjsonTranscoding:
    """A factory mixin: the library's JSON format, encoded with orjson.

    A transcoder chosen with the library's ``TRANSCODER_TOPIC`` is left as it is.
    """

    TRANSCODER_TOPIC: str
    env: Environment

    def transcoder(self) -> Transcoder:
        if self.env.get(self.TRANSCODER_TOPIC):
            chosen: Transcoder = super().transcoder()  # type: ignore[misc]
            return chosen
        return OrjsonTranscoder()
