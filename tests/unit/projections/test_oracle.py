"""The oracle (``tests/oracle.py``) itself sees what the store holds."""

from __future__ import annotations

from lifecycle.application import ProviderLifecycle
from tests.factories import applied, exited, line, onboard, uscc
from tests.oracle import expected_per_day, expected_timeline, ingest, replayed_providers


def test_the_oracle_itself_sees_a_provider_and_its_timeline(app: ProviderLifecycle) -> None:
    # The oracle must not be vacuous: it finds the provider, its events and refusals.
    subject = uscc(900)
    raws = [
        *onboard(subject, "2025-01-01"),
        exited(subject, "2025-06-01"),
        applied(subject, "2025-07-01"),
    ]
    ingest(app, [line(r) for r in raws])
    providers = replayed_providers(app)
    assert set(providers) == {subject}
    assert providers[subject].status == "exited"
    timeline = expected_timeline(app, subject)
    assert [t[2] for t in timeline] == ["accepted"] * 4 + ["refused"]
    assert timeline[-1][3] == ["A1.3-5"]
    assert expected_per_day(app)["2025-06-01"] == {"exited": 1}
