"""The operations dashboard: server-rendered HTML (Jinja2), charts as inline SVG.

Works with no internet: no CDN, no script, no web font; the CSS is inline in the page.
Pages: overview (``/``), provider list (``/providers``), provider (``/providers/{uscc}``),
inbox (``/inbox``). Authentication: ``/?token=…`` (on any page) checks the token, sets it
in an HttpOnly, SameSite=Strict cookie and redirects to the same page without it; a page
also accepts ``Authorization: Bearer``. Without a valid token a page answers 401 with a
small login form. Contacts are masked for readers, as in the API; admins get a resubmit
button in the inbox (a same-origin POST).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from lifecycle.contract import EVENT_TYPES
from lifecycle.privacy import mask_contact
from lifecycle.provider import STATUSES
from lifecycle.rules import BUSINESS_TZ
from projections.model import InboxFilter, ProviderFilter
from web.auth import (
    COOKIE_NAME,
    ApiError,
    Principal,
    bearer_token,
    token_table,
)
from web.chart import bars, build_chart
from web.params import form_text, parse_as_of, today
from web.services import Services

TEMPLATES: Final = Path(__file__).parent / "templates"
PAGE_SIZE: Final = 25
INBOX_PAGE_SIZE: Final = 30
COOKIE_SECONDS: Final = 8 * 3600

# --- formatting ------------------------------------------------------------------------


def cny(fen: Any) -> str:
    """Integer fen as CNY: 10000000 → ¥100,000.00."""
    if not isinstance(fen, int):
        return "—"
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}¥{yuan:,}.{cents:02d}"


def local_time(value: Any) -> str:
    """An RFC 3339 time as ``YYYY-MM-DD HH:MM`` in Asia/Shanghai (the business calendar)."""
    if not isinstance(value, str) or not value:
        return "—" if not value else str(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")


def short_type(value: Any) -> str:
    return str(value).removeprefix("provider.") if value else "—"


def can_apply_label(value: Any) -> str:
    return {True: "yes", False: "no", None: "manual review"}.get(value, "—")


_ENV: Environment | None = None


def environment() -> Environment:
    global _ENV
    if _ENV is None:
        env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["cny"] = cny
        env.filters["local_time"] = local_time
        env.filters["short_type"] = short_type
        env.filters["can_apply"] = can_apply_label
        _ENV = env
    return _ENV


def render(
    request: Request,
    template: str,
    status_code: int = 200,
    principal: Principal | None = None,
    **context: Any,
) -> HTMLResponse:
    html = (
        environment()
        .get_template(template)
        .render(request=request, principal=principal, path=request.url.path, **context)
    )
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


# --- pagination --------------------------------------------------------------------------


def pages(total: int, offset: int, size: int, base: Mapping[str, Any]) -> dict[str, Any]:
    current = offset // size + 1
    count = max(1, math.ceil(total / size))

    def link(page: int) -> str:
        query = {k: v for k, v in base.items() if v not in (None, "")}
        if page > 1:
            query["page"] = page
        return "?" + urlencode(query) if query else "?"

    return {
        "current": current,
        "count": count,
        "total": total,
        "first": offset + 1 if total else 0,
        "last": min(offset + size, total),
        "prev": link(current - 1) if current > 1 else None,
        "next": link(current + 1) if current < count else None,
    }


def _page_number(raw: str | None) -> int:
    try:
        return max(1, min(int(raw or 1), 100_000))
    except ValueError:
        return 1


def _bool(raw: str | None) -> bool | None:
    return {"true": True, "false": False}.get((raw or "").lower())


# --- authentication for pages ------------------------------------------------------------


def _without_token(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    return request.url.path + ("?" + urlencode(query) if query else "")


def login_page(request: Request, message: str | None = None) -> HTMLResponse:
    response = render(request, "login.html", 401, None, message=message, title="Sign in")
    response.headers["WWW-Authenticate"] = 'Bearer realm="provider-lifecycle"'
    if request.cookies.get(COOKIE_NAME):
        response.delete_cookie(COOKIE_NAME, path="/")
    return response


def page_principal(request: Request) -> Principal | Response:
    """The caller of a page, or the response to send instead (login, or the redirect)."""
    table = token_table(request)
    offered = request.query_params.get("token")
    if offered is not None:
        principal = table.lookup(offered.strip()) if offered.strip() else None
        if principal is None:
            return login_page(request, "That token is not valid.")
        response = RedirectResponse(_without_token(request), status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            offered.strip(),
            max_age=COOKIE_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response
    token = bearer_token(request)
    if token is None:
        return login_page(request)
    principal = table.lookup(token)
    if principal is None:
        return login_page(request, "Your token is no longer valid; sign in again.")
    return principal


def _same_origin(request: Request) -> bool:
    """A state-changing form post must come from this site (with SameSite=Strict too)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return False
    expected = f"{request.url.scheme}://{request.url.netloc}"
    return origin == expected or origin.startswith(expected + "/")


def error_page(
    request: Request, principal: Principal | None, status: int, title: str, message: str
) -> HTMLResponse:
    return render(request, "error.html", status, principal, title=title, message=message)


# --- the pages ---------------------------------------------------------------------------


