"""The dashboard in a real headless Chromium, over the real views of a real store.

A SQLite store is fed with the demo stream (60 providers) through
``ProviderLifecycle.process``, the projector catches up, and the app from
``create_app`` is served by uvicorn on a free local port, wired as ``lifecycle run``
wires it (re-submission through ``lifecycle.inbox.Inbox`` to the local Kafka). The
browser signs in, reads the overview, filters the provider list, opens a provider and
its timeline (now and as of a date), and reads the inbox; an admin re-submits a record.
A screenshot of each page is written to ``test-output/browser/``.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Page, expect

from consumers.resubmit import KafkaSender
from consumers.topics import ensure_topics
from lifecycle.application import ProviderLifecycle
from lifecycle.inbox import Inbox
from lifecycle.records import InboundRecord
from projections.model import InboxFilter, ProviderFilter
from projections.reader import SqlReadModel
from projections.views import open_projector, open_read_model
from service.settings import Settings
from tests.e2e.conftest import TOKENS, LiveServer, demo_store
from tests.integration.harness import read_topic
from web.app import create_app

pytestmark = pytest.mark.integration
T = TypeVar("T")


@dataclass
class Site:
    url: str
    store: str
    read_model: SqlReadModel
    settings: Settings


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    store = demo_store(tmp_path_factory.mktemp("e2e") / "store.db", providers=60, seed=11)
    projector = open_projector(store)
    projector.catch_up()
    projector.close()
    read_model = open_read_model(store)
    settings = Settings(
        store=store,
        api_tokens=",".join(f"{role}:{token}" for role, token in TOKENS.items()),
        kafka_bootstrap=os.environ.get("LIFECYCLE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        inbound_topic=f"e2e-{uuid.uuid4().hex[:10]}.inbound",
    )
    app = create_app(
        read_model,
        lambda: Inbox(
            ProviderLifecycle(env=settings.persistence_env()),
            KafkaSender(settings.kafka_bootstrap, settings.inbound_topic),
        ),
        settings,
    )
    with LiveServer(app) as server:
        yield Site(server.url, store, read_model, settings)
    read_model.close()


def elsewhere(work: Callable[[], T]) -> T:
    """Run ``work`` in another thread (one with no event loop running) and return its result."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result(timeout=60)


def shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def sign_in(page: Page, site: Site, role: str) -> None:
    response = page.goto(site.url + "/")
    assert response is not None and response.status == 401
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.fill("input[name=token]", TOKENS[role])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_dashboard_journey(site: Site, browser_page: Page, screenshots: Path) -> None:
    page = browser_page
    read_model = site.read_model

    # Sign in: a login page, then the token in an HttpOnly cookie (and out of the URL).
    page.goto(site.url + "/")
    shot(page, screenshots, "01-login")
    sign_in(page, site, "reader")
    assert page.url == site.url + "/"
    cookie = next(c for c in page.context.cookies() if c["name"] == "lifecycle_token")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"

    # Overview: counts by status and city, the chart, the lag.
    stats = read_model.stats()
    for status, count in stats["by_status"].items():
        expect(page.locator(f'a[data-status="{status}"]')).to_have_text(str(count))
    expect(page.locator("svg polyline")).to_have_count(3)
    busiest = max(stats["by_city"].items(), key=lambda kv: (kv[1], kv[0]))
    expect(page.locator("#city-counts")).to_contain_text(busiest[0])
    expect(page.locator("#projection-lag")).to_contain_text("provider")
    shot(page, screenshots, "02-overview")

    # The provider list, then filtered by status and city.
    page.get_by_role("link", name="Providers", exact=True).click()
    expect(page.get_by_role("heading", name="Providers")).to_be_visible()
    total = read_model.providers(ProviderFilter()).total
    expect(page.locator(".sub")).to_contain_text(f"{total} matching")
    shot(page, screenshots, "03-providers")

    city = max(
        (c for c, by in stats["by_city_status"].items() if by.get("active")),
        key=lambda c: (stats["by_city_status"][c]["active"], c),
    )
    page.select_option("select[name=status]", "active")
    page.select_option("select[name=city]", city)
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"status=active"))
    expected = read_model.providers(ProviderFilter(status="active", city=city), limit=100)
    rows = page.locator("#providers tbody tr")
    expect(rows).to_have_count(expected.total)
    for i in range(expected.total):
        expect(rows.nth(i).locator(".badge")).to_have_text("active")
        expect(rows.nth(i).locator("td").nth(2)).to_have_text(city)
    shot(page, screenshots, "04-providers-filtered")

    # Search by part of a company name (Chinese).
    target = expected.items[0]
    fragment = target["company_name"][-10:]
    page.goto(site.url + "/providers")
    page.fill("input[name=q]", fragment)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(f'#providers tr[data-uscc="{target["uscc"]}"]')).to_be_visible()

    # A provider page: its timeline, eligibility, requirements, contact masked for a reader.
    page.locator(f'#providers tr[data-uscc="{target["uscc"]}"] a').click()
    document = read_model.provider(target["uscc"])
    assert document is not None
    expect(page.locator("h1#company")).to_have_text(document["company_name"])
    items = page.locator("#timeline li")
    expect(items).to_have_count(len(document["timeline"]))
    expect(items.first).to_contain_text("Applied")
    expect(items.first).to_contain_text("accepted")
    expect(page.locator("#eligibility")).to_contain_text(document["eligibility"]["reason"])
    expect(page.locator("#contact")).to_contain_text("*")
    expect(page.locator("#contact")).not_to_contain_text(document["contact"]["name"])
    shot(page, screenshots, "05-provider")

    # Time travel: as of the day of its first event, only that day's events apply.
    first_day = document["timeline"][0]["time"][:10]
    page.fill("input[name=as_of]", first_day)
    page.get_by_role("button", name="Time travel").click()
    page.wait_for_url(re.compile(f"as_of={first_day}"))
    past = read_model.provider(target["uscc"], date.fromisoformat(first_day))
    assert past is not None
    expect(page.locator("#status")).to_have_text(past["status"])
    expect(items).to_have_count(len(past["timeline"]))
    shot(page, screenshots, "06-provider-as-of")

    # A provider with a refused event shows the refusal and its clause in the timeline.
    refused = read_model.inbox(InboxFilter(outcome="refused"), limit=1).items[0]
    page.goto(f"{site.url}/providers/{refused['subject']}")
    entry = page.locator("#timeline li.refused").first
    expect(entry).to_contain_text(refused["codes"][0])
    expect(entry).to_contain_text(refused["reason"])
    shot(page, screenshots, "07-provider-refused")

    # The inbox, filtered; a reader has no resubmit button.
    page.get_by_role("link", name="Inbox", exact=True).click()
    inbox_total = read_model.inbox(InboxFilter()).total
    expect(page.locator("#inbox tbody tr")).to_have_count(min(inbox_total, 30))
    page.select_option("select[name=outcome]", "refused")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"outcome=refused"))
    expect(page.locator("#inbox tbody tr .badge").first).to_have_text("refused")
    expect(page.get_by_role("button", name="Resubmit")).to_have_count(0)
    shot(page, screenshots, "08-inbox")


def test_admin_resubmits_from_the_inbox(site: Site, browser_page: Page, screenshots: Path) -> None:
    """The button produces the original record again to the inbound topic (real Kafka)."""
    settings = site.settings
    # Playwright's sync API runs an event loop in this thread: Kafka calls go to another.
    topics = {settings.inbound_topic: 1}
    elsewhere(lambda: asyncio.run(ensure_topics(settings.kafka_bootstrap, topics)))
    page = browser_page
    page.goto(site.url + f"/inbox?outcome=malformed&token={TOKENS['admin']}")
    assert "token=" not in page.url  # the redirect took it out of the URL
    row = page.locator("#inbox tbody tr").first
    record = row.get_attribute("data-record")
    assert record is not None
    row.get_by_role("button", name="Resubmit").click()
    expect(page.locator("#notice")).to_contain_text("re-submitted")
    assert "outcome=malformed" in page.url
    shot(page, screenshots, "09-inbox-resubmitted")

    lifecycle = ProviderLifecycle(env=site.settings.persistence_env())
    stored = lifecycle.record(uuid.UUID(record))
    assert isinstance(stored, InboundRecord) and stored.resubmissions == 1
    sent = elsewhere(lambda: read_topic(settings.kafka_bootstrap, settings.inbound_topic))
    assert [r.value for r in sent] == [stored.raw]
    assert dict(sent[0].headers)["x-resubmit-of"] == record.encode()
    lifecycle.close()


def test_api_docs_render_offline(site: Site, browser_page: Page, screenshots: Path) -> None:
    """Swagger UI is served by the app itself: no request leaves 127.0.0.1."""
    page = browser_page
    foreign: list[str] = []
    page.on(
        "request",
        lambda request: None if request.url.startswith(site.url) else foreign.append(request.url),
    )
    page.goto(site.url + "/docs")
    expect(page.get_by_text("Provider lifecycle read API").first).to_be_visible()
    expect(
        page.locator("#operations-providers-get_provider_v1_providers__uscc__get")
    ).to_be_visible()
    shot(page, screenshots, "10-api-docs")
    assert foreign == []
