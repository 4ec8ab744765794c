"""Headless Chromium for the web tests: Debian's chromium driven by playwright.

The browser is the system's (``apt-get install chromium``), launched through
``executable_path``; playwright's own downloads are never used. Each test's pages
are photographed when it ends, pass or fail, into ``artifacts/screenshots/``
(``ROOMCAST_SCREENSHOTS`` moves it), which CI keeps as its artifacts."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .. import contract
from ..conftest import ROOT, require

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
TIMEOUT_MS = 10_000


def chromium_path() -> str | None:
    return os.environ.get("ROOMCAST_CHROMIUM") or shutil.which("chromium")


def screenshot_dir() -> Path:
    return Path(os.environ.get("ROOMCAST_SCREENSHOTS") or ROOT / "artifacts" / "screenshots")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One browser per module. Not per session: while playwright's sync API is
    open it keeps an event loop running in this thread, and the async tests of
    other modules could not start theirs."""
    path = chromium_path()
    require(path is not None, "chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package (pip install -e '.[test]')")
        raise
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def safe(name: str) -> str:
    """``name`` as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


class Pages:
    """The pages of one test, each in a browser context of its own (its own
    cookies and storage, like another person's browser)."""

    def __init__(self, browser: Browser, test_name: str) -> None:
        self.browser = browser
        self.test_name = safe(test_name)
        self.opened: list[tuple[str, Page]] = []
        self.errors: list[str] = []  # uncaught exceptions in a page's scripts
        self.console: list[str] = []

    def open(self, url: str, label: str = "page") -> Page:
        context = self.browser.new_context(viewport={"width": 1100, "height": 700})
        page = context.new_page()
        if (tap := contract.current()) is not None:
            tap.watch_page(page)  # its WebSocket frames are checked against the AsyncAPI document
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: self.errors.append(f"{label}: {error}"))
        page.on("console", lambda m: self.console.append(f"{label}: {m.type}: {m.text}"))
        page.goto(url)
        self.opened.append((label, page))
        return page

    def screenshots(self) -> list[Path]:
        folder = screenshot_dir()
        folder.mkdir(parents=True, exist_ok=True)
        saved = []
        for n, (label, page) in enumerate(self.opened, 1):
            if page.is_closed():
                continue
            path = folder / f"{self.test_name}-{n}-{safe(label)}.png"
            page.screenshot(path=str(path), full_page=True)
            saved.append(path)
        return saved

    def close(self) -> None:
        for _, page in self.opened:
            page.context.close()


@pytest.fixture
def pages(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Pages]:
    opened = Pages(browser, request.node.name)
    yield opened
    try:
        opened.screenshots()
    finally:
        opened.close()


def state_of(page: Page) -> str:
    return str(page.get_by_test_id("status").get_attribute("data-state"))


def wait_state(page: Page, state: str, timeout: float = TIMEOUT_MS) -> None:
    page.wait_for_selector(f'[data-testid="status"][data-state="{state}"]', timeout=timeout)


def texts(page: Page) -> list[str]:
    result: Any = page.eval_on_selector_all(
        '[data-testid="messages"] > li .text', "items => items.map(i => i.textContent)"
    )
    return list(result)


def offsets(page: Page) -> list[int]:
    result: Any = page.eval_on_selector_all(
        '[data-testid="messages"] > li', "items => items.map(i => Number(i.dataset.offset))"
    )
    return list(result)
