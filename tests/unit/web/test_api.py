"""The read API over a fake, in-memory ReadModel: auth matrix, masking, as_of, pages, errors.

The fake records every call, so the tests check what the API asks of the read model
(filters, as_of, offset/limit/sort) as well as what it answers.
"""

from __future__ import annotations

import logging
import re
import socket
from datetime import date

import pytest
from fastapi.testclient import TestClient

import consumers.metrics  # noqa: F401  (registers the consumer's metrics in the default registry)
from lifecycle.privacy import mask_contact, mask_name, mask_phone
from lifecycle.records import record_id
from projections.model import InboxFilter, Page, ProviderFilter
from tests.unit.web.fakes import (
    KNOWN,
    OTHER,
    RECORD_ID,
    SPEC,
    TOKENS,
    UNKNOWN,
    FakeReadModel,
    Harness,
    Settings,
    auth,
    harness,
    memory_inbox,
)
from web.app import create_app
from web.auth import (
    TokenTable,
)
from web.params import today

# --- the auth matrix ------------------------------------------------------------------

ENDPOINTS: list[tuple[str, str, str | None]] = [
    ("GET", "/v1/providers", "reader"),
    ("GET", f"/v1/providers/{KNOWN}", "reader"),
    ("GET", f"/v1/providers/{KNOWN}?as_of=2025-02-01", "reader"),
    ("GET", "/v1/stats", "reader"),
    ("GET", "/v1/inbox", "reader"),
    ("POST", f"/v1/inbox/{RECORD_ID}/resubmit", "admin"),
    ("GET", "/readyz", "reader"),
    ("GET", "/metrics", "reader"),
    ("GET", f"/v1/providers/{KNOWN}/history", "auditor"),  # an extra router
    ("GET", "/healthz", None),
    ("GET", "/", "reader"),
    ("GET", "/providers", "reader"),
    ("GET", f"/providers/{KNOWN}", "reader"),
    ("GET", "/inbox", "reader"),
]
RANK = {"reader": 0, "auditor": 1, "admin": 2}
SUCCESS = {"POST": 202, "GET": 200}


@pytest.mark.parametrize(("method", "path", "minimum"), ENDPOINTS)
@pytest.mark.parametrize("role", [None, "bogus", "reader", "auditor", "admin"])
def test_auth_matrix(
    h: Harness, method: str, path: str, minimum: str | None, role: str | None
) -> None:
    response = h.client.request(method, path, headers=auth(role))
    if minimum is None:
        expected = SUCCESS[method]
    elif role in (None, "bogus"):
        expected = 401
    elif RANK[role] < RANK[minimum]:
        expected = 403
    else:
        expected = SUCCESS[method]
    assert response.status_code == expected, response.text
    page = not path.startswith(("/v1", "/readyz", "/metrics", "/healthz"))
    if expected == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        if page:
            assert "text/html" in response.headers["content-type"]
            assert 'name="token"' in response.text  # the login form
        else:
            assert response.json()["error"]["code"] == "unauthorized"
    if expected == 403:
        assert response.json() == {
            "error": {"code": "forbidden", "message": response.json()["error"]["message"]}
        }


def test_unauthorized_messages_tell_missing_from_unknown(h: Harness) -> None:
    missing = h.client.get("/v1/stats").json()["error"]
    unknown = h.client.get("/v1/stats", headers=auth("bogus")).json()["error"]
    assert missing["code"] == unknown["code"] == "unauthorized"
    assert "bearer token is required" in missing["message"]
    assert unknown["message"] == "unknown token"
    basic = h.client.get("/v1/stats", headers={"Authorization": f"Basic {TOKENS['admin']}"})
    assert basic.status_code == 401


def test_resubmit_api_refuses_the_cookie(h: Harness) -> None:
    """State-changing API calls take the bearer header only, never the browser cookie."""
    h.client.cookies.set("lifecycle_token", TOKENS["admin"])
    assert h.client.get("/v1/stats").status_code == 200  # reads may use the cookie
    response = h.client.post(f"/v1/inbox/{RECORD_ID}/resubmit")
    assert response.status_code == 401
    assert h.resubmissions.calls == []


