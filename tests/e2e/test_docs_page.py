"""Acceptance: the REST API's docs pages render in headless Chromium (browser.py)
against `roomcast serve` with no network but the server's: every request a page makes
is recorded, and any to another origin is refused, so a page that needed a CDN would
stay blank and fail here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ..conftest import ServerProcess
from .browser import TIMEOUT_MS, Pages, browser, pages

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

__all__ = ["browser", "pages"]  # the fixtures, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ServerFactory = Callable[..., ServerProcess]
NOT_NETWORK = ("data:", "blob:", "about:")


class Offline:
    """A page that may reach ``origin`` only: what it asked for, and what was refused."""

    def __init__(self, pages: Pages, origin: str, label: str) -> None:
        self.origin = origin
        self.requested: list[str] = []
        self.refused: list[str] = []
        context = pages.browser.new_context(viewport={"width": 1100, "height": 700})
        context.route("**/*", self._only_the_server)
        context.on("request", lambda request: self.requested.append(request.url))
        self.page: Page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("pageerror", lambda error: pages.errors.append(f"{label}: {error}"))
        pages.opened.append((label, self.page))  # photographed when the test ends

    def here(self, url: str) -> bool:
        return url.startswith(self.origin + "/")

    def _only_the_server(self, route: Route) -> None:
        url = route.request.url
        if self.here(url) or url.startswith(NOT_NETWORK):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("internetdisconnected")

    def network(self) -> list[str]:
        return [url for url in self.requested if not url.startswith(NOT_NETWORK)]


def count(page: Page, selector: str) -> int:
    result: Any = page.eval_on_selector_all(selector, "nodes => nodes.length")
    return int(result)


def test_docs_renders_every_operation_offline_and_links_the_protocol(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory()
    docs = Offline(pages, server.http, "docs")
    docs.page.goto(f"{server.http}/docs")
    docs.page.wait_for_function("document.querySelectorAll('.opblock').length > 5")
    sse = docs.page.locator('.opblock-summary-path[data-path="/rooms/{room}/events"]')
    sse.wait_for(state="visible")
    assert docs.page.locator('.opblock-tag[data-tag="events (SSE)"]').is_visible()
    assert count(docs.page, ".opblock") > 5
    # The protocol: linked from the description and from the SSE tag, next to /docs.
    links = docs.page.eval_on_selector_all('a[href="asyncapi"]', "links => links.map(a => a.href)")
    assert len(links) >= 2
    assert set(links) == {f"{server.http}/asyncapi"}
    assert docs.refused == []
    network = docs.network()
    assert f"{server.http}/openapi.json" in network
    assert any("/docs-assets/swagger-ui-bundle.js" in url for url in network)
    assert [url for url in network if not docs.here(url)] == []
    assert pages.errors == []

    with docs.page.context.expect_page() as opened:  # Swagger UI opens links in a new tab
        docs.page.locator('.info a[href="asyncapi"]').click()
    protocol = opened.value
    protocol.wait_for_load_state()
    assert protocol.url == f"{server.http}/asyncapi"
    assert "AsyncAPI" in protocol.content()
    pages.opened.append(("protocol", protocol))


def test_redoc_renders_offline_too(server_factory: ServerFactory, pages: Pages) -> None:
    server = server_factory()
    redoc = Offline(pages, server.http, "redoc")
    redoc.page.goto(f"{server.http}/redoc")
    redoc.page.wait_for_function(
        "document.querySelectorAll('[data-section-id^=\"operation/\"]').length > 5"
    )
    # The sidebar's footer logo is drawn after the page (React effect): wait for it, so
    # a logo fetched from Redocly's CDN would be refused, and seen, every time.
    redoc.page.wait_for_selector('img[alt="redocly logo"]', state="attached")
    redoc.page.wait_for_load_state("networkidle")
    assert redoc.refused == []
    assert [url for url in redoc.network() if not redoc.here(url)] == []
    assert pages.errors == []
