"""The orjson transcoder writes the library's format byte for byte, and falls back safely."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError

from lifecycle.application import InboundMessage, ProviderLifecycle
from service.demo import generate
from store.transcoding import OrjsonTranscoder


def reference(app: ProviderLifecycle) -> JSONTranscoder:
    transcoder = JSONTranscoder()
    Application.register_transcodings(app, transcoder)  # type: ignore[arg-type]
    return transcoder


def test_every_stored_state_of_a_realistic_stream_is_byte_identical() -> None:
    app = ProviderLifecycle(env={"PERSISTENCE_MODULE": "store.memory:Factory"})
    assert isinstance(app.mapper.transcoder, OrjsonTranscoder)
    lines = list(generate(providers=200, seed=31))
    app.process([InboundMessage(line, f"t:{i}") for i, line in enumerate(lines)])
    library = reference(app)
    notifications = app.process_recorder.select_notifications(1, len(lines) + 10)
    assert len(notifications) >= len(lines)  # plus a marker per refused id
    for notification in notifications:
        event = app.mapper.to_domain_event(notification)
        state = dict(vars(event))
        state.pop("originator_id")
        state.pop("originator_version")
        class_version = getattr(type(event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        assert app.mapper.transcoder.encode(state) == library.encode(state)
        assert notification.state == library.encode(state)


def test_types_orjson_would_write_differently_fall_back_to_the_library() -> None:
    app = ProviderLifecycle(env={"PERSISTENCE_MODULE": "store.memory:Factory"})
    fast, library = app.mapper.transcoder, reference(app)
    shanghai = timezone(timedelta(hours=8))
    for state in (
        {"id": uuid.uuid4()},
        {"big": 2**70},
        {"when": datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=shanghai), "n": 1.5},
        {"when": datetime(2026, 1, 2, tzinfo=UTC), "nested": {"a": [1, "二", None]}},
    ):
        assert fast.encode(state) == library.encode(state)
        assert fast.decode(fast.encode(state)) == state


def test_an_unregistered_type_is_refused_by_both() -> None:
    app = ProviderLifecycle(env={"PERSISTENCE_MODULE": "store.memory:Factory"})
    for transcoder in (app.mapper.transcoder, reference(app)):
        with pytest.raises(TranscodingNotRegisteredError):
            transcoder.encode({"day": date(2026, 1, 2)})
