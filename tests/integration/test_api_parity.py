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
                # 1.1: a USCC with only refused records is a document with status null too.
                assert response.status_code == 200, response.text
                live = response.json()
                assert {k: live[k] for k in FIELDS} == {k: expected[k] for k in FIELDS}, uscc
                # Time travel: every field as of a past date, as evaluate --as-of says it.
                back = http.get(f"/v1/providers/{uscc}", params={"as_of": past.isoformat()})
                assert back.status_code == 200, back.text
                then = back.json()
                assert {k: then[k] for k in FIELDS} == {
                    k: past_report["providers"][uscc][k] for k in FIELDS
                }, uscc
                compared += 1
            assert set(past_report["providers"]) == set(now_report["providers"])
            # The list's filters agree with the provider pages, even on the last day.
            for day in (past, today, date.max):
                listed: dict[str, bool] = {}
                for can in (True, False):
                    page = http.get(
                        "/v1/providers",
                        params={"as_of": day.isoformat(), "can_apply": can, "limit": 200},
                    )
                    assert page.status_code == 200, page.text
                    listed.update((item["uscc"], can) for item in page.json()["items"])
                assert listed, day
                if day == date.max:
                    for uscc, can in listed.items():
                        doc = http.get(f"/v1/providers/{uscc}", params={"as_of": day.isoformat()})
                        assert doc.json()["eligibility"]["can_apply"] is can, uscc
            assert compared > 50
    finally:
        assert service.stop() == 0