def test_empty_token_setting_locks_everything_but_healthz() -> None:
    h = harness(settings=Settings(api_tokens=""))
    assert h.client.get("/healthz").status_code == 200
    assert h.client.get("/v1/stats", headers=auth("admin")).status_code == 401


def test_bad_token_setting_fails_at_start() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        harness(settings=Settings(api_tokens="root:secret"))
    with pytest.raises(ValueError, match="role:token"):
        harness(settings=Settings(api_tokens="reader"))


def test_token_table_parsing() -> None:
    table = TokenTable.parse(" reader:abc , admin:x:y ,, ")
    assert len(table) == 2
    reader, admin = table.lookup("abc"), table.lookup("x:y")
    assert reader is not None and reader.role == "reader"
    assert admin is not None and admin.role == "admin"
    assert admin.name.startswith("admin:") and "x:y" not in admin.name
    assert table.lookup("abc ") is None and table.lookup("") is None
    with pytest.raises(ValueError, match="two roles"):
        TokenTable.parse("reader:t,admin:t")


# --- masking ---------------------------------------------------------------------------


def test_masking_helpers() -> None:
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("李") == "*"
    assert mask_phone("13800000000") == "138****0000"
    assert mask_phone("12345") == "*****"
    assert mask_contact({"name": "王伟", "phone": "13912345678"}) == {
        "name": "王*",
        "phone": "139****5678",
    }
    assert mask_contact(None) is None


@pytest.mark.parametrize(
    ("role", "name", "phone"),
    [
        ("reader", "欧***", "138****5678"),
        ("auditor", "欧阳娜娜", "13812345678"),
        ("admin", "欧阳娜娜", "13812345678"),
    ],
)
def test_contact_masked_for_readers_only(h: Harness, role: str, name: str, phone: str) -> None:
    one = h.client.get(f"/v1/providers/{KNOWN}", headers=auth(role)).json()
    assert one["contact"] == {"name": name, "phone": phone}
    listed = h.client.get("/v1/providers", headers=auth(role)).json()["items"]
    assert {"name": name, "phone": phone} in [item["contact"] for item in listed]
    page = h.client.get(f"/providers/{KNOWN}", headers=auth(role)).text
    assert name in page and phone in page
    if role == "reader":
        assert "欧阳娜娜" not in page and "13812345678" not in page
    # The read model's document is never changed in place.
    assert h.read_model.documents[KNOWN]["contact"]["name"] == "欧阳娜娜"


# --- one provider, as_of ------------------------------------------------------------------


def test_provider_fields(h: Harness) -> None:
    body = h.client.get(f"/v1/providers/{KNOWN}", headers=auth("reader")).json()
    for key in ("status", "deposit_balance_fen", "violations", "eligibility"):
        assert key in body  # the fields of `lifecycle evaluate`'s provider entry
    assert body["status"] == "active"
    assert body["deposit_balance_fen"] == 10_000_000
    assert body["violations"] == 1
    assert body["eligibility"]["clause"] == "STATE"
    assert body["requirements"] == []
    assert "timeline" not in body
    assert body["company_name"] == "义乌市星辰电商服务有限公司"
    assert body["as_of"] == today().isoformat()
    assert h.read_model.last("provider") == (KNOWN, None)


def test_as_of_passes_through(h: Harness) -> None:
    response = h.client.get(f"/v1/providers/{KNOWN}?as_of=2025-02-01", headers=auth("reader"))
    assert response.status_code == 200
    assert response.json()["as_of"] == "2025-02-01"
    assert h.read_model.last("provider") == (KNOWN, date(2025, 2, 1))
    h.client.get("/v1/providers?as_of=2024-12-31&can_apply=true", headers=auth("reader"))
    f, *_ = h.read_model.last("providers")
    assert f.as_of == date(2024, 12, 31) and f.can_apply is True


