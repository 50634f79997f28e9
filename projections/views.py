"""The projected views: follow the event store, serve the read side (``ReadModel``).

Views, each with its own tracking position, in the event store's own database (a SQLite
file or PostgreSQL), written with the view rows and positions in one transaction:

* ``provider``      status, deposit and shortfall, violations (count and list with
                    clauses), the open application's unmet A1.1 requirements, company,
                    city, contact, and the eligibility restriction as columns
                    (``tenure_open``, ``permanent``, ``manual_review``, ``blocked_until``,
                    ``requires_a11``, ``clause``) plus exact per-date segments, so
                    ``can_apply`` is computed at read time for any date, in SQL;
* ``requirements``  Stripe-style: what is unmet, the clause, who must act next
                    (provider or platform) and by when;
* ``stats``         providers by status and city; applications, admissions, exits,
                    expulsions and declines per day; inbound outcomes;
* ``inbox``         refused and malformed records with reasons and resubmissions;
* ``timeline``      every inbound record of a provider in store order.

Typical use::

    projector = open_projector(Settings().store)
    await projector.run(stop)                 # or projector.catch_up()
    read_model = open_read_model(Settings().store)
    read_model.provider(uscc, as_of=date(2026, 1, 1))

Modules: ``documents`` (pure domain → rows), ``storage`` (dialects, schema, generations),
``projector`` (the exactly-once follower), ``reader`` (the ``ReadModel``), ``rebuild``
(rebuild with switch-over, verify, status).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lifecycle.application import ProviderLifecycle
from projections.database import PositionConflict, ViewDatabase, ViewsBusy
from projections.model import ReadModel
from projections.projection import Projection
from projections.projector import Projector
from projections.reader import SqlReadModel
from projections.rebuild import (
    Difference,
    RebuildReport,
    VerifyReport,
    rebuild,
    status_report,
    verify,
)
from projections.tables import VIEWS
from store.url import persistence_env


def _persistence_env(store_url: str) -> dict[str, str]:
    if not store_url.startswith(("sqlite:", "postgresql:", "postgres:")):
        raise ValueError(f"views need a SQLite file or PostgreSQL store, not {store_url!r}")
    return persistence_env(store_url)


def open_store(store_url: str) -> ProviderLifecycle:
    """The application service on the store, to read its notification log and aggregates.

    The composition root passes its own (``service.bootstrap``); this one is for tools.
    """
    return ProviderLifecycle(env=_persistence_env(store_url))


def open_read_model(
    store_url: str, *, app: ProviderLifecycle | None = None, pool_size: int = 8
) -> SqlReadModel:
    """The ``ReadModel`` over the live generation of the views of ``store_url``."""
    return SqlReadModel(
        ViewDatabase(store_url, pool_size=pool_size),
        app or open_store(store_url),
        owns_app=app is None,
    )


def open_projector(
    store_url: str,
    *,
    app: ProviderLifecycle | None = None,
    batch_size: int = 1000,
    idle_seconds: float = 0.2,
) -> Projector:
    """A projector that follows the live generation of the views of ``store_url``."""
    return Projector(
        app or open_store(store_url),
        ViewDatabase(store_url),
        batch_size=batch_size,
        idle_seconds=idle_seconds,
    )


if TYPE_CHECKING:

    def _implements_the_port(model: SqlReadModel) -> ReadModel:
        return model


__all__ = [
    "VIEWS",
    "Difference",
    "PositionConflict",
    "Projection",
    "Projector",
    "RebuildReport",
    "SqlReadModel",
    "VerifyReport",
    "ViewDatabase",
    "ViewsBusy",
    "open_projector",
    "open_read_model",
    "open_store",
    "rebuild",
    "status_report",
    "verify",
]
