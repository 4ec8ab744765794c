"""Pages that feel finished: the chat says who you are and when history was lost;
the dashboard starts from the feed's history and draws a full-width chart with
axes. Headless Chromium against `roomcast serve` (browser.py); each test's pages
are photographed into artifacts/screenshots/ when it ends."""

from __future__ import annotations

import itertools
import math
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ..conftest import ServerProcess
from .browser import Pages, browser, pages, texts, wait_state
from .test_web import feed_state, join, publish, say, wait_for, wait_texts

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from ..redis_server import RedisServer

__all__ = ["browser", "pages"]  # the fixtures, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ServerFactory = Callable[..., ServerProcess]
ROOM = "chat:lobby"
LOST = "earlier messages are no longer available"
TIME = re.compile(r"^\d{1,2}:\d{2}:\d{2}")


def message_list(page: Page) -> list[str]:
    """The message list's lines, the history-lost line included, in order."""
    result: Any = page.eval_on_selector_all(
        '[data-testid="messages"] > li',
        "items => items.map(i => i.classList.contains('lost') ? i.textContent"
        " : i.querySelector('.text').textContent)",
    )
    return list(result)


def test_the_chat_says_who_you_are_and_that_a_restart_lost_the_history(
    server_factory: ServerFactory, pages: Pages
) -> None:
    """The embedded memory broker forgets the room when the server restarts: the
    page's resume is answered `recovered: false` in a new epoch."""
    server = server_factory()
    for n in (1, 2):
        publish(server, ROOM, {"text": f"before {n}"})
    page = join(pages, server, "ann")
    wait_state(page, "connected")
    wait_texts(page, ["before 1", "before 2"])
    assert page.get_by_test_id("whoami").text_content() == "you are ann"
    assert page.get_by_test_id("whoami").is_visible()
    assert page.get_by_test_id("history-lost").count() == 0  # a first join lost nothing

    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    wait_state(page, "reconnecting")
    server_factory(listen_port=server.port)
    wait_state(page, "connected", timeout=30_000)  # not "resumed": the gap is not filled
    page.get_by_test_id("history-lost").wait_for()
    say(page, "after the restart")
    wait_for(
        page,
        "n => document.querySelectorAll('[data-testid=messages] > li.message').length === n",
        1,
    )
    assert message_list(page) == [LOST, "after the restart"]
    assert page.get_by_test_id("whoami").text_content() == "you are ann"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert pages.errors == []


def test_the_chat_says_so_when_redis_loses_the_rooms_history_under_it(
    server_factory: ServerFactory, pages: Pages, own_redis: RedisServer
) -> None:
    """FLUSHALL under a live subscription: the next publish starts a new epoch, the
    server sends a `reset`, and the page marks the loss above the new messages."""
    server = server_factory(redis_url=own_redis.url)
    ann = join(pages, server, "ann")
    wait_state(ann, "connected")
    say(ann, "before the flush")
    wait_texts(ann, ["before the flush"])

    own_redis.cli("FLUSHALL")
    publish(server, ROOM, {"text": "after the flush"})
    ann.get_by_test_id("history-lost").wait_for()
    wait_texts(ann, ["after the flush"])
    assert message_list(ann) == [LOST, "after the flush"]
    assert ann.get_by_test_id("history-lost").text_content() == LOST

    # Someone who joins now lost nothing: no such line for them (dark, for the photo).
    bob = join(pages, server, "bob")
    bob.emulate_media(color_scheme="dark")
    wait_state(bob, "connected")
    wait_texts(bob, ["after the flush"])
    assert bob.get_by_test_id("history-lost").count() == 0
    assert bob.get_by_test_id("whoami").text_content() == "you are bob"
    assert texts(bob) == ["after the flush"]
    assert pages.errors == []


def chart_of(page: Page) -> dict[str, Any]:
    """The chart's geometry and labels, as the page has them."""
    found: Any = page.evaluate(
        """() => {
            const svg = document.querySelector('[data-testid=chart]');
            const card = svg.closest('[data-testid=feed]');
            const style = getComputedStyle(card);
            const inner = card.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight);
            const box = svg.getBoundingClientRect();
            const all = (sel) => [...svg.querySelectorAll(sel)];
            return {
                width: box.width,
                inner,
                card: card.getBoundingClientRect().width,
                window: document.documentElement.clientWidth,
                viewBox: svg.getAttribute('viewBox'),
                points: +svg.dataset.points,
                title: svg.querySelector('.axis-title').textContent,
                yValues: all('.y-axis text').map(t => +t.dataset.value),
                yLabels: all('.y-axis text').map(t => t.textContent),
                xLabels: all('.x-axis text').map(t => t.textContent),
                line: svg.querySelector('.line').getAttribute('points').split(' ').length,
                overflow: document.documentElement.scrollWidth > window.innerWidth,
            };
        }"""
    )
    return dict(found)