@pytest.mark.parametrize(
    "bad", ["2025-13-01", "2025-02-30", "yesterday", "2025-2-1", "20250201", "", "2025-01-0%00"]
)
def test_bad_as_of_is_422(h: Harness, bad: str) -> None:
    for path in (f"/v1/providers/{KNOWN}?as_of={bad}", f"/v1/providers?as_of={bad}"):
        response = h.client.get(path, headers=auth("reader"))
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_as_of"
    assert not [c for c in h.read_model.calls if c[0] in ("provider", "providers")]


def test_unknown_and_invalid_provider(h: Harness) -> None:
    missing = h.client.get(f"/v1/providers/{UNKNOWN}", headers=auth("reader"))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "provider_not_found"
    assert UNKNOWN in missing.json()["error"]["message"]
    invalid = h.client.get("/v1/providers/91330100000000001X", headers=auth("reader"))
    assert invalid.status_code == 422
    assert invalid.json()["error"]["code"] == "invalid_uscc"
    page = h.client.get(f"/providers/{UNKNOWN}", headers=auth("reader"))
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]


# --- lists: filters and pagination ---------------------------------------------------------


def test_provider_filters_and_pagination_reach_the_read_model(h: Harness) -> None:
    response = h.client.get(
        "/v1/providers",
        params={
            "status": "expelled",
            "city": "温州",
            "can_apply": "false",
            "q": "云帆",
            "offset": 0,
            "limit": 10,
            "sort": "-updated_at",
        },
        headers=auth("reader"),
    )
    assert response.status_code == 200
    f, offset, limit, sort = h.read_model.last("providers")
    assert f == ProviderFilter(status="expelled", city="温州", can_apply=False, q="云帆")
    assert (offset, limit, sort) == (0, 10, "-updated_at")
    body = response.json()
    assert body["total"] == 1 and body["offset"] == 0 and body["limit"] == 10
    assert [i["uscc"] for i in body["items"]] == [OTHER]


def test_provider_defaults_and_offsets(h: Harness) -> None:
    h.client.get("/v1/providers", headers=auth("reader"))
    assert h.read_model.last("providers") == (ProviderFilter(), 0, 50, "uscc")
    body = h.client.get("/v1/providers?offset=1&limit=1", headers=auth("reader")).json()
    assert body["total"] == 2 and len(body["items"]) == 1 and body["offset"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "offset=-1",
        "status=suspended",
        "sort=secret",
        "can_apply=perhaps",
        "limit=ten",
        "offset=9223372036854775808",  # beyond 2^63 - 1: no store can skip that far
        "offset=258122263651734814720",
        "limit=9223372036854775808",
        "q=a%00b",  # U+0000: PostgreSQL text cannot hold it
        "city=%00",
    ],
)
def test_bad_list_parameters_are_422(h: Harness, query: str) -> None:
    response = h.client.get(f"/v1/providers?{query}", headers=auth("reader"))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"] and "loc" in error["details"][0]
    assert "input" not in error["details"][0]  # the input is never echoed


def test_inbox_filters_and_pagination(h: Harness) -> None:
    response = h.client.get(
        "/v1/inbox",
        params={
            "outcome": "refused",
            "code": "A1.3-5",
            "subject": KNOWN,
            "type": "provider.Applied",
            "offset": 30,
            "limit": 30,
        },
        headers=auth("reader"),
    )
    assert response.status_code == 200
    assert h.read_model.last("inbox") == (
        InboxFilter(outcome="refused", code="A1.3-5", subject=KNOWN, type="provider.Applied"),
        30,
        30,
    )
    assert response.json() == {"items": [], "total": 0, "offset": 30, "limit": 30}
    everything = h.client.get("/v1/inbox", headers=auth("reader")).json()
    assert everything["total"] == 1 and everything["items"][0]["outcome"] == "malformed"
    bad = h.client.get("/v1/inbox?outcome=duplicate", headers=auth("reader"))
    assert bad.status_code == 422


def test_stats(h: Harness) -> None:
    body = h.client.get("/v1/stats", headers=auth("reader")).json()
    assert body["by_city"] == {"义乌": 1, "温州": 1}
    assert body["outcomes"]["consumed"] == 9


