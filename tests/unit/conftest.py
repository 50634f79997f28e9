"""Fixtures for the fast unit tests: in-memory and file-backed application services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lifecycle.application import ProviderLifecycle
from tests.factories import popo_app, sqlite_env


@pytest.fixture
def app() -> ProviderLifecycle:
    """The application service on the in-memory (POPO) store."""
    return popo_app()


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[tuple[ProviderLifecycle, dict[str, str]]]:
    """The application service on a SQLite file, with the env to open it again."""
    env = sqlite_env(str(tmp_path / "store.db"))
    application = ProviderLifecycle(env=env)
    yield application, env
    application.close()
