"""The read API's routes (JSON): providers, stats, the inbox, operations."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from lifecycle.provider import Status
from projections.model import InboxFilter, Page, ProviderFilter, SortKey
from web.auth import AdminByHeader, ApiError, Reader, with_contact_for
from web.openapi import (
    InboxPageDoc,
    ProviderDoc,
    ProviderPageDoc,
    ResubmittedDoc,
    errors,
)
from web.params import (
    TEXT,
    AsOf,
    InboxOutcome,
    Limit,
    Offset,
    RecordIdPath,
    UsccPath,
    parse_as_of,
    today,
)
from web.services import Services


def page_body(page: Page) -> dict[str, Any]:
    return {"items": page.items, "total": page.total, "offset": page.offset, "limit": page.limit}


def api_router(
    services: Services, *, roles: Callable[[], Mapping[str, str]] | None = None
) -> APIRouter:
    """The JSON endpoints over ``services`` (the read model, the inbox, the checks);
    ``roles``: this process's roles and their states, for ``/readyz``."""
    read_model = services.read_model
    api = APIRouter()

    @api.get(
        "/v1/providers",
        tags=["providers"],
        summary="List providers (filter, sort, paginate)",
        responses={200: {"model": ProviderPageDoc}, **errors(422)},
    )
    def list_providers(
        who: Reader,
        status: Annotated[Status | None, Query(description="current status")] = None,
        city: Annotated[
            str | None, Query(max_length=50, pattern=TEXT, description="service city")
        ] = None,
        can_apply: Annotated[
            bool | None, Query(description="may apply (again) at as_of (A1.3)")
        ] = None,
        q: Annotated[
            str | None, Query(max_length=100, pattern=TEXT, description="part of the name or USCC")
        ] = None,
        as_of: Annotated[AsOf, Query(description="YYYY-MM-DD for can_apply; default today")] = None,
        offset: Offset = 0,
        limit: Limit = 50,
        sort: SortKey = "uscc",
    ) -> JSONResponse:
        day = parse_as_of(as_of, blank=False)
        page = read_model.providers(
            ProviderFilter(status=status, city=city, can_apply=can_apply, q=q, as_of=day),
            offset=offset,
            limit=limit,
            sort=sort,
        )
        body = page_body(page)
        body["items"] = [with_contact_for(who, item) for item in page.items]
        return JSONResponse(body)

    @api.get(
        "/v1/providers/{uscc}",
        tags=["providers"],
        summary="One provider, now or as of a date",
        responses={200: {"model": ProviderDoc}, **errors(404, 422)},
    )
    def get_provider(
        who: Reader,
        uscc: UsccPath,
        as_of: Annotated[
            AsOf, Query(description="YYYY-MM-DD: every event of business date ≤ as_of applied")
        ] = None,
    ) -> JSONResponse:
        day = parse_as_of(as_of, blank=False)
        document = services.provider(uscc, day)
        body = {k: v for k, v in document.items() if k != "timeline"}
        if day is not None or "as_of" not in body:
            body["as_of"] = (day or today()).isoformat()
        return JSONResponse(with_contact_for(who, body))

    @api.get("/v1/stats", tags=["stats"], summary="Counts by status and city, events per day")
    def get_stats(who: Reader) -> JSONResponse:
        return JSONResponse(read_model.stats())

    @api.get(
        "/v1/inbox",
        tags=["inbox"],
        summary="Refused and malformed records, newest first",
        responses={200: {"model": InboxPageDoc}, **errors(422)},
    )
    def list_inbox(
        who: Reader,
        outcome: InboxOutcome | None = None,
        code: Annotated[
            str | None, Query(max_length=20, pattern=TEXT, description="e.g. A1.3-5")
        ] = None,
        subject: Annotated[
            str | None, Query(max_length=18, pattern=TEXT, description="a USCC")
        ] = None,
        type: Annotated[
            str | None, Query(max_length=60, pattern=TEXT, description="e.g. provider.Applied")
        ] = None,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> JSONResponse:
        page = read_model.inbox(
            InboxFilter(outcome=outcome, code=code, subject=subject, type=type),
            offset=offset,
            limit=limit,
        )
        return JSONResponse(page_body(page))

    @api.post(
        "/v1/inbox/{record}/resubmit",
        tags=["inbox"],
        summary="Produce a refused or malformed record again (admin)",
        status_code=202,
        responses={202: {"model": ResubmittedDoc}, **errors(404, 409, 422, 503)},
    )
    def resubmit_record(
        who: AdminByHeader,
        record: RecordIdPath,
    ) -> JSONResponse:
        return JSONResponse(services.resubmit_record(record, who), status_code=202)

    @api.get("/healthz", tags=["operations"], summary="Liveness (no authentication)")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: the store and Kafka are reachable, the roles up (and their leases)",
        responses=errors(503),
    )
    def readyz(who: Reader) -> JSONResponse:
        ready, results = services.readiness()
        extra: dict[str, Any] = {} if roles is None else {"roles": dict(roles())}
        if not ready:
            failing = ", ".join(k for k, v in results.items() if v != "ok")
            error = ApiError(
                503, "not_ready", f"unavailable: {failing}", extra={"checks": results, **extra}
            )
            return JSONResponse(error.body(), status_code=503)
        return JSONResponse({"status": "ready", "checks": results, **extra})

    @api.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    def metrics(who: Reader) -> Response:
        return Response(services.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    return api