# --- re-submission ----------------------------------------------------------------------------


def test_resubmit(h: Harness) -> None:
    response = h.client.post(f"/v1/inbox/{RECORD_ID}/resubmit", headers=auth("admin"))
    assert response.status_code == 202
    body = response.json()
    admin = TokenTable.parse(SPEC).lookup(TOKENS["admin"])
    assert admin is not None
    assert body == {
        "record": RECORD_ID,
        "resubmitted": True,
        "sent": 1,
        "by": admin.name,
        "resubmissions": 1,
    }
    assert h.resubmissions.calls == [([RECORD_ID], admin.name)]
    # CONTRACT.md 1.1: not again while the copy is in flight (tests/unit/web/test_resubmit.py)
    again = h.client.post(f"/v1/inbox/{RECORD_ID}/resubmit", headers=auth("admin"))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_resubmitted"
    assert len(h.resubmissions.calls) == 1


def test_resubmit_errors(h: Harness) -> None:
    admin = auth("admin")
    unknown = h.client.post(f"/v1/inbox/{record_id('nowhere')}/resubmit", headers=admin)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "record_not_found"
    not_uuid = h.client.post("/v1/inbox/42/resubmit", headers=admin)
    assert not_uuid.status_code == 422
    assert not_uuid.json()["error"]["code"] == "invalid_record_id"
    # A provider's aggregate id is no inbox record.
    from lifecycle.uscc import provider_id

    provider = h.client.post(f"/v1/inbox/{provider_id(KNOWN)}/resubmit", headers=admin)
    assert provider.status_code == 404
    h.resubmissions.fail = True
    failed = h.client.post(f"/v1/inbox/{RECORD_ID}/resubmit", headers=admin)
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "resubmit_failed"
    assert h.client.get("/v1/inbox/x/resubmit", headers=admin).status_code == 405


def test_refused_record_can_be_resubmitted(h: Harness) -> None:
    refused = str(record_id("kafka:inbound:0:9"))
    response = h.client.post(f"/v1/inbox/{refused}/resubmit", headers=auth("admin"))
    assert response.status_code == 202, response.text


# --- operations: health, readiness, metrics, docs ----------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readiness() -> None:
    h = harness()
    ready = h.client.get("/readyz", headers=auth("reader"))
    assert ready.json() == {"status": "ready", "checks": {"store": "ok"}}
    h.read_model.down = True
    down = h.client.get("/readyz", headers=auth("reader"))
    assert down.status_code == 503
    error = down.json()["error"]
    assert error["code"] == "not_ready"
    assert error["checks"]["store"].startswith("unavailable")


def test_default_readiness_checks_store_and_kafka() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        read_model = FakeReadModel()
        app = create_app(
            read_model,
            memory_inbox,
            Settings(kafka_bootstrap=f"127.0.0.1:{_closed_port()},127.0.0.1:{port}"),
        )
        client = TestClient(app)
        body = client.get("/readyz", headers=auth("reader")).json()
        assert body == {"status": "ready", "checks": {"store": "ok", "kafka": "ok"}}
    app = create_app(
        read_model,
        memory_inbox,
        Settings(kafka_bootstrap=f"127.0.0.1:{_closed_port()}"),
    )
    down = TestClient(app).get("/readyz", headers=auth("reader"))
    assert down.status_code == 503
    assert down.json()["error"]["checks"]["kafka"].startswith("unavailable")


def test_metrics(h: Harness) -> None:
    h.client.get(f"/v1/providers/{KNOWN}", headers=auth("reader"))
    response = h.client.get("/metrics", headers=auth("reader"))
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "lifecycle_test_shared_total 3.0" in text  # the process's registry
    assert 'lifecycle_view_lag_events{view="provider"} 5.0' in text
    assert 'lifecycle_view_lag_events{view="inbox"} 0.0' in text
    assert 'lifecycle_view_position{view="provider"} 95.0' in text
    assert "lifecycle_view_status_up 1.0" in text
    assert (
        'lifecycle_http_request_duration_seconds_count{method="GET",'
        'route="/v1/providers/{uscc}",status="200"} 1.0'
    ) in text
    h.read_model.status_fails = True
    assert "lifecycle_view_status_up 0.0" in h.client.get("/metrics", headers=auth("reader")).text


