"""The pages and roomcast.js under a prefix: a host FastAPI app includes
``rc.router`` under ``/rt`` (prefix_app.py, a real uvicorn process) and real
headless Chromium uses the pages there. At the root, test_web.py's tests run the
same pages under `roomcast serve`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .apps import AppFactory, app_factory
from .browser import Pages, browser, pages, texts, wait_state
from .prefix_app import PREFIX

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from ..conftest import ServerProcess

__all__ = ["app_factory", "browser", "pages"]  # the fixtures, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

HOST_APP = "tests.e2e.prefix_app:app"


def host_app(app_factory: AppFactory) -> ServerProcess:
    return app_factory(HOST_APP, f"{PREFIX}/healthz")


def styled(page: Page) -> bool:
    """Whether style.css applies: it makes the header bar a flex row (the browser's
    own style leaves a <header> a block)."""
    return bool(
        page.evaluate("getComputedStyle(document.querySelector('.bar')).display === 'flex'")
    )


def sockets_of(page: Page) -> list[str]:
    """The URLs of the WebSockets ``page`` opens from now on."""
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    return urls


def join(pages: Pages, server: ServerProcess, name: str, room: str) -> tuple[Page, list[str]]:
    page = pages.open(f"{server.http}{PREFIX}/chat?name={name}&room={room}", name)
    urls = sockets_of(page)
    page.get_by_test_id("join").click()
    wait_state(page, "connected")
    return page, urls


def test_two_chat_pages_under_a_prefix_are_styled_and_chat_through_the_prefixed_socket(
    app_factory: AppFactory, pages: Pages
) -> None:
    server = host_app(app_factory)
    ann, ann_sockets = join(pages, server, "ann", "chat:prefix")
    bob, bob_sockets = join(pages, server, "bob", "chat:prefix")
    for page, urls in ((ann, ann_sockets), (bob, bob_sockets)):
        assert styled(page)
        assert urls == [f"ws://127.0.0.1:{server.port}{PREFIX}/ws"]
        brand = page.locator(".brand").evaluate("a => a.href")
        assert brand == f"{server.http}{PREFIX}/"

    ann.get_by_test_id("message-input").fill("hello from ann")
    ann.get_by_test_id("message-input").press("Enter")
    bob.get_by_test_id("message-input").fill("hello from bob")
    bob.get_by_test_id("message-input").press("Enter")
    for page in (ann, bob):
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=messages] > li').length === 2"
        )
        assert texts(page) == ["hello from ann", "hello from bob"]
    assert pages.errors == []


def test_the_dashboard_under_a_prefix_draws_a_feed_read_from_the_prefixed_events(
    app_factory: AppFactory, pages: Pages
) -> None:
    server = host_app(app_factory)
    room = "feed:prefix"
    page = pages.open(f"{server.http}{PREFIX}/dashboard?rooms={room}", "dashboard")
    wait_state(page, "connected")
    assert styled(page)
    streams = page.evaluate("window.roomcastFeed._source.url")
    assert streams.startswith(f"{server.http}{PREFIX}/events?room=feed%3Aprefix")

    for n in range(1, 4):
        reply = httpx.post(
            f"{server.http}{PREFIX}/rooms/{room}/messages", json={"data": {"n": n}}, timeout=10
        )
        reply.raise_for_status()
    page.wait_for_function(
        "() => +document.querySelector('[data-testid=feed]').dataset.count === 3"
    )
    value = page.locator('[data-testid="metric"][data-field="n"] .value').text_content()
    assert value == "3"
    assert pages.errors == []


def test_the_prefix_without_its_slash_reaches_the_index_whose_links_stay_under_the_prefix(
    app_factory: AppFactory, pages: Pages
) -> None:
    server = host_app(app_factory)
    redirect = httpx.get(f"{server.http}{PREFIX}", timeout=10)
    assert redirect.status_code == 307
    assert redirect.headers["location"] == f"{server.http}{PREFIX}/"

    page = pages.open(f"{server.http}{PREFIX}", "index")
    assert page.url == f"{server.http}{PREFIX}/"
    assert styled(page)
    page.get_by_test_id("chat-link").click()
    page.wait_for_url(f"{server.http}{PREFIX}/chat")
    assert styled(page)
    page.locator(".brand").click()  # back to roomcast's index, not the host's page
    page.wait_for_url(f"{server.http}{PREFIX}/")
    assert page.get_by_test_id("host").count() == 0
    page.get_by_test_id("dashboard-link").click()
    page.wait_for_url(f"{server.http}{PREFIX}/dashboard")
    wait_state(page, "connected")
    assert pages.errors == []


DEFAULT_URLS_SCRIPT = """async (origin) => {
    const { Roomcast, FeedStream } = await import('/rt/roomcast.js');
    const connected = (client) => new Promise((resolve) =>
        client.on('state', ({ state }) => state === 'connected' && resolve(client.info.user)));
    const feedUrl = (feed) => { const url = feed._source.url; feed.close(); return url; };
    const plain = new Roomcast({ name: 'default' });
    const relative = new Roomcast({ name: 'relative', url: 'rt/ws' });
    const wsUrl = origin.replace('http', 'ws') + '/rt/ws';
    const absolute = new Roomcast({ name: 'absolute', url: wsUrl });
    const users = await Promise.all([plain, relative, absolute].map(connected));
    for (const client of [plain, relative, absolute]) client.close();
    return {
        users,
        feeds: [
            feedUrl(new FeedStream(['feed:x'])),
            feedUrl(new FeedStream(['feed:x'], { url: 'rt/events' })),
        ],
    };
}"""


def test_a_host_page_that_imports_the_prefixed_library_talks_to_the_prefix_without_options(
    app_factory: AppFactory, pages: Pages
) -> None:
    """The host's own page (at ``/``) imports ``/rt/roomcast.js``: the default URLs
    come from where the module was loaded, so they are ``/rt/ws`` and ``/rt/events``;
    an explicit ``url`` is resolved against the page (``rt/ws`` from ``/`` is
    ``/rt/ws``, not ``/rt/rt/ws``) and wins."""
    server = host_app(app_factory)
    page = pages.open(f"{server.http}/", "host page")
    assert page.get_by_test_id("host").count() == 1
    urls = sockets_of(page)
    got: Any = page.evaluate(DEFAULT_URLS_SCRIPT, server.http)
    assert got["users"] == ["default", "relative", "absolute"]
    assert urls == [f"ws://127.0.0.1:{server.port}{PREFIX}/ws"] * 3
    assert got["feeds"] == [f"{server.http}{PREFIX}/events?room=feed%3Ax"] * 2
    assert pages.errors == []


def test_the_protocol_page_under_a_prefix_is_readable_and_links_its_document(
    app_factory: AppFactory, pages: Pages
) -> None:
    """/rt/asyncapi in a real browser: nothing refused by its Content-Security-Policy,
    the contents links land on their sections, and its document link is the prefixed
    /rt/asyncapi.json describing the prefixed socket."""
    server = host_app(app_factory)
    page = pages.open(f"{server.http}{PREFIX}/asyncapi", "asyncapi")
    assert page.title() == "roomcast protocol"
    page.locator("nav").get_by_role("link", name="Close codes").click()
    page.wait_for_url(f"{server.http}{PREFIX}/asyncapi#close")
    assert page.locator("#close").is_visible()
    assert page.locator("#close + p + table tr").count() > 10
    href = page.get_by_role("link", name="asyncapi.json").evaluate("a => a.href")
    assert href == f"{server.http}{PREFIX}/asyncapi.json"
    doc = httpx.get(href, timeout=10).json()
    assert doc["servers"]["websocket"]["pathname"] == PREFIX
    assert f"ws://127.0.0.1:{server.port}{PREFIX}/ws" in page.content()
    assert pages.errors == []
    assert [line for line in pages.console if "error" in line] == []
