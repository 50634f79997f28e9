"""Settings from the environment (and an optional ``.env``), all prefixed ``LIFECYCLE_``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from pydantic_settings import BaseSettings, SettingsConfigDict

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

    def persistence_env(self) -> dict[str, str]:
        """The eventsourcing environment for ``store`` (SQLite file, PostgreSQL or memory)."""
        return persistence_env(self.store)


def persistence_env(store: str) -> dict[str, str]:
    url = urlparse(store)
    if url.scheme == "memory":
        return {"PERSISTENCE_MODULE": "service.stores.memory:Factory"}
    if url.scheme == "sqlite":
        # sqlite:///relative/path.db or sqlite:////absolute/path.db
        path = Path(unquote(store.removeprefix("sqlite:///")))
        path.parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "service.stores.sqlite:Factory",
            "SQLITE_DBNAME": str(path),
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    if url.scheme in ("postgresql", "postgres"):
        return {
            "PERSISTENCE_MODULE": "service.stores.postgres:Factory",
            "POSTGRES_DBNAME": unquote(url.path.lstrip("/")),
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": unquote(url.username or ""),
            "POSTGRES_PASSWORD": unquote(url.password or ""),
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_MAX_OVERFLOW": "4",
        }
    raise ValueError(
        f"LIFECYCLE_STORE must be sqlite:///…, postgresql://… or memory://, not {store!r}"
    )
