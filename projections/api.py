"""The read API (FastAPI) and the dashboard, over the :class:`~projections.model.ReadModel` port.

``create_app`` builds the whole HTTP side; it depends only on the port, the domain and
a few callables, so unit tests run it on an in-memory fake and ``lifecycle run`` on the
real views. Composition (in ``service/``)::

    from service.inbox import resubmit
    api = create_app(
        open_read_model(settings.store, app=ProviderLifecycle(env=env)),
        lambda: ProviderLifecycle(env=env),
        settings,
        resubmit=lambda lifecycle, records, by: resubmit(lifecycle, settings, records, by),
    )
    await serve(api, settings.http_bind, stop)   # until ``stop`` is set

Endpoints (all JSON, UTF-8; errors are ``{"error": {"code": …, "message": …}}``):

====================================  =========  ==============================================
``GET  /v1/providers``                reader     filter (status, city, can_apply, q), sort, page
``GET  /v1/providers/{uscc}``         reader     ``?as_of=YYYY-MM-DD``; contact masked for readers
``GET  /v1/stats``                    reader     counts by status and city, per day, outcomes
``GET  /v1/inbox``                    reader     refused / malformed records, filtered, paged
``POST /v1/inbox/{id}/resubmit``      admin      bearer header only (never the cookie)
``GET  /healthz``                     none       the process answers
``GET  /readyz``                      reader     the store and Kafka are reachable (else 503)
``GET  /metrics``                     reader     Prometheus text (scrape with a bearer token)
``GET  /docs``, ``/redoc``            none       OpenAPI pages, assets served locally (no CDN)
``GET  /openapi.json``                none       the OpenAPI document (no data)
``GET  /``, ``/providers``, …         reader     the dashboard (cookie or bearer; login page)
====================================  =========  ==============================================

Nothing personal is logged: the access log (logger ``lifecycle.api.access``) writes the
method, the route template, the status and the latency, never a query string (it may hold
a token), a body or a contact; an unexpected exception is answered (500 ``internal``) and
logged with its frames only, never its message. :func:`serve` runs uvicorn with its
access log off (it would log query strings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final, Literal, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lifecycle.application import ProviderLifecycle
from lifecycle.records import InboundRecord
from lifecycle.rules import BUSINESS_TZ
from lifecycle.uscc import uscc_error
from projections.auth import (
    AdminByHeader,
    ApiError,
    Principal,
    Reader,
    TokenTable,
    with_contact_for,
)
from projections.model import InboxFilter, Page, ProviderFilter, ReadModel, SortKey

log = logging.getLogger("lifecycle.api")
access_log = logging.getLogger("lifecycle.api.access")

STATUSES: Final = ("applied", "admitted", "active", "exited", "expelled", "declined")
Status = Literal["applied", "admitted", "active", "exited", "expelled", "declined"]
InboxOutcome = Literal["refused", "malformed"]
MAX_LIMIT: Final = 200


class ApiSettings(Protocol):
    """What the API reads from :class:`service.settings.Settings`."""

    @property
    def api_tokens(self) -> str: ...

    @property
    def kafka_bootstrap(self) -> str: ...


#: Re-submits inbox records (produce the original bytes again, note it in the store):
#: ``service.inbox.resubmit`` with the settings bound. Returns how many were sent.
Resubmit = Callable[[ProviderLifecycle, Sequence[InboundRecord], str], int]
#: A readiness check: returns when fine, raises (any exception) when not.
Check = Callable[[], None]


# --- services shared by the API and the dashboard ---------------------------------------


def today() -> date:
    """Today's calendar date in Asia/Shanghai (the business calendar)."""
    return datetime.now(UTC).astimezone(BUSINESS_TZ).date()


def parse_as_of(value: str | None) -> date | None:
    if value is None or value == "":
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "invalid_as_of", "as_of must be a calendar date, YYYY-MM-DD") from None


def check_uscc(uscc: str) -> None:
    problem = uscc_error(uscc)
    if problem is not None:
        raise ApiError(422, "invalid_uscc", f"not a valid USCC: {problem}")


def kafka_check(bootstrap: str, timeout: float = 1.0) -> Check:
    """Kafka is reachable when a TCP connection to one bootstrap server opens."""

    def check() -> None:
        errors: list[str] = []
        for server in bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
                    return
            except (OSError, ValueError) as exc:
                errors.append(f"{server.strip()}: {exc.__class__.__name__}")
        raise ConnectionError("no Kafka bootstrap server reachable (" + "; ".join(errors) + ")")

    return check


