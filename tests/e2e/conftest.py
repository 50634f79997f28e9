"""Browser end-to-end fixtures: a real store, the real views, the real app served by uvicorn.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``; ``make test`` installs it),
driven by Playwright for Python through ``executable_path``: no browser is downloaded.
Screenshots go to ``test-output/browser/`` at the repository root (or
``$LIFECYCLE_TEST_OUTPUT/browser/``), kept after the run.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Page, sync_playwright

from lifecycle.application import InboundMessage, ProviderLifecycle
from service.demo import generate
from store.url import persistence_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"reader": "e2e-reader-token", "auditor": "e2e-auditor-token", "admin": "e2e-admin-token"}


def demo_store(path: Path, providers: int = 60, seed: int = 11) -> str:
    """A SQLite store fed with the demo stream through ``ProviderLifecycle.process``."""
    store = f"sqlite:///{path}"
    app = ProviderLifecycle(env=persistence_env(store))
    lines = list(generate(providers=providers, seed=seed))
    for start in range(0, len(lines), 500):
        app.process(
            [
                InboundMessage(line, f"demo:0:{n}")
                for n, line in enumerate(lines[start : start + 500], start=start)
            ]
        )
    app.close()
    return store


@dataclass
class LiveServer:
    """The app served by uvicorn in a thread of the test process, on a free local port."""

    app: FastAPI

    def __post_init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = int(self.socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.socket.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(`apt-get install -y chromium fonts-wqy-zenhei`; `make test` does it)"
        )
    return CHROMIUM


@pytest.fixture(scope="session")
def screenshots() -> Path:
    base = Path(os.environ.get("LIFECYCLE_TEST_OUTPUT", ROOT / "test-output"))
    folder = base / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page(chromium: str) -> Iterator[Page]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1360, "height": 900}, locale="zh-CN")
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()
