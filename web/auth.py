"""Access control of the read API and the dashboard: bearer tokens, roles, masking.

Tokens come from ``LIFECYCLE_API_TOKENS`` as ``role:token,role:token,…``. The roles are
ordered ``reader`` < ``auditor`` < ``admin``: a higher role may do everything a lower one
may. Auditors (and admins) see personal data (the contact's name and phone); readers see
it masked (张*, 138****0000). Only admins re-submit inbox records.

Use in a route (``Reader``, ``Auditor``, ``Admin`` are ready-made dependencies)::

    from web.auth import Auditor

    @router.get("/v1/providers/{uscc}/history")
    def history(uscc: str, who: Auditor) -> ...   # who: Principal, at least an auditor

The token table lives on ``app.state.tokens`` (set by :func:`web.app.create_app`),
so a router from another module only needs :func:`require_role`. A request carries its
token as ``Authorization: Bearer <token>`` or, for the browser, in the HttpOnly cookie
``lifecycle_token`` that ``/?token=…`` sets. Tokens and personal data are never logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lifecycle.privacy import ADMIN, AUDITOR, READER, mask_contact

ROLES: Final = (READER, AUDITOR, ADMIN)
RANK: Final[Mapping[str, int]] = {role: rank for rank, role in enumerate(ROLES)}
COOKIE_NAME: Final = "lifecycle_token"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the role of the token and a stable, non-secret name for it."""

    role: str
    name: str

    def at_least(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]

    @property
    def sees_personal_data(self) -> bool:
        return self.at_least(AUDITOR)


class ApiError(Exception):
    """An error answered as ``{"error": {"code": …, "message": …}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenTable:
    """The configured tokens, kept only as SHA-256 digests."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        """``tokens``: token → role."""
        self._by_digest: dict[bytes, Principal] = {}
        for token, role in tokens.items():
            if role not in RANK:
                raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
            if not token:
                raise ValueError(f"empty token for role {role!r}")
            digest = _digest(token)
            # The name identifies the token in the store (e.g. who re-submitted) without
            # revealing it: the role and the first 8 hex digits of the token's SHA-256.
            self._by_digest[digest] = Principal(role, f"{role}:{digest.hex()[:8]}")

    @classmethod
    def parse(cls, spec: str) -> TokenTable:
        """``role:token,role:token`` (blanks around items are ignored; a token may hold ``:``)."""
        tokens: dict[str, str] = {}
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            role, sep, token = item.partition(":")
            role, token = role.strip(), token.strip()
            if not sep or not token:
                raise ValueError("LIFECYCLE_API_TOKENS items must look like role:token")
            if token in tokens and tokens[token] != role:
                raise ValueError("LIFECYCLE_API_TOKENS gives one token two roles")
            tokens[token] = role
        return cls(tokens)

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, token: str) -> Principal | None:
        # Only digests are compared, so the lookup's timing says nothing about the tokens.
        return self._by_digest.get(_digest(token))


EMPTY: Final = TokenTable({})


def token_table(request: Request) -> TokenTable:
    table = getattr(request.app.state, "tokens", None)
    return table if isinstance(table, TokenTable) else EMPTY


def bearer_token(request: Request, *, allow_cookie: bool = True) -> str | None:
    """The token of a request: the ``Authorization: Bearer`` header, else the cookie."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    if allow_cookie:
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie:
            return cookie
    return None


def principal_of(request: Request, *, allow_cookie: bool = True) -> Principal | None:
    """The caller, or None when the request has no token or an unknown one."""
    token = bearer_token(request, allow_cookie=allow_cookie)
    if token is None:
        return None
    return token_table(request).lookup(token)


#: Declares bearer auth in the OpenAPI document (the "Authorize" button of ``/docs``);
#: the token itself is read by :func:`bearer_token`, which also accepts the cookie.
BEARER_SCHEME: Final = HTTPBearer(
    auto_error=False, description="a token from LIFECYCLE_API_TOKENS (role:token)"
)
UNAUTHORIZED_HEADERS: Final = {"WWW-Authenticate": 'Bearer realm="provider-lifecycle"'}


def authorize(principal: Principal | None, minimum: str, had_token: bool) -> Principal:
    """``principal`` if it has at least ``minimum``; otherwise the 401 / 403 to answer."""
    if principal is None:
        if had_token:
            raise ApiError(401, "unauthorized", "unknown token", headers=UNAUTHORIZED_HEADERS)
        raise ApiError(
            401,
            "unauthorized",
            "a bearer token is required (Authorization: Bearer <token>)",
            headers=UNAUTHORIZED_HEADERS,
        )
    if not principal.at_least(minimum):
        raise ApiError(
            403, "forbidden", f"the {principal.role} role may not do this (needs {minimum})"
        )
    return principal


def require_role(minimum: str, *, allow_cookie: bool = True) -> Callable[..., Principal]:
    """A FastAPI dependency: the caller's :class:`Principal`, at least ``minimum``.

    No token or an unknown one → 401 ``unauthorized``; a lower role → 403 ``forbidden``.
    ``allow_cookie=False`` accepts only the ``Authorization`` header (for state-changing
    API calls, so a browser cookie can never be used for them cross-site).
    """
    if minimum not in RANK:
        raise ValueError(f"unknown role {minimum!r}")

    def dependency(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER_SCHEME)],
    ) -> Principal:
        token = bearer_token(request, allow_cookie=allow_cookie)
        principal = token_table(request).lookup(token) if token is not None else None
        who = authorize(principal, minimum, token is not None)
        request.state.principal = who
        return who

    dependency.__name__ = f"require_{minimum}"
    return dependency


#: The caller, at least a reader (bearer header or the dashboard's cookie).
Reader = Annotated[Principal, Depends(require_role("reader"))]
#: The caller, at least an auditor (sees personal data).
Auditor = Annotated[Principal, Depends(require_role(AUDITOR))]
#: The caller, an admin.
Admin = Annotated[Principal, Depends(require_role("admin"))]
#: The caller, an admin, by the ``Authorization`` header only (state-changing API calls).
AdminByHeader = Annotated[Principal, Depends(require_role("admin", allow_cookie=False))]


# --- personal data, as each role may see it ----------------------------------------------


def contact_for(principal: Principal, contact: Any) -> Any:
    """The contact as ``principal`` may see it: clear for auditors and admins."""
    return contact if principal.sees_personal_data else mask_contact(contact)


def with_contact_for(principal: Principal, document: dict[str, Any]) -> dict[str, Any]:
    """A copy of a provider document whose ``contact`` is masked unless allowed."""
    if principal.sees_personal_data or "contact" not in document:
        return document
    return {**document, "contact": mask_contact(document["contact"])}
