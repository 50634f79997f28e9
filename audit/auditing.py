"""The auditors' use cases over one application service: history and verification.

The read API (``web/audit_routes.py``) and the CLI (``lifecycle audit``) call these; only
stores that keep the hash chain (``store.audit_port.AuditStore``) can answer them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from audit.history import history
from audit.verify import verify
from lifecycle.application import ProviderLifecycle
from store.audit_port import AuditStore


class NoHashChain(RuntimeError):
    """This store keeps no hash chain (e.g. the library's own recorders)."""


def audit_store(app: ProviderLifecycle) -> AuditStore:
    """The recorder of ``app`` as an audit store, or ``NoHashChain``."""
    recorder = app.recorder
    if not isinstance(recorder, AuditStore):
        raise NoHashChain(f"this store ({type(recorder).__name__}) keeps no hash chain")
    return recorder


class Auditing:
    def __init__(self, app: ProviderLifecycle) -> None:
        self.app = app

    def history(self, uscc: str, as_of: date | None = None) -> dict[str, Any]:
        """Every inbound record of ``uscc`` (``lifecycle audit history --json``)."""
        return history(self.app, audit_store(self.app), uscc, as_of)

    def verify(self, uscc: str | None = None) -> dict[str, Any]:
        """The chain and the seals checked (``lifecycle audit verify --json``)."""
        return verify(audit_store(self.app), uscc).as_dict()
