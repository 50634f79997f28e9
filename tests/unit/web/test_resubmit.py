"""Re-submission in flight through the read API and the dashboard (CONTRACT.md: "a record
whose re-submission is still in flight cannot be re-submitted again"): 409
``already_resubmitted`` until the consumer has taken the copy back; then again 202."""

from __future__ import annotations

from uuid import UUID

from lifecycle.application import InboundMessage
from lifecycle.inbox import Inbox
from tests.unit.web.fakes import RECORD_ID, TOKENS, Harness, auth


def _inbox(h: Harness) -> Inbox:
    inbox: Inbox = h.client.app.state.services.inbox()  # type: ignore[attr-defined]
    return inbox


def _copy_comes_back(h: Harness, record: str, offset: int) -> None:
    """The consumer takes the re-submitted copy off the inbound topic (``x-resubmit-of``)."""
    app = _inbox(h).app
    raw = app.record(UUID(record)).raw
    app.process([InboundMessage(raw, f"kafka:inbound:0:{offset}", None, True, UUID(record))])


def test_a_record_in_flight_answers_409_already_resubmitted(h: Harness) -> None:
    url = f"/v1/inbox/{RECORD_ID}/resubmit"
    assert h.client.post(url, headers=auth("admin")).status_code == 202
    again = h.client.post(url, headers=auth("admin"))
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "already_resubmitted"
    assert "has not come back" in error["message"]
    assert len(h.resubmissions.calls) == 1  # nothing was sent the second time

    _copy_comes_back(h, RECORD_ID, 100)
    after = h.client.post(url, headers=auth("admin"))
    assert after.status_code == 202, after.text
    assert after.json()["resubmissions"] == 2
    assert len(h.resubmissions.calls) == 2


def test_the_409_is_in_the_openapi_document(h: Harness) -> None:
    spec = h.client.get("/openapi.json", headers=auth("reader")).json()
    responses = spec["paths"]["/v1/inbox/{record}/resubmit"]["post"]["responses"]
    assert "409" in responses


def test_the_dashboard_shows_why_a_record_in_flight_was_not_resubmitted(h: Harness) -> None:
    h.client.get(f"/?token={TOKENS['admin']}")
    origin = {"origin": "http://testserver", "referer": "http://testserver/inbox"}
    first = h.client.post(f"/inbox/{RECORD_ID}/resubmit", headers=origin, follow_redirects=False)
    assert first.status_code == 303 and "ok=1" in first.headers["location"]
    second = h.client.post(f"/inbox/{RECORD_ID}/resubmit", headers=origin, follow_redirects=False)
    assert second.status_code == 303 and "ok=0" in second.headers["location"]
    shown = h.client.get(second.headers["location"])
    assert 'id="notice"' in shown.text and "has not come back" in shown.text
    assert len(h.resubmissions.calls) == 1
