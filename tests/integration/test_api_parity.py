"""Live/offline parity through the read API: Kafka → store → views → HTTP == `evaluate`."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from lifecycle.rules import business_date
from service.demo import generate
from tests.integration.harness import LIFECYCLE, Service, Topics, wait_for

pytestmark = pytest.mark.integration

FIELDS = ("status", "deposit_balance_fen", "violations", "eligibility")


def offline(events: Path, as_of: date, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [LIFECYCLE, "evaluate", str(events), "--as-of", as_of.isoformat(), "--json"],
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    report: dict[str, Any] = json.loads(out)
    return report


def test_the_api_reads_back_what_evaluate_says(
    kafka_bootstrap: str, postgres_store: str, topics: Topics, tmp_path: Path
) -> None:
    lines = list(generate(providers=120, seed=37))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    env = topics.env(kafka_bootstrap, postgres_store)
    subprocess.run([LIFECYCLE, "produce", str(events)], env=env, capture_output=True, check=True)
    base = f"http://{env['LIFECYCLE_HTTP_BIND']}"
    headers = {"Authorization": "Bearer it-reader"}

    service = Service(env, tmp_path / "run.log").start()
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=10) as http:

            def projected() -> bool:
                service.assert_alive()
                try:
                    stats = http.get("/v1/stats").json()
                except httpx.HTTPError:
                    return False  # not listening yet
                return bool(stats.get("outcomes", {}).get("consumed") == len(lines))

            wait_for(projected, 180, "every record projected and served")

            today = business_date(datetime.now(UTC))
            past = date(2025, 6, 30)
            now_report = offline(events, today, env)
            past_report = offline(events, past, env)
            assert now_report["providers"], "the sample must have providers"
            compared = 0
            for uscc, expected in now_report["providers"].items():
                response = http.get(f"/v1/providers/{uscc}")
                if expected["status"] is None:  # only ever refused: no provider to show
                    assert response.status_code == 404
                    continue
                assert response.status_code == 200, response.text
                live = response.json()
                assert {k: live[k] for k in FIELDS} == {k: expected[k] for k in FIELDS}, uscc
                # Time travel: the same provider as of a past date, against evaluate's view of
                # the history up to then (eligibility at that date).
                back = http.get(f"/v1/providers/{uscc}", params={"as_of": past.isoformat()})
                if back.status_code == 200:
                    then = back.json()["eligibility"]
                    assert then == past_report["providers"][uscc]["eligibility"], uscc
                else:
                    assert back.status_code == 404
                compared += 1
            assert compared > 50
    finally:
        assert service.stop() == 0
