"""``LIFECYCLE_STORE`` URLs → the eventsourcing library's persistence environment.

``sqlite:///relative.db`` / ``sqlite:////absolute.db``, ``postgresql://user:pass@host:port/db``
or ``memory://``. Writers pass the factories of ``store`` (positions, COPY, the
hash chain); readers may use the library's own.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse


def persistence_env(
    store: str,
    *,
    sqlite: str = "store.sqlite:Factory",
    postgres: str = "store.postgres:Factory",
    memory: str = "store.memory:Factory",
) -> dict[str, str]:
    """The environment for ``store``, with the given persistence module per kind."""
    url = urlparse(store)
    if url.scheme == "memory":
        return {"PERSISTENCE_MODULE": memory}
    if url.scheme == "sqlite":
        path = Path(unquote(store.removeprefix("sqlite:///")))
        path.parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": sqlite,
            "SQLITE_DBNAME": str(path),
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    if url.scheme in ("postgresql", "postgres"):
        return {
            "PERSISTENCE_MODULE": postgres,
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
