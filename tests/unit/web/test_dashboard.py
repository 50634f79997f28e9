"""The dashboard's pages over the fake read model: sign-in, filters, provider, inbox, chart."""

from __future__ import annotations

from projections.model import InboxFilter, ProviderFilter
from tests.unit.web.fakes import KNOWN, RECORD_ID, TOKENS, Harness, auth
from web.chart import build_chart
from web.dashboard import cny, local_time, pages


def test_token_in_the_url_sets_an_http_only_cookie_and_redirects(h: Harness) -> None:
    response = h.client.get(
        f"/providers?status=active&token={TOKENS['reader']}", follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/providers?status=active"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"lifecycle_token={TOKENS['reader']};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    page = h.client.get("/providers?status=active")  # the client keeps the cookie
    assert page.status_code == 200
    assert 'data-role="reader"' in page.text


def test_bad_token_shows_the_login_page(h: Harness) -> None:
    response = h.client.get("/?token=wrong", follow_redirects=False)
    assert response.status_code == 401
    assert "That token is not valid" in response.text
    assert "set-cookie" not in response.headers
    h.client.cookies.set("lifecycle_token", "stale")
    stale = h.client.get("/inbox")
    assert stale.status_code == 401 and "no longer valid" in stale.text
    assert 'lifecycle_token=""' in stale.headers["set-cookie"]  # cleared


def test_logout_clears_the_cookie(h: Harness) -> None:
    h.client.get(f"/?token={TOKENS['admin']}")
    response = h.client.get("/logout", follow_redirects=False)
    assert response.status_code == 303
    assert 'lifecycle_token=""' in response.headers["set-cookie"]


def test_overview(h: Harness) -> None:
    page = h.client.get("/", headers=auth("reader"))
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    text = page.text
    assert "<svg" in text and "polyline" in text  # the chart, server-rendered
    assert "义乌" in text and "温州" in text  # city counts, in Chinese
    assert 'data-status="expelled">1<' in text
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert ">provider<" in text  # projection lag table
    assert "no consumer running in this process" in text


def test_provider_list_passes_filters_and_pages(h: Harness) -> None:
    page = h.client.get(
        "/providers",
        params={"q": "云帆", "status": "expelled", "city": "温州", "can_apply": "false", "page": 2},
        headers=auth("reader"),
    )
    assert page.status_code == 200
    f, offset, limit, _sort = h.read_model.last("providers")
    assert f == ProviderFilter(status="expelled", city="温州", can_apply=False, q="云帆")
    assert (offset, limit) == (25, 25)
    nonsense = h.client.get("/providers?status=bogus&page=x", headers=auth("reader"))
    assert nonsense.status_code == 200
    assert h.read_model.last("providers")[0] == ProviderFilter()
    everything = h.client.get("/providers", headers=auth("reader")).text
    assert "义乌市星辰电商服务有限公司" in everything and f'href="/providers/{KNOWN}"' in everything


def test_provider_page(h: Harness) -> None:
    page = h.client.get(f"/providers/{KNOWN}", headers=auth("auditor"))
    assert page.status_code == 200
    text = page.text
    assert "义乌市星辰电商服务有限公司" in text
    assert 'id="timeline"' in text and "Applied" in text
    assert "a tenure is open (status applied)" in text  # the refused event's reason
    assert '<span class="code">STATE</span>' in text
    assert "¥100,000.00" in text
    assert "欧阳娜娜" in text  # auditors see the contact
    as_of = h.client.get(f"/providers/{KNOWN}?as_of=2025-02-01", headers=auth("reader"))
    assert "as of <strong>2025-02-01</strong>" in as_of.text
    assert h.read_model.last("provider")[1].isoformat() == "2025-02-01"
    bad = h.client.get(f"/providers/{KNOWN}?as_of=soon", headers=auth("reader"))
    assert bad.status_code == 422 and "YYYY-MM-DD" in bad.text


def test_inbox_page_and_admin_button(h: Harness) -> None:
    reader = h.client.get("/inbox?outcome=malformed&code=A1.3-5", headers=auth("reader"))
    assert reader.status_code == 200
    assert "Resubmit</button>" not in reader.text
    assert h.read_model.last("inbox") == (
        InboxFilter(outcome="malformed", code="A1.3-5"),
        0,
        30,
    )
    admin = h.client.get("/inbox", headers=auth("admin"))
    assert f'action="/inbox/{RECORD_ID}/resubmit"' in admin.text


def test_dashboard_resubmit(h: Harness) -> None:
    h.client.get(f"/?token={TOKENS['admin']}")
    origin = {"origin": "http://testserver", "referer": "http://testserver/inbox?outcome=malformed"}
    response = h.client.post(f"/inbox/{RECORD_ID}/resubmit", headers=origin, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/inbox?outcome=malformed&notice=Record+")
    assert len(h.resubmissions.calls) == 1
    shown = h.client.get(response.headers["location"])
    assert 'id="notice"' in shown.text and "re-submitted" in shown.text
    # Another site's form cannot post it, even with the cookie.
    cross = h.client.post(f"/inbox/{RECORD_ID}/resubmit", headers={"origin": "http://evil.example"})
    assert cross.status_code == 403
    assert len(h.resubmissions.calls) == 1


def test_dashboard_resubmit_needs_admin(h: Harness) -> None:
    response = h.client.post(
        f"/inbox/{RECORD_ID}/resubmit",
        headers={**auth("auditor"), "origin": "http://testserver"},
    )
    assert response.status_code == 403
    assert h.resubmissions.calls == []
    assert h.client.post(f"/inbox/{RECORD_ID}/resubmit").status_code == 401


def test_chart_buckets_by_month_over_long_spans() -> None:
    chart = build_chart(
        [
            {"day": "2024-01-05", "admitted": 2, "exited": 0, "expelled": 0},
            {"day": "2024-01-20", "admitted": 1, "exited": 1, "expelled": 0},
            {"day": "2024-06-02", "admitted": 0, "exited": 0, "expelled": 3},
        ]
    )
    assert chart is not None and chart.bucket == "month"
    assert [label for _, label in chart.x_labels][:2] == ["2024-01", "2024-02"]
    assert chart.total == {"admitted": 3, "exited": 1, "expelled": 3}
    admitted = chart.series[0]
    assert len(admitted["dots"]) == 6  # Jan…Jun, empty months included
    assert admitted["dots"][0]["title"] == "2024-01: 3 admissions"
    daily = build_chart([{"day": "2024-01-05", "admitted": 1, "exited": 0, "expelled": 0}])
    assert daily is not None and daily.bucket == "day"
    assert build_chart([]) is None


def test_formatting() -> None:
    assert cny(10_000_000) == "¥100,000.00"
    assert cny(-5) == "-¥0.05"
    assert cny(None) == "—"
    assert local_time("2025-01-02T02:00:00Z") == "2025-01-02 10:00"
    assert local_time("garbage") == "garbage"
    pager = pages(60, 25, 25, {"q": "星辰", "status": None})
    assert pager["current"] == 2 and pager["count"] == 3
    assert pager["prev"] == "?q=%E6%98%9F%E8%BE%B0"
    assert pager["next"] == "?q=%E6%98%9F%E8%BE%B0&page=3"


def test_dashboard_text_filters_drop_nul(h: Harness) -> None:
    # PostgreSQL text cannot hold U+0000: a form's filter never takes one to the read model.
    page = h.client.get("/providers?q=%E4%BA%91%00%E5%B8%86&city=%00", headers=auth("reader"))
    assert page.status_code == 200
    assert h.read_model.last("providers")[0] == ProviderFilter(q="云帆")
    inbox = h.client.get("/inbox?code=A1.3-5%00&subject=%00&type=%00x", headers=auth("reader"))
    assert inbox.status_code == 200
    assert h.read_model.last("inbox")[0] == InboxFilter(code="A1.3-5", type="x")
