"""Integration fixtures: the real local Kafka and PostgreSQL (started by ``make test``).

A missing service fails the suite; nothing here is skipped.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.integration.harness import Topics, fresh_database


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    bootstrap = os.environ.get("LIFECYCLE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    host, port = bootstrap.rsplit(":", 1)
    if not _reachable(host, int(port)):
        pytest.fail(f"Kafka is not reachable on {bootstrap}: run `make services`")
    return bootstrap


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = os.environ.get("LIFECYCLE_STORE", "")
    if not url.startswith("postgresql://"):
        url = "postgresql://lifecycle:lifecycle@127.0.0.1:5432/lifecycle"
    parsed = urlparse(url)
    if not _reachable(parsed.hostname or "127.0.0.1", parsed.port or 5432):
        pytest.fail(f"PostgreSQL is not reachable for {parsed.hostname}:{parsed.port}")
    return url


@pytest.fixture
def postgres_store(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    with fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def sqlite_store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture
def topics() -> Topics:
    return Topics.unique()
