"""The harness fixture of the API and dashboard tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.web.fakes import Harness, harness


@pytest.fixture
def h() -> Iterator[Harness]:
    harness_ = harness()
    with harness_.client:
        yield harness_