def test_metrics_default_registry_has_the_consumer_metrics() -> None:
    app = create_app(FakeReadModel(), memory_inbox, Settings())
    text = TestClient(app).get("/metrics", headers=auth("reader")).text
    for name in (
        "lifecycle_inbound_records_total",
        "lifecycle_inbound_batch_seconds",
        "lifecycle_consumer_lag_records",
        "lifecycle_view_lag_events",
        "lifecycle_http_request_duration_seconds",
    ):
        assert f"# TYPE {name}" in text


def test_unknown_route_is_json_404(h: Harness) -> None:
    response = h.client.get("/v1/nothing", headers=auth("reader"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_unexpected_errors_are_json_500_without_details(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    phone = "".join(("138", "1234", "5678"))

    def boom(f: InboxFilter, *, offset: int = 0, limit: int = 50) -> Page:
        raise RuntimeError("secret " + phone)

    h.read_model.inbox = boom  # type: ignore[method-assign]
    with caplog.at_level(logging.DEBUG):
        response = h.client.get("/v1/inbox", headers=auth("reader"))
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal", "message": "internal error"}}
    assert "13812345678" not in caplog.text
    assert "RuntimeError" in caplog.text


def test_openapi_docs(h: Harness) -> None:
    assert h.client.get("/docs").status_code == 200
    spec = h.client.get("/openapi.json").json()
    for path in (
        "/v1/providers",
        "/v1/providers/{uscc}",
        "/v1/stats",
        "/v1/inbox",
        "/v1/inbox/{record}/resubmit",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in spec["paths"]
    assert "/providers" not in spec["paths"]  # the dashboard is not part of the API


def test_no_personal_data_or_token_in_logs(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        h.client.get(f"/v1/providers/{KNOWN}", headers=auth("auditor"))
        h.client.get("/v1/providers?q=欧阳", headers=auth("auditor"))
        h.client.get(f"/?token={TOKENS['auditor']}", follow_redirects=False)
        h.client.get(f"/providers/{KNOWN}", headers=auth("admin"))
        h.client.post(f"/v1/inbox/{RECORD_ID}/resubmit", headers=auth("admin"))
    # What the server side logged (httpx, the test's client, logs its own URLs).
    text = "\n".join(
        f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith("httpx")
    )
    assert "/v1/providers/{uscc}" in text  # the access log names route templates
    for secret in ("欧阳娜娜", "13812345678", "欧阳", *TOKENS.values()):
        assert secret not in text


def test_api_docs_work_offline(h: Harness) -> None:
    """Swagger UI and ReDoc come from the installed package, not a CDN."""
    for page in ("/docs", "/redoc"):
        html = h.client.get(page).text
        assert "cdn." not in html and "googleapis" not in html
        for asset in re.findall(r'(?:src|href)="(/[^"]+)"', html):
            assert h.client.get(asset).status_code == 200, asset


async def test_serve_until_stopped() -> None:
    """``serve`` answers on the bind address and returns once ``stop`` is set."""
    import asyncio

    import httpx

    from web.server import bind_address, serve

    assert bind_address("[::1]:8000") == ("::1", 8000)
    assert bind_address(":9000") == ("127.0.0.1", 9000)
    with pytest.raises(ValueError, match="host:port"):
        bind_address("localhost")
    app = create_app(FakeReadModel(), memory_inbox, Settings())
    port = _closed_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, f"127.0.0.1:{port}", stop))
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            try:
                response = await client.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.05)
        assert response.json() == {"status": "ok"}
        with pytest.raises(OSError):  # the port is taken: an error, not sys.exit
            await serve(app, f"127.0.0.1:{port}", asyncio.Event())
    stop.set()
    await asyncio.wait_for(task, timeout=15)