class ProjectionCollector(Collector):
    """Projection positions and lag from ``ReadModel.status()``, read at scrape time."""

    def __init__(self, read_model: ReadModel) -> None:
        self.read_model = read_model

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "lifecycle_view_status_up", "1 when the views' positions could be read from the store"
        )
        try:
            views = self.read_model.status()
        except Exception as exc:  # the store may be down; /metrics must still answer
            log.warning("projection status unavailable: %s", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        lag = GaugeMetricFamily(
            "lifecycle_view_lag_events",
            "Notifications of the store not yet applied to the view",
            labels=["view"],
        )
        position = GaugeMetricFamily(
            "lifecycle_view_position", "Last notification id applied to the view", labels=["view"]
        )
        head = GaugeMetricFamily(
            "lifecycle_view_store_head", "The store's last notification id", labels=["view"]
        )
        for view in views:
            lag.add_metric([view.name], view.lag)
            position.add_metric([view.name], view.position)
            head.add_metric([view.name], view.head)
        yield lag
        yield position
        yield head


@dataclass
class Services:
    """What the routes use; kept on ``app.state.services``."""

    read_model: ReadModel
    lifecycle_factory: Callable[[], ProviderLifecycle]
    resubmit: Resubmit
    checks: Mapping[str, Check]
    shared_registry: CollectorRegistry
    registry: CollectorRegistry
    request_seconds: Histogram
    _lifecycle: ProviderLifecycle | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def lifecycle(self) -> ProviderLifecycle:
        if self._lifecycle is None:
            self._lifecycle = self.lifecycle_factory()
        return self._lifecycle

    def provider(self, uscc: str, as_of: date | None) -> dict[str, Any]:
        check_uscc(uscc)
        document = self.read_model.provider(uscc, as_of)
        if document is None:
            when = f" as of {as_of.isoformat()}" if as_of else ""
            raise ApiError(404, "provider_not_found", f"no provider {uscc}{when}")
        return document

    def resubmit_record(self, record: str, by: Principal) -> dict[str, Any]:
        """Produce a refused or malformed record again (admin only; checked by the caller)."""
        try:
            record_id = UUID(record)
        except ValueError:
            raise ApiError(422, "invalid_record_id", "an inbox record id is a UUID") from None
        with self._lock:  # one re-submission at a time: the record's version must not race
            lifecycle = self.lifecycle()
            try:
                found: Any = lifecycle.record(record_id)
            except AggregateNotFoundError:
                found = None
            except Exception as exc:
                raise ApiError(503, "store_unavailable", "the store cannot be read") from exc
            if not isinstance(found, InboundRecord):
                raise ApiError(404, "record_not_found", f"no inbox record {record_id}")
            if found.outcome not in ("refused", "malformed"):
                raise ApiError(
                    409, "not_resubmittable", f"a {found.outcome} record cannot be re-submitted"
                )
            try:
                sent = self.resubmit(lifecycle, [found], by.name)
            except Exception as exc:
                log.warning("re-submission failed: %s", exc.__class__.__name__)
                # A failed save leaves the aggregate half-changed in memory: start afresh.
                self._lifecycle = None
                raise ApiError(
                    503, "resubmit_failed", "the record could not be re-submitted (Kafka or store)"
                ) from exc
        log.info("inbox record %s re-submitted by %s", record_id, by.name)
        return {
            "record": str(record_id),
            "resubmitted": True,
            "sent": sent,
            "by": by.name,
            "resubmissions": found.resubmissions,
        }

    def readiness(self) -> tuple[bool, dict[str, str]]:
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                check()
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"unavailable: {exc}"[:300]
        return all(v == "ok" for v in results.values()), results

    def metrics_text(self) -> bytes:
        shared = list(self.shared_registry.collect())
        taken = {metric.name for metric in shared}
        # The app's own families, unless the process registry already has one so named.
        own = [m for m in self.registry.collect() if m.name not in taken]
        return generate_latest(_Families(shared + own))


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


# --- documentation models (OpenAPI only: responses are the read model's dicts) -------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Doc):
    code: str = Field(examples=["provider_not_found"])
    message: str


class ErrorBody(_Doc):
    error: ErrorDetail


class EligibilityDoc(_Doc):
    can_apply: bool | None
    from_: date | None = Field(None, alias="from")
    permanent: bool
    clause: str | None
    requires: str | None
    reason: str


class RequirementDoc(_Doc):
    clause: str
    reason: str
    who: Literal["provider", "platform"]
    by: date | None


class ContactDoc(_Doc):
    name: str = Field(examples=["张*"])
    phone: str = Field(examples=["138****0000"])


class ProviderDoc(_Doc):
    uscc: str
    company_name: str | None
    city: str | None
    status: str | None
    deposit_balance_fen: int
    deposit_shortfall_fen: int | None = None
    violations: int
    violation_list: list[dict[str, Any]] = []
    eligibility: EligibilityDoc
    requirements: list[RequirementDoc] = []
    unmet: list[dict[str, Any]] = []
    contact: ContactDoc | None = None
    as_of: date


class ProviderPageDoc(_Doc):
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


class InboxItemDoc(_Doc):
    record: str
    outcome: str
    position: str
    id: str | None
    subject: str | None
    type: str | None
    codes: list[str]
    reason: str | None
    recorded_at: str
    resubmissions: int


class InboxPageDoc(_Doc):
    items: list[InboxItemDoc]
    total: int
    offset: int
    limit: int


class ResubmittedDoc(_Doc):
    record: str
    resubmitted: bool
    sent: int
    by: str
    resubmissions: int


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


# --- the app ------------------------------------------------------------------------------


class AccessMiddleware:
    """Times every request (Prometheus histogram) and writes the access log, without PII."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_status(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            # Answered here, not re-raised: the server would log the exception's message,
            # which could carry data from the request. Only the frames are logged.
            route = getattr(scope.get("route"), "path", "unmatched")
            log.error(
                "unhandled %s on %s %s\n%s",
                exc.__class__.__name__,
                scope.get("method", ""),
                route,
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
            if not response_started:
                error = _error_response(ApiError(500, "internal", "internal error"))
                await error(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.histogram.labels(method, template, str(status)).observe(elapsed)
            access_log.info("%s %s %d %.1fms", method, template, status, elapsed * 1000)


def _page(page: Page) -> dict[str, Any]:
    return {"items": page.items, "total": page.total, "offset": page.offset, "limit": page.limit}


def create_app(
    read_model: ReadModel,
    lifecycle_factory: Callable[[], ProviderLifecycle],
    settings: ApiSettings,
    *,
    resubmit: Resubmit,
    readiness_checks: Mapping[str, Check] | None = None,
    extra_routers: Sequence[APIRouter] = (),
    registry: CollectorRegistry | None = None,
    dashboard: bool = True,
) -> FastAPI:
    """The read API and the dashboard.

    - ``read_model``: the projections (``projections.views.open_read_model(store)``).
    - ``lifecycle_factory``: opens the application service, only for re-submissions
      (called once, lazily, on the first one).
    - ``settings``: ``api_tokens`` (``role:token,…``; a bad item raises ``ValueError``)
      and ``kafka_bootstrap`` (for the default Kafka readiness check).
    - ``resubmit``: ``service.inbox.resubmit`` with the settings bound.
    - ``readiness_checks``: name → check for ``/readyz``; default: ``store``
      (``read_model.ping``) and ``kafka`` (a TCP connect to a bootstrap server).
    - ``extra_routers``: included as they are (e.g. the audit history, whose routes use
      ``Depends(projections.auth.require_role("auditor"))``).
    - ``registry``: the process's Prometheus registry whose metrics (the consumer's
      counters, lag and batch latency from ``consumers.metrics``) ``/metrics`` shows;
      default ``prometheus_client.REGISTRY``. The API's own metrics (request latency,
      projection lag) live in a registry of this app, so several apps can coexist.
    """
    tokens = TokenTable.parse(settings.api_tokens)
    if not len(tokens):
        log.warning("LIFECYCLE_API_TOKENS is empty: every endpoint but /healthz answers 401")
    own = CollectorRegistry(auto_describe=True)
    histogram = Histogram(
        "lifecycle_http_request_duration_seconds",
        "Time to answer an HTTP request of the read API and dashboard",
        ["method", "route", "status"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        registry=own,
    )
    own.register(ProjectionCollector(read_model))
    checks = (
        dict(readiness_checks)
        if readiness_checks is not None
        else {"store": read_model.ping, "kafka": kafka_check(settings.kafka_bootstrap)}
    )
    services = Services(
        read_model=read_model,
        lifecycle_factory=lifecycle_factory,
        resubmit=resubmit,
        checks=checks,
        shared_registry=registry if registry is not None else REGISTRY,
        registry=own,
        request_seconds=histogram,
    )

    # The OpenAPI pages (/docs, /redoc) with Swagger UI and ReDoc served from the package,
    # not a CDN: they work with no internet, like the dashboard.
    app = FastAPIOffline(
        title="Provider lifecycle read API",
        description=(
            "Projections of the Taobao Live regional industry service providers' lifecycle: "
            "status, deposit, violations, re-admission eligibility (RULEBOOK.md clauses), "
            "requirements, the inbox of refused and malformed records. Authenticate with "
            "`Authorization: Bearer <token>` (roles reader < auditor < admin)."
        ),
        version="1",
        responses=_errors(401, 403),
    )
    app.state.tokens = tokens
    app.state.services = services
    app.add_middleware(AccessMiddleware, histogram=histogram)
    _install_error_handlers(app)

    api = APIRouter()

    @api.get(
        "/v1/providers",
        tags=["providers"],
        summary="List providers (filter, sort, paginate)",
        responses={200: {"model": ProviderPageDoc}, **_errors(422)},
    )
    def list_providers(
        who: Reader,
        status: Annotated[Status | None, Query(description="current status")] = None,
        city: Annotated[str | None, Query(max_length=50, description="service city")] = None,
        can_apply: Annotated[
            bool | None, Query(description="may apply (again) at as_of (A1.3)")
        ] = None,
        q: Annotated[
            str | None, Query(max_length=100, description="part of the name or USCC")
        ] = None,
        as_of: Annotated[
            str | None, Query(description="YYYY-MM-DD for can_apply; default today")
        ] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
        sort: SortKey = "uscc",
    ) -> JSONResponse:
        day = parse_as_of(as_of)
        page = read_model.providers(
            ProviderFilter(status=status, city=city, can_apply=can_apply, q=q, as_of=day),
            offset=offset,
            limit=limit,
            sort=sort,
        )
        body = _page(page)
        body["items"] = [with_contact_for(who, item) for item in page.items]
        return JSONResponse(body)

    @api.get(
        "/v1/providers/{uscc}",
        tags=["providers"],
        summary="One provider, now or as of a date",
        responses={200: {"model": ProviderDoc}, **_errors(404, 422)},
    )
    def get_provider(
        who: Reader,
        uscc: Annotated[str, Path(description="Unified Social Credit Code (18 characters)")],
        as_of: Annotated[
            str | None,
            Query(description="YYYY-MM-DD: every event of business date ≤ as_of applied"),
        ] = None,
    ) -> JSONResponse:
        day = parse_as_of(as_of)
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
        responses={200: {"model": InboxPageDoc}, **_errors(422)},
    )
    def list_inbox(
        who: Reader,
        outcome: InboxOutcome | None = None,
        code: Annotated[str | None, Query(max_length=20, description="e.g. A1.3-5")] = None,
        subject: Annotated[str | None, Query(max_length=18, description="a USCC")] = None,
        type: Annotated[
            str | None, Query(max_length=60, description="e.g. provider.Applied")
        ] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    ) -> JSONResponse:
        page = read_model.inbox(
            InboxFilter(outcome=outcome, code=code, subject=subject, type=type),
            offset=offset,
            limit=limit,
        )
        return JSONResponse(_page(page))

    @api.post(
        "/v1/inbox/{record}/resubmit",
        tags=["inbox"],
        summary="Produce a refused or malformed record again (admin)",
        status_code=202,
        responses={202: {"model": ResubmittedDoc}, **_errors(404, 409, 422, 503)},
    )
    def resubmit_record(
        who: AdminByHeader,
        record: Annotated[str, Path(description="the inbox record's id (a UUID)")],
    ) -> JSONResponse:
        return JSONResponse(services.resubmit_record(record, who), status_code=202)

    @api.get("/healthz", tags=["operations"], summary="Liveness (no authentication)")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: the store and Kafka are reachable",
        responses=_errors(503),
    )
    def readyz(who: Reader) -> JSONResponse:
        ready, results = services.readiness()
        if not ready:
            failing = ", ".join(k for k, v in results.items() if v != "ok")
            error = ApiError(503, "not_ready", f"unavailable: {failing}", extra={"checks": results})
            return JSONResponse(error.body(), status_code=503)
        return JSONResponse({"status": "ready", "checks": results})

    @api.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    def metrics(who: Reader) -> Response:
        return Response(services.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(api)
    for router in extra_routers:
        app.include_router(router)
    if dashboard:
        from projections.dashboard import dashboard_router

        app.include_router(dashboard_router(services))
    return app


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers or None)


_HTTP_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        # Never echo the input back: it could be personal data.
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        where = ", ".join(".".join(d["loc"]) for d in details) or "request"
        return _error_response(
            ApiError(422, "invalid_request", f"invalid {where}", extra={"details": details})
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return _error_response(
            ApiError(exc.status_code, code, message, headers=getattr(exc, "headers", None))
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def bind_address(bind: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8000`` for IPv6) → (host, port)."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"LIFECYCLE_HTTP_BIND must be host:port, not {bind!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(app: FastAPI, bind: str, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``bind`` until ``stop`` is set (for ``lifecycle run``).

    The caller owns SIGTERM/SIGINT (it sets ``stop``); uvicorn's own signal handling is
    off. The socket is bound here first, so a taken port raises ``OSError`` (uvicorn would
    call ``sys.exit``). In-flight requests are finished before this returns.
    """
    import uvicorn

    host, port = bind_address(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    config = uvicorn.Config(
        app, access_log=False, log_level="warning", lifespan="off", timeout_graceful_shutdown=10
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    log.info("read API and dashboard on http://%s:%d/", host, port)
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="http")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        try:
            await serving
        finally:
            sock.close()
