"""The auditors' HTTP endpoints: a provider's history and the verification of the store.

Another module includes the router in the app (``web/app.py``)::

    from web.audit_routes import audit_router
    app.include_router(audit_router(lambda: Auditing(lifecycle)))

====================================  =========  ==============================================
``GET /v1/providers/{uscc}/history``  auditor    ``?as_of=YYYY-MM-DD``; same data as
                                                 ``lifecycle audit history --json``
``GET /v1/audit/verify``              auditor    ``?uscc=``; same JSON as ``lifecycle audit
                                                 verify --json`` (200 whether ok or not)
====================================  =========  ==============================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query

from audit.auditing import Auditing, NoHashChain
from web.auth import ApiError, Auditor
from web.openapi import errors
from web.params import AsOf, UsccPath, UsccQuery, check_uscc, parse_as_of


def audit_router(auditing: Callable[[], Auditing]) -> APIRouter:
    """The audit routes over the use cases that ``auditing()`` returns."""
    router = APIRouter(tags=["audit"])

    @router.get(
        "/v1/providers/{uscc}/history",
        summary="Every inbound record of a provider",
        responses=errors(404, 422, 501),
    )
    def provider_history(
        uscc: UsccPath,
        who: Auditor,
        as_of: Annotated[AsOf, Query(description="YYYY-MM-DD (business date)")] = None,
    ) -> dict[str, Any]:
        check_uscc(uscc)
        try:
            result = auditing().history(uscc, parse_as_of(as_of, blank=False))
        except NoHashChain as exc:
            raise ApiError(501, "no_hash_chain", "this store keeps no hash chain") from exc
        if not result["entries"] and as_of is None:
            raise ApiError(404, "provider_not_found", f"no inbound record for {uscc}")
        return result

    @router.get(
        "/v1/audit/verify", summary="Check the hash chain and the seals", responses=errors(422, 501)
    )
    def audit_verify(
        who: Auditor,
        uscc: Annotated[UsccQuery, Query(description="only this provider's streams")] = None,
    ) -> dict[str, Any]:
        if uscc is not None:
            check_uscc(uscc)
        try:
            return auditing().verify(uscc)
        except NoHashChain as exc:
            raise ApiError(501, "no_hash_chain", "this store keeps no hash chain") from exc

    return router