def _registry_samples(services: Services, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for metric in services.shared_registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                rows.append({**sample.labels, "value": int(sample.value)})
    return sorted(rows, key=lambda r: (str(r.get("topic")), int(r.get("partition", 0) or 0)))


def dashboard_router(services: Services) -> APIRouter:
    """The HTML pages, on the app that :func:`web.app.create_app` builds."""
    router = APIRouter(include_in_schema=False)
    read_model = services.read_model

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        who = page_principal(request)
        if not isinstance(who, Principal):
            return who
        stats = read_model.stats()
        try:
            views = read_model.status()
        except Exception:
            views = []
        by_status = {s: int(stats.get("by_status", {}).get(s, 0)) for s in STATUSES}
        return render(
            request,
            "overview.html",
            principal=who,
            title="Overview",
            by_status=by_status,
            providers_total=sum(by_status.values()),
            cities=bars(stats.get("by_city", {})),
            outcomes=stats.get("outcomes", {}),
            chart=build_chart(list(stats.get("per_day", []))),
            views=views,
            consumer_lag=_registry_samples(services, "lifecycle_consumer_lag_records"),
            today=today().isoformat(),
        )

    @router.get("/providers", response_class=HTMLResponse)
    def providers(request: Request) -> Response:
        who = page_principal(request)
        if not isinstance(who, Principal):
            return who
        params = request.query_params
        status = params.get("status") or None
        if status not in (None, *STATUSES):
            status = None
        city = form_text(params.get("city"), 50)
        q = form_text(params.get("q"), 100)
        can_apply = _bool(params.get("can_apply"))
        page = _page_number(params.get("page"))
        offset = (page - 1) * PAGE_SIZE
        result = read_model.providers(
            ProviderFilter(status=status, city=city, can_apply=can_apply, q=q),
            offset=offset,
            limit=PAGE_SIZE,
            sort="company_name",
        )
        cities = sorted(read_model.stats().get("by_city", {}))
        base = {
            "q": q,
            "status": status,
            "city": city,
            "can_apply": params.get("can_apply") if can_apply is not None else None,
        }
        return render(
            request,
            "providers.html",
            principal=who,
            title="Providers",
            items=result.items,
            pager=pages(result.total, offset, PAGE_SIZE, base),
            filters=base,
            statuses=STATUSES,
            cities=cities,
        )

    @router.get("/providers/{uscc}", response_class=HTMLResponse)
    def provider(request: Request, uscc: str) -> Response:
        who = page_principal(request)
        if not isinstance(who, Principal):
            return who
        try:
            as_of = parse_as_of(request.query_params.get("as_of"))
            document = services.provider(uscc, as_of)
        except ApiError as error:
            return error_page(request, who, error.status, "Provider", error.message)
        contact = document.get("contact")
        return render(
            request,
            "provider.html",
            principal=who,
            title=document.get("company_name") or uscc,
            p=document,
            contact=contact if who.sees_personal_data else mask_contact(contact),
            as_of=as_of.isoformat() if as_of else None,
            today=today().isoformat(),
        )

    @router.get("/inbox", response_class=HTMLResponse)
    def inbox(request: Request) -> Response:
        who = page_principal(request)
        if not isinstance(who, Principal):
            return who
        params = request.query_params
        outcome = params.get("outcome") or None
        if outcome not in (None, "refused", "malformed"):
            outcome = None
        code = form_text(params.get("code"), 20)
        subject = form_text(params.get("subject"), 18)
        event_type = form_text(params.get("type"), 60)
        page = _page_number(params.get("page"))
        offset = (page - 1) * INBOX_PAGE_SIZE
        result = read_model.inbox(
            InboxFilter(outcome=outcome, code=code, subject=subject, type=event_type),
            offset=offset,
            limit=INBOX_PAGE_SIZE,
        )
        base = {"outcome": outcome, "code": code, "subject": subject, "type": event_type}
        return render(
            request,
            "inbox.html",
            principal=who,
            title="Inbox",
            items=result.items,
            pager=pages(result.total, offset, INBOX_PAGE_SIZE, base),
            filters=base,
            notice=params.get("notice"),
            notice_ok=params.get("ok") == "1",
            types=EVENT_TYPES,
        )

    @router.post("/inbox/{record}/resubmit", response_class=HTMLResponse)
    def resubmit(request: Request, record: str) -> Response:
        who = page_principal(request)
        if not isinstance(who, Principal):
            return who
        if not who.at_least("admin"):
            return error_page(request, who, 403, "Forbidden", "Only admins re-submit records.")
        if not _same_origin(request):
            return error_page(request, who, 403, "Forbidden", "Cross-site request refused.")
        try:
            result = services.resubmit_record(record, who)
            notice, ok = f"Record {result['record']} re-submitted to the inbound topic.", "1"
        except ApiError as error:
            notice, ok = error.message, "0"
        # Back to the inbox page the button was on, with its filters and the notice.
        referer = urlsplit(request.headers.get("referer") or "")
        query = [
            (k, v)
            for k, v in parse_qsl(referer.query if referer.path == "/inbox" else "")
            if k not in ("notice", "ok", "token")
        ]
        query += [("notice", notice), ("ok", ok)]
        return RedirectResponse("/inbox?" + urlencode(query), status_code=303)

    @router.get("/logout")
    def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/")
        return response

    return router
