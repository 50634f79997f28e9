"""The read API (FastAPI) and the dashboard, over the :class:`~projections.model.ReadModel` port.

``create_app`` builds the whole HTTP side; it depends only on the port, the domain and
a few callables, so unit tests run it on an in-memory fake and ``lifecycle run`` on the
real views. Composition (in ``service/``)::

    api = create_app(
        open_read_model(settings.store, app=lifecycle),
        lambda: Inbox(lifecycle, KafkaSender(settings.kafka_bootstrap, settings.inbound_topic)),
        settings,
        extra_routers=[audit_router(lambda: Auditing(lifecycle))],
    )
    await web.server.serve(api, settings.http_bind, stop)   # until ``stop`` is set

(``service/bootstrap.py`` does exactly this.) Where things are: the JSON routes in
``web/routes.py``, the pages in ``web/dashboard.py``, the auditors' routes in
``web/audit_routes.py``, roles and tokens in ``web/auth.py``.

Endpoints (all JSON, UTF-8; errors are ``{"error": {"code": …, "message": …}}``):

====================================  =========  ==============================================
``GET  /v1/providers``                reader     filter (status, city, can_apply, q), sort, page
``GET  /v1/providers/{uscc}``         reader     ``?as_of=YYYY-MM-DD``; contact masked for readers
``GET  /v1/stats``                    reader     counts by status and city, per day, outcomes
``GET  /v1/inbox``                    reader     refused / malformed records, filtered, paged
``POST /v1/inbox/{id}/resubmit``      admin      bearer header only (never the cookie)
``GET  /healthz``                     none       the process answers
``GET  /readyz``                      reader     store, Kafka, roles are fine (else 503)
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

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from lifecycle.inbox import Inbox
from projections.model import ReadModel
from web.auth import TokenTable
from web.errors import AccessMiddleware, install_error_handlers
from web.openapi import errors
from web.operations import Check, ProjectionCollector, kafka_check
from web.routes import api_router
from web.services import Services

log = logging.getLogger("lifecycle.api")


class ApiSettings(Protocol):
    """What the API reads from :class:`service.settings.Settings`."""

    @property
    def api_tokens(self) -> str: ...

    @property
    def kafka_bootstrap(self) -> str: ...


def create_app(
    read_model: ReadModel,
    inbox: Callable[[], Inbox],
    settings: ApiSettings,
    *,
    readiness_checks: Mapping[str, Check] | None = None,
    extra_routers: Sequence[APIRouter] = (),
    registry: CollectorRegistry | None = None,
    dashboard: bool = True,
    roles: Callable[[], Mapping[str, str]] | None = None,
) -> FastAPI:
    """The read API and the dashboard.

    - ``read_model``: the projections (``projections.views.open_read_model(store)``).
    - ``inbox``: opens the inbox use cases (``lifecycle.inbox.Inbox``), only for
      re-submissions (called once, lazily, on the first one).
    - ``settings``: ``api_tokens`` (``role:token,…``; a bad item raises ``ValueError``)
      and ``kafka_bootstrap`` (for the default Kafka readiness check).
    - ``readiness_checks``: name → check for ``/readyz``; default: ``store``
      (``read_model.ping``) and ``kafka`` (a TCP connect to a bootstrap server).
    - ``extra_routers``: included as they are (e.g. the audit history, whose routes use
      ``Depends(web.auth.require_role("auditor"))``).
    - ``registry``: the process's Prometheus registry whose metrics (the consumer's
      counters, lag and batch latency from ``consumers.metrics``) ``/metrics`` shows;
      default ``prometheus_client.REGISTRY``. The API's own metrics (request latency,
      projection lag) live in a registry of this app, so several apps can coexist.
    - ``roles``: the roles of this process and their states (``{"relay": "holding",
      "project": "standby", "ingest": "running", "api": "running"}``), shown by ``/readyz``
      as ``roles``; give a readiness check per role in ``readiness_checks`` to make a
      failing role fail readiness (``service/bootstrap.py`` does both).
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
        inbox_factory=inbox,
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
        responses=errors(401, 403),
    )
    app.state.tokens = tokens
    app.state.services = services
    app.add_middleware(AccessMiddleware, histogram=histogram)
    install_error_handlers(app)

    app.include_router(api_router(services, roles=roles))
    for router in extra_routers:
        app.include_router(router)
    if dashboard:
        from web.dashboard import dashboard_router

        app.include_router(dashboard_router(services))
    return app
