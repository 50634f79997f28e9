"""Settings from the environment (and an optional ``.env``), all prefixed ``LIFECYCLE_``."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from store.url import persistence_env

DEFAULT_STORE = "sqlite:///var/lifecycle.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIFECYCLE_", env_file=".env", extra="ignore")

    store: str = DEFAULT_STORE
    kafka_bootstrap: str = "127.0.0.1:9092"
    inbound_topic: str = "provider-lifecycle.inbound.v1"
    outbound_topic: str = "provider-lifecycle.events.v1"
    refused_topic: str = "provider-lifecycle.refused.v1"
    dlq_topic: str = "provider-lifecycle.inbound.v1.dlq"
    group_id: str = "provider-lifecycle"
    batch_size: int = 2000
    partitions: int = 6
    http_bind: str = "127.0.0.1:8000"
    api_tokens: str = ""
    #: The roles ``lifecycle run`` runs in this process (``--role``): any of ingest, relay,
    #: project, api, comma-separated (``service/roles.py``).
    roles: str = "ingest,relay,project,api"

    def persistence_env(self) -> dict[str, str]:
        """The eventsourcing environment for ``store`` (SQLite file, PostgreSQL or memory)."""
        return persistence_env(self.store)
