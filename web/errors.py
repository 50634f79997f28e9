"""Errors answered as ``{"error": {"code": …, "message": …}}``, and the access log."""

from __future__ import annotations

import logging
import time
import traceback
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.auth import ApiError

log = logging.getLogger("lifecycle.api")
access_log = logging.getLogger("lifecycle.api.access")


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
                error = error_response(ApiError(500, "internal", "internal error"))
                await error(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.histogram.labels(method, template, str(status)).observe(elapsed)
            access_log.info("%s %s %d %.1fms", method, template, status, elapsed * 1000)


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers or None)


HTTP_CODES: Final = {
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


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        # Never echo the input back: it could be personal data.
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        where = ", ".join(".".join(d["loc"]) for d in details) or "request"
        return error_response(
            ApiError(422, "invalid_request", f"invalid {where}", extra={"details": details})
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(
            ApiError(exc.status_code, code, message, headers=getattr(exc, "headers", None))
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
