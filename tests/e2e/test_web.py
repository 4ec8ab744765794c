"""Acceptance for the browser side: the chat and dashboard pages and roomcast.js,
in real headless Chromium against `roomcast serve` processes (browser.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from roomcast.auth.tokens import issue_token
from roomcast.protocol.codes import should_reconnect

from ..auth.keys import SECRET
from ..conftest import ServerProcess, require
from ..nginx_server import NginxServer, nginx_binary
from .browser import Pages, browser, offsets, pages, texts, wait_state

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from ..redis_server import RedisServer

__all__ = ["browser", "pages"]  # the fixtures, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ServerFactory = Callable[..., ServerProcess]
ROOM = "chat:lobby"
LINKS = ("chat", "dashboard")


HTTP = httpx.Client(timeout=10)
"""One client for the module's REST calls: making one costs ~60 ms of CPU."""


def publish(server: ServerProcess, room: str, data: Any) -> int:
    """Publish through the REST API of ``server``; the event's offset."""
    reply = HTTP.post(f"{server.http}/rooms/{room}/messages", json={"data": data})
    reply.raise_for_status()
    return int(reply.json()["offset"])


def join(pages: Pages, server: ServerProcess, name: str, room: str = ROOM, **kw: str) -> Page:
    """A chat page of ``server`` with ``name`` in ``room``, connected."""
    fragment = "#" + "&".join(f"{k}={v}" for k, v in kw.items()) if kw else ""
    page = pages.open(f"{server.http}/chat{fragment}", name)
    page.get_by_test_id("name-input").fill(name)
    page.get_by_test_id("room-input").fill(room)
    page.get_by_test_id("join").click()
    return page


def say(page: Page, text: str) -> None:
    """Type ``text`` and press Enter, as a person would."""
    box = page.get_by_test_id("message-input")
    box.fill(text)
    box.press("Enter")


def presence(page: Page) -> list[str]:
    result: Any = page.eval_on_selector_all(
        '[data-testid="presence"] > li', "items => items.map(i => i.textContent)"
    )
    return list(result)


def wait_for(page: Page, script: str, arg: Any = None) -> None:
    page.wait_for_function(script, arg=arg)


def wait_texts(page: Page, expected: list[str]) -> None:
    """Until the message list shows exactly ``expected``, in order."""
    wait_for(
        page,
        """want => JSON.stringify(
            [...document.querySelectorAll('[data-testid="messages"] > li .text')]
            .map(i => i.textContent)) === JSON.stringify(want)""",
        expected,
    )


def wait_presence(page: Page, expected: list[str]) -> None:
    wait_for(
        page,
        """want => JSON.stringify([...document.querySelectorAll('[data-testid="presence"] > li')]
            .map(i => i.textContent)) === JSON.stringify(want)""",
        expected,
    )


