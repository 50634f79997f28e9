"""What the recorders in ``store`` offer besides the hash chain, on every store:
``select_present_originators``, the one-query prefetch ``ProviderLifecycle.process`` uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lifecycle.application import ProviderLifecycle
from lifecycle.records import record_id
from lifecycle.uscc import provider_id
from store.url import persistence_env
from tests.factories import admitted, applied, process, uscc

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def lifecycle(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProviderLifecycle]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        url = request.getfixturevalue("postgres_store")
    app = ProviderLifecycle(env=persistence_env(url))
    yield app
    app.close()


def test_present_originators_are_the_streams_with_events(lifecycle: ProviderLifecycle) -> None:
    present = [uscc(n) for n in range(1, 6)]
    process(lifecycle, *(applied(u, "2025-01-01") for u in present))
    process(lifecycle, admitted(present[0], "2025-01-02"))
    absent = [uscc(n) for n in range(6, 2000)]  # more than one SQLite chunk
    ids = [provider_id(u) for u in absent[:700] + present + absent[700:]]
    select = lifecycle.recorder.select_present_originators  # type: ignore[attr-defined]
    assert sorted(select(ids)) == sorted(provider_id(u) for u in present)
    assert select([]) == []
    assert select([record_id("kafka:nowhere:0:0")]) == []


def test_a_batch_of_new_and_known_providers_is_judged_as_before(
    lifecycle: ProviderLifecycle,
) -> None:
    known, new = uscc(11), uscc(12)
    process(lifecycle, applied(known, "2025-01-01"))
    lifecycle.clear_cache()  # nothing cached: the prefetch decides
    results = process(
        lifecycle,
        admitted(known, "2025-01-02"),
        applied(new, "2025-01-02"),
        admitted(new, "2025-01-03"),
        applied(known, "2025-01-04"),  # refused: a tenure is open
    )
    assert [r.outcome for r in results] == ["accepted", "accepted", "accepted", "refused"]
