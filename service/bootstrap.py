"""The composition root: every dependency of a process, built once, on first use.

A process (``lifecycle run`` or one CLI command) makes one :class:`Bootstrap` from its
:class:`~service.settings.Settings` and takes what it needs from it: one application
service (one recorder, one connection pool) shared by the consumer, the relay, the
projector, the read API, the inbox and the auditors.
"""

from __future__ import annotations

from functools import cached_property
from types import TracebackType

from fastapi import FastAPI

from audit.auditing import Auditing
from consumers.inbound import InboundConfig, InboundConsumer
from consumers.relay import Relay, RelayConfig
from consumers.resubmit import KafkaSender
from lifecycle.application import ProviderLifecycle
from lifecycle.inbox import Inbox
from projections.database import ViewDatabase
from projections.projector import Projector
from projections.reader import SqlReadModel
from projections.views import open_projector, open_read_model
from service.roles import RoleBoard
from service.settings import Settings
from store.audit_port import AuditStore
from web.app import create_app
from web.audit_routes import audit_router
from web.operations import Check, kafka_check


class Bootstrap:
    """Builds each dependency once; :meth:`close` releases what was built."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        #: The roles of ``lifecycle run`` (set by ``service.runner``): ``/readyz`` reports them.
        self.role_board: RoleBoard | None = None

    def __enter__(self) -> Bootstrap:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @cached_property
    def lifecycle(self) -> ProviderLifecycle:
        return ProviderLifecycle(env=self.settings.persistence_env())

    @cached_property
    def inbox(self) -> Inbox:
        s = self.settings
        return Inbox(self.lifecycle, KafkaSender(s.kafka_bootstrap, s.inbound_topic))

    @cached_property
    def auditing(self) -> Auditing:
        return Auditing(self.lifecycle)

    @property
    def audit_store(self) -> AuditStore | None:
        recorder = self.lifecycle.recorder
        return recorder if isinstance(recorder, AuditStore) else None

    @cached_property
    def views(self) -> ViewDatabase:
        return ViewDatabase(self.settings.store)

    @cached_property
    def read_model(self) -> SqlReadModel:
        return open_read_model(self.settings.store, app=self.lifecycle)

    @cached_property
    def projector(self) -> Projector:
        return open_projector(self.settings.store, app=self.lifecycle)

    @cached_property
    def consumer(self) -> InboundConsumer:
        s = self.settings
        config = InboundConfig(s.kafka_bootstrap, s.inbound_topic, s.group_id, s.batch_size)
        return InboundConsumer(self.lifecycle, config)

    @cached_property
    def relay(self) -> Relay:
        s = self.settings
        config = RelayConfig(s.kafka_bootstrap, s.outbound_topic, s.refused_topic, s.dlq_topic)
        return Relay(self.lifecycle, config)

    @cached_property
    def api(self) -> FastAPI:
        """The read API, the dashboard and the auditors' routes."""
        board = self.role_board
        checks: dict[str, Check] | None = None
        if board is not None:
            checks = {
                "store": self.read_model.ping,
                "kafka": kafka_check(self.settings.kafka_bootstrap),
                **board.checks(),
            }
        return create_app(
            self.read_model,
            lambda: self.inbox,
            self.settings,
            readiness_checks=checks,
            roles=None if board is None else board.snapshot,
            extra_routers=[audit_router(lambda: self.auditing)],
        )

    def close(self) -> None:
        built = self.__dict__
        for name in ("projector", "read_model", "views"):
            if name in built:
                built.pop(name).close()
        if "lifecycle" in built:
            built.pop("lifecycle").close()
