"""The auditors' HTTP endpoints: a provider's history and the verification of the store.

Another module includes the router in the app (``projections/api.py``)::

    from projections.audit_api import audit_router
    app.include_router(audit_router(services.lifecycle))

====================================  =========  ==============================================
``GET /v1/providers/{uscc}/history``  auditor    ``?as_of=YYYY-MM-DD``; same data as
                                                 ``lifecycle audit history --json``
``GET /v1/audit/verify``              auditor    ``?uscc=``; same JSON as ``lifecycle audit
                                                 verify --json`` (200 whether ok or not)
====================================  =========  ==============================================
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from lifecycle.application import ProviderLifecycle
from lifecycle.uscc import uscc_error
from projections.audit import verify
from projections.audit_history import history
from projections.audit_port import AuditStore
from projections.auth import ApiError, Principal, require_role

AuditorRole = Annotated[Principal, Depends(require_role("auditor"))]


def _store(lifecycle: ProviderLifecycle) -> AuditStore:
    recorder = lifecycle.recorder
    if not isinstance(recorder, AuditStore):
        raise ApiError(501, "no_hash_chain", "this store keeps no hash chain")
    return recorder


def _uscc(value: str) -> str:
    problem = uscc_error(value)
    if problem:
        raise ApiError(422, "invalid_uscc", f"not a valid USCC: {problem}")
    return value


def _as_of(value: str | None) -> date | None:
    if not value:
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "invalid_as_of", "as_of must be a calendar date, YYYY-MM-DD") from None


def audit_router(lifecycle: Callable[[], ProviderLifecycle]) -> APIRouter:
    """The audit routes over the application service that ``lifecycle()`` returns."""
    router = APIRouter(tags=["audit"])

    @router.get("/v1/providers/{uscc}/history", summary="Every inbound record of a provider")
    def provider_history(
        uscc: str,
        who: AuditorRole,
        as_of: Annotated[str | None, Query(description="YYYY-MM-DD (business date)")] = None,
    ) -> dict[str, Any]:
        app = lifecycle()
        result = history(app, _store(app), _uscc(uscc), _as_of(as_of))
        if not result["entries"] and as_of is None:
            raise ApiError(404, "provider_not_found", f"no inbound record for {uscc}")
        return result

    @router.get("/v1/audit/verify", summary="Check the hash chain and the seals")
    def audit_verify(
        who: AuditorRole,
        uscc: Annotated[str | None, Query(description="only this provider's streams")] = None,
    ) -> dict[str, Any]:
        app = lifecycle()
        return verify(_store(app), _uscc(uscc) if uscc else None).as_dict()

    return router