DRAWN_AT_ITS_WIDTH = """() => {
    const svg = document.querySelector('[data-testid=chart]');
    return svg.getAttribute('viewBox').split(' ')[2]
        === String(Math.round(svg.getBoundingClientRect().width));
}"""


def is_round(step: float) -> bool:
    """1, 2, 2.5 or 5 times a power of ten."""
    mantissa = step / 10 ** math.floor(math.log10(step))
    return any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 2.5, 5, 10))


def demo_feed(server: ServerProcess, *args: str) -> None:
    feed = subprocess.run(
        [sys.executable, "-m", "roomcast", "demo-feed", "--url", server.http, *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert feed.returncode == 0, feed.stderr


def test_the_dashboard_starts_from_the_feeds_history_with_a_full_width_chart_and_axes(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory()
    demo_feed(server, "--count", "12", "--interval", "0.1", "--seed", "7")
    page = pages.open(f"{server.http}/dashboard", "dashboard")
    wait_state(page, "connected")
    # Drawn from the history before any new message: nothing is published meanwhile.
    wait_for(page, "() => +document.querySelector('[data-testid=chart]').dataset.points === 12")
    assert feed_state(page, "feed:demo") == {"offset": 12, "count": 12, "gaps": 0}
    assert page.get_by_test_id("feed").get_attribute("data-history") == "12"
    assert page.get_by_test_id("hint").is_hidden()  # data flows

    chart = chart_of(page)
    assert chart["line"] == 12
    assert abs(chart["width"] - chart["inner"]) <= 1  # the card's whole width...
    assert chart["card"] >= chart["window"] - 40  # ...and the card the window's
    assert chart["viewBox"] == f"0 0 {round(chart['width'])} {chart['viewBox'].split()[3]}"
    assert chart["title"] == "cpu (%)"  # the first field, with its unit
    ys = chart["yValues"]
    assert len(ys) >= 3
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ys)}
    assert len(steps) == 1
    assert is_round(steps.pop())
    assert all(label.strip() for label in chart["yLabels"])
    assert chart["xLabels"]
    assert all(TIME.match(label) for label in chart["xLabels"]), chart["xLabels"]
    assert not chart["overflow"]

    units = page.eval_on_selector_all(
        '[data-testid="metric"]',
        "tiles => tiles.map(t => [t.dataset.field, t.querySelector('.unit').textContent])",
    )
    assert dict(units) == {"cpu": "%", "rps": "req/s", "p99_ms": "ms", "queue": ""}
    page.locator('[data-testid="metric"][data-field="p99_ms"]').click()
    wait_for(page, "() => document.querySelector('.axis-title').textContent === 'p99_ms (ms)'")
    page.locator('[data-testid="metric"][data-field="queue"]').click()
    wait_for(page, "() => document.querySelector('.axis-title').textContent === 'queue'")

    # Live events continue after the history, none twice, none missed.
    publish(server, "feed:demo", {"cpu": 50.0, "rps": 900, "p99_ms": 12.5, "queue": 3})
    wait_for(page, "() => +document.querySelector('[data-testid=chart]').dataset.points === 13")
    assert feed_state(page, "feed:demo") == {"offset": 13, "count": 13, "gaps": 0}

    # A narrower window, then a wider one: the chart is drawn again at each width.
    for width in (600, 1300):
        page.set_viewport_size({"width": width, "height": 800})
        wait_for(page, DRAWN_AT_ITS_WIDTH)
        resized = chart_of(page)
        assert (resized["width"] < chart["width"]) == (width < 1100)
        assert abs(resized["width"] - resized["inner"]) <= 1
        assert resized["card"] >= width - 40
        assert not resized["overflow"]
    assert pages.errors == []


def test_the_dashboard_hint_shows_until_numbers_flow(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory()
    page = pages.open(f"{server.http}/dashboard?rooms=feed:quiet", "empty dashboard")
    page.emulate_media(color_scheme="dark")
    wait_state(page, "connected")
    hint = page.get_by_test_id("hint")
    assert hint.is_visible()
    command = page.get_by_test_id("hint-command").text_content()
    assert command == f"roomcast demo-feed --url {server.http} --room feed:quiet"
    assert page.get_by_test_id("chart").get_attribute("data-points") == "0"

    demo_feed(server, "--room", "feed:quiet", "--count", "3", "--interval", "0.2", "--seed", "3")
    wait_for(page, "() => +document.querySelector('[data-testid=chart]').dataset.points === 3")
    hint.wait_for(state="hidden")
    assert feed_state(page, "feed:quiet") == {"offset": 3, "count": 3, "gaps": 0}

    # A dashboard of a room nobody feeds keeps its hint (and is photographed so).
    idle = pages.open(f"{server.http}/dashboard?rooms=feed:idle", "idle dashboard")
    wait_state(idle, "connected")
    assert idle.get_by_test_id("hint").is_visible()
    empty = idle.locator('[data-testid="chart"] .empty').text_content()
    assert empty == "waiting for the first event"
    assert pages.errors == []