def test_two_pages_chat_in_one_room_and_see_each_other(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory()
    ann = join(pages, server, "ann")
    wait_state(ann, "connected")
    bob = join(pages, server, "bob")
    wait_state(bob, "connected")
    for page in (ann, bob):
        wait_presence(page, ["ann", "bob"])

    say(ann, "hello bob")
    bob.get_by_test_id("message-input").fill("hi ann")
    bob.get_by_test_id("send").click()
    for page in (ann, bob):
        wait_texts(page, ["hello bob", "hi ann"])
        senders = page.eval_on_selector_all(
            '[data-testid="messages"] > li .sender', "items => items.map(i => i.textContent)"
        )
        assert senders == ["ann", "bob"]
        assert offsets(page) == [1, 2]
        assert page.get_by_test_id("outbox").locator("li").count() == 0
        assert page.locator('[data-testid="messages"] > li time').count() == 2

    bob.context.close()  # bob leaves: ann sees it
    wait_presence(ann, ["ann"])
    assert pages.errors == []


def test_a_message_with_html_in_it_is_shown_as_text(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory()
    evil = '<script>window.pwned = 1</script><img src="x" onerror="window.pwned = 2"><b>bold</b>'
    ann = join(pages, server, "<i>ann</i>")
    wait_state(ann, "connected")
    say(ann, evil)
    wait_texts(ann, [evil])
    later = join(pages, server, "bob")  # the same text, arriving through history
    wait_texts(later, [evil])
    for page in (ann, later):
        messages = page.get_by_test_id("messages")
        assert messages.locator("script, img, b").count() == 0
        assert page.evaluate("window.pwned") is None
        sender = page.locator('[data-testid="messages"] > li .sender').text_content()
        assert sender == "<i>ann</i>"
    assert "<i>ann</i>" in presence(later)
    assert pages.errors == []


def test_history_loads_on_join_and_on_scroll_back(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory()
    for n in range(1, 121):
        publish(server, ROOM, {"text": f"message {n}"})
    page = join(pages, server, "ann")
    wait_state(page, "connected")
    wait_for(page, "() => document.querySelectorAll('[data-testid=messages] > li').length === 50")
    assert offsets(page) == list(range(71, 121))
    assert texts(page)[-1] == "message 120"

    # Scrolling to the top loads the page before.
    page.get_by_test_id("messages").evaluate("list => { list.scrollTop = 0; }")
    wait_for(page, "() => document.querySelectorAll('[data-testid=messages] > li').length === 100")
    assert offsets(page) == list(range(21, 121))

    # So does the button, from the keyboard.
    older = page.get_by_test_id("load-older")
    older.focus()
    older.press("Enter")
    wait_for(page, "() => document.querySelectorAll('[data-testid=messages] > li').length === 120")
    assert offsets(page) == list(range(1, 121))
    page.wait_for_selector('[data-testid="load-older"]', state="hidden")
    assert pages.errors == []


def test_a_restart_under_an_open_page_resumes_with_nothing_missed_or_twice(
    server_factory: ServerFactory, pages: Pages, redis_server: RedisServer
) -> None:
    """The page's server stops and starts again; meanwhile others publish through a
    second server on the same Redis, and the page sends a message of its own."""
    shared = {"redis_url": redis_server.url, "redis_prefix": f"web{uuid.uuid4().hex[:8]}"}
    server = server_factory(**shared)
    other = server_factory(**shared)
    for n in (1, 2):
        publish(server, ROOM, {"text": f"before {n}"})
    page = join(pages, server, "ann")
    wait_state(page, "connected")
    wait_texts(page, ["before 1", "before 2"])

    # The drain closes the page's socket with 3000 (uvicorn then re-raises the SIGTERM).
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    wait_state(page, "reconnecting")
    say(page, "sent while away")
    outbox = page.get_by_test_id("outbox").locator("li")
    assert outbox.count() == 1
    assert "queued" in (outbox.text_content() or "")
    for n in (1, 2, 3):
        publish(other, ROOM, {"text": f"meanwhile {n}"})

    server_factory(listen_port=server.port, **shared)
    wait_state(page, "resumed", timeout=30_000)
    expected = ["before 1", "before 2", "meanwhile 1", "meanwhile 2", "meanwhile 3"]
    wait_texts(page, [*expected, "sent while away"])
    assert offsets(page) == [1, 2, 3, 4, 5, 6]
    assert outbox.count() == 0
    assert page.get_by_test_id("status").text_content() == "resumed"
    assert page.get_by_test_id("history-lost").count() == 0  # nothing was lost
    assert pages.errors == []


def test_a_page_the_server_refuses_gives_up_and_says_why(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory(auth="jwt", jwt_secret=SECRET)  # every room needs a token
    page = join(pages, server, "ann")
    wait_state(page, "failed")
    status = page.get_by_test_id("status").text_content() or ""
    assert "gave up" in status
    assert "3500" in status
    assert not page.get_by_test_id("join-error").is_hidden()

    # With a token it gets in; when the token expires the server closes 3003 and
    # the page, having no way to get a new token, stops.
    # (5-6 s: a page on a loaded CI machine took over 2 s to connect)
    token = issue_token(SECRET, "ann", ttl=6, rooms=["chat:*"], publish=["chat:*"])
    page = join(pages, server, "ann", token=token)
    wait_state(page, "connected")
    wait_state(page, "failed", timeout=15_000)
    assert "3003" in (page.get_by_test_id("status").text_content() or "")
    assert pages.errors == []


def test_roomcast_js_close_code_rules_match_the_server(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory()
    page = pages.open(f"{server.http}/", "index")
    links = {link: page.get_by_test_id(f"{link}-link").evaluate("a => a.href") for link in LINKS}
    assert links == {link: f"{server.http}/{link}" for link in LINKS}  # relative hrefs
    script = """async () => {
        const rc = await import('/roomcast.js');
        const codes = [];
        for (let code = 1000; code < 5000; code++) codes.push(rc.shouldReconnect(code));
        const delays = [0, 1, 2, 3, 10, 40].map(a => rc.backoffDelay(a, 500, 15000, () => 0.999));
        const low = rc.backoffDelay(5, 500, 15000, () => 0);
        return { codes, delays, low };
    }"""
    got = page.evaluate(script)
    assert got["codes"] == [should_reconnect(code) for code in range(1000, 5000)]
    assert got["delays"] == [499, 999, 1998, 3996, 14985, 14985]  # doubling, capped
    assert got["low"] == 0  # full jitter: anywhere from zero
    assert pages.errors == []


def feed_state(page: Page, room: str) -> dict[str, int]:
    found: Any = page.eval_on_selector(
        f'[data-testid="feed"][data-room="{room}"]',
        "el => ({offset: +el.dataset.offset, count: +el.dataset.count, gaps: +el.dataset.gaps})",
    )
    return dict(found)


def test_the_dashboard_draws_a_feed_over_sse_and_resumes_after_a_dropped_stream(
    server_factory: ServerFactory, pages: Pages
) -> None:
    """On the embedded defaults: a persisted feed namespace keeps its positions
    across the restart that drops the stream (memory broker + SQLite)."""
    settings = {"namespaces": json.dumps({"feed": {"persist": True}})}
    server = server_factory(**settings)
    room = "feed:demo"
    page = pages.open(f"{server.http}/dashboard?rooms={room}", "dashboard")
    wait_state(page, "connected")
    assert page.get_by_test_id("hint").is_visible()  # an empty feed: how to start one
    for n in range(1, 6):
        publish(server, room, {"cpu": 10.0 + n, "rps": 100 * n})
    count_is = "n => +document.querySelector('[data-testid=feed]').dataset.count === n"
    wait_for(page, count_is, 5)
    assert page.get_by_test_id("hint").is_hidden()  # gone once numbers flow
    tiles = page.locator('[data-testid="metric"]')
    assert tiles.count() == 2
    assert page.locator('[data-testid="metric"][data-field="rps"] .value').text_content() == "500"
    assert page.get_by_test_id("chart").get_attribute("data-points") == "5"

    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # `event: close`, 3000
    wait_state(page, "reconnecting")
    server = server_factory(listen_port=server.port, **settings)
    for n in range(6, 11):
        publish(server, room, {"cpu": 10.0 + n, "rps": 100 * n})
    wait_state(page, "resumed", timeout=30_000)
    wait_for(page, count_is, 10)
    assert feed_state(page, room) == {"offset": 10, "count": 10, "gaps": 0}
    assert page.locator('[data-testid="metric"][data-field="rps"] .value').text_content() == "1,000"
    assert page.get_by_test_id("chart").get_attribute("data-points") == "10"

    # A tile picks the series the chart shows.
    page.locator('[data-testid="metric"][data-field="cpu"]').click()
    assert (
        page.locator('[data-testid="metric"][data-field="cpu"]').get_attribute("aria-pressed")
        == "true"
    )
    assert pages.errors == []


def test_demo_feed_gives_a_fresh_dashboard_something_to_show(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory()
    page = pages.open(f"{server.http}/dashboard", "dashboard")  # watches feed:demo by default
    wait_state(page, "connected")
    feed = subprocess.run(
        [sys.executable, "-m", "roomcast", "demo-feed", "--url", server.http,
         "--count", "8", "--interval", "0.05", "--seed", "7"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert feed.returncode == 0, feed.stderr
    wait_for(page, "() => +document.querySelector('[data-testid=feed]').dataset.count === 8")
    fields = page.eval_on_selector_all(
        '[data-testid="metric"]', "tiles => tiles.map(t => t.dataset.field)"
    )
    assert sorted(fields) == ["cpu", "p99_ms", "queue", "rps"]
    values = page.eval_on_selector_all(
        '[data-testid="metric"] .value', "els => els.map(e => e.textContent)"
    )
    assert all(v and v[0].isdigit() for v in values), values
    assert page.get_by_test_id("chart").get_attribute("data-points") == "8"
    assert feed_state(page, "feed:demo") == {"offset": 8, "count": 8, "gaps": 0}
    assert pages.errors == []


def test_the_dashboard_watches_several_feeds_on_one_stream(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory()
    page = pages.open(f"{server.http}/dashboard?rooms=feed:a,feed:b", "two feeds")
    wait_state(page, "connected")
    feed = subprocess.run(
        [sys.executable, "-m", "roomcast", "demo-feed", "--url", server.http,
         "--room", "feed:a", "--room", "feed:b", "--count", "4", "--interval", "0.05"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert feed.returncode == 0, feed.stderr
    wait_for(
        page,
        """() => [...document.querySelectorAll('[data-testid=feed]')]
            .every(f => f.dataset.count === '4')""",
    )
    cards = page.eval_on_selector_all('[data-testid="feed"]', "els => els.map(e => e.dataset.room)")
    assert cards == ["feed:a", "feed:b"]
    for room in cards:
        assert feed_state(page, room) == {"offset": 4, "count": 4, "gaps": 0}
    assert page.locator('[data-testid="chart"]').count() == 2
    assert pages.errors == []


LIBRARY_SCRIPT = """async () => {
    const { Roomcast } = await import('/roomcast.js');
    const codeOf = (promise) => promise.then(() => 'ok', (err) => err.code);
    const offline = new Roomcast({ autoConnect: false, queue: false });
    const small = new Roomcast({ autoConnect: false, maxQueue: 1 });
    const waiting = codeOf(small.request('ping', {}, { timeout: 300 }));
    const local = {
        refused: await codeOf(offline.request('ping')),
        full: await codeOf(small.request('ping')),
        timeout: await waiting,
    };
    const states = [];
    const client = new Roomcast({ name: 'lib', pingInterval: 1000, pingTimeout: 1000 });
    client.on('state', (s) => states.push(s));
    window.client = client;
    window.states = states;
    const room = client.room('chat:lib');
    const subscribed = await room.subscribe();
    const server = {
        invalid: await codeOf(client.request('subscribe', { room: 'bad room' })),
        unknown: await codeOf(client.request('nope')),
        denied: await codeOf(client.room('chat:lib').history({ limit: 5000 })),
        published: await room.publish({ n: 1 }),
    };
    const refusedStates = [];
    const refused = new Roomcast({ name: 'x'.repeat(65) });  // over the protocol's 64
    refused.on('state', (s) => refusedStates.push(s));
    const refusedJoin = await codeOf(refused.room('chat:lib').subscribe());
    return {
        local, server, subscribed, user: client.info.user,
        refused: { join: refusedJoin, last: refusedStates[refusedStates.length - 1] },
    };
}"""


def test_roomcast_js_requests_errors_queue_and_dead_connections(
    server_factory: ServerFactory, pages: Pages
) -> None:
    """The library's promises and their error codes; and a server that stops
    answering (SIGSTOP: the socket stays open, nothing comes back) is noticed by the
    client's own pings, left, and resumed from once the server runs again."""
    server = server_factory()
    page = pages.open(f"{server.http}/", "library")
    got = page.evaluate(LIBRARY_SCRIPT)
    assert got["local"] == {"refused": "disconnected", "full": "queue_full", "timeout": "timeout"}
    assert got["server"]["invalid"] == "room_invalid"
    assert got["server"]["unknown"] == "unknown_op"
    assert got["server"]["denied"] == "bad_request"  # limit over the protocol's 1000
    assert got["server"]["published"]["offset"] == 1
    assert got["subscribed"]["recovered"] is False
    assert got["user"] == "lib"
    # A connect the server refuses (here: a name over 64 characters) is not retried.
    assert got["refused"]["join"] == "closed"
    assert got["refused"]["last"]["state"] == "failed"
    assert got["refused"]["last"]["error"] == "bad_request"

    server.process.send_signal(signal.SIGSTOP)
    try:
        page.wait_for_function(
            "() => states.some(s => s.state === 'reconnecting' && s.reason === 'ping timeout')",
            timeout=15_000,
        )
        page.evaluate(  # not awaited here: it waits for the connection
            "() => { window.away = client.room('chat:lib').publish({ n: 2 }, { timeout: 20000 }); }"
        )
    finally:
        server.process.send_signal(signal.SIGCONT)
    page.wait_for_function("() => client.state === 'resumed'", timeout=20_000)
    assert page.evaluate("() => window.away")["offset"] == 2
    assert pages.errors == []


def test_the_chat_works_from_the_keyboard_alone_on_a_phone_sized_screen(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory()
    page = pages.open(f"{server.http}/chat", "phone")
    page.set_viewport_size({"width": 390, "height": 800})
    page.keyboard.type("ann")  # the name field has the focus on load
    page.keyboard.press("Tab")
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("chat:mobile")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the Join button
    wait_state(page, "connected")
    page.keyboard.type("typed, not clicked")  # the message field has the focus now
    page.keyboard.press("Enter")
    wait_texts(page, ["typed, not clicked"])
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    conversation = page.locator(".conversation").bounding_box()
    people = page.locator(".people").bounding_box()
    assert conversation is not None
    assert people is not None
    assert people["y"] >= conversation["y"] + conversation["height"]  # stacked, not squeezed
    assert pages.errors == []


def test_the_dashboard_reopens_its_stream_after_a_proxy_error(
    server_factory: ServerFactory, pages: Pages, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Through nginx with both replicas down, the stream's request gets a 502: the
    browser's EventSource gives up for good on a status other than 200, and
    FeedStream opens a new stream from the last id it saw once a replica is back."""
    require(nginx_binary() is not None, "nginx (apt-get install nginx-light)")
    shared = {"redis_url": redis_server.url, "redis_prefix": f"web{uuid.uuid4().hex[:8]}"}
    replicas = [server_factory(**shared), server_factory(**shared)]
    front = NginxServer(tmp_path / "nginx", [s.port for s in replicas]).start()
    try:
        room = "feed:proxy"
        page = pages.open(f"{front.http}/dashboard?rooms={room}", "dashboard")
        wait_state(page, "connected")
        for n in range(1, 4):
            publish(replicas[0], room, {"n": n})
        count_is = "n => +document.querySelector('[data-testid=feed]').dataset.count === n"
        wait_for(page, count_is, 3)

        for server in replicas:
            server.stop(signal.SIGTERM)
        page.wait_for_function(
            "() => window.roomcastFeed.state === 'reconnecting'"
            " && window.roomcastFeed._source.readyState === EventSource.CLOSED",
            timeout=20_000,
        )  # a 502 from nginx: the browser itself will not retry
        back = server_factory(listen_port=replicas[1].port, **shared)
        for n in range(4, 7):
            publish(back, room, {"n": n})
        wait_state(page, "resumed", timeout=30_000)
        wait_for(page, count_is, 6)
        assert feed_state(page, room) == {"offset": 6, "count": 6, "gaps": 0}
        assert " 502 " in front.log()
    finally:
        front.stop()
    assert pages.errors == []
