"""Acceptance for the admin page (/admin) in headless Chromium against a `roomcast
serve` with ``auth=jwt`` and an API key: refused without the key, and with it a
room appears as clients subscribe, its message rate and presence change, and a
message published from the form (by keyboard) reaches the room's subscribers.
Screenshots: artifacts/screenshots/ (browser.py)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from roomcast.auth.tokens import issue_token

from ..auth.keys import SECRET
from ..conftest import ServerProcess
from .browser import Pages, browser, pages, wait_state

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = ["browser", "pages"]  # the fixtures, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ServerFactory = Callable[..., ServerProcess]
API_KEY = "admin-e2e-key"
ROOM = "chat:ops"


def token(sub: str, **extra: Any) -> str:
    return issue_token(SECRET, sub, ttl=600, rooms=["chat:*"], publish=["chat:*"], **extra)


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory(auth="jwt", jwt_secret=SECRET, api_keys=API_KEY)


class Subscriber:
    """A plain WebSocket client of the room, in a thread: what it receives is kept."""

    def __init__(self, server: ServerProcess, user: str, room: str = ROOM) -> None:
        self.stack = contextlib.ExitStack()
        self.ws: ClientConnection = self.stack.enter_context(connect(server.ws, open_timeout=10))
        self.frames: list[dict[str, Any]] = []
        self.ws.send(json.dumps({"op": "connect", "id": 1, "token": token(user)}))
        self.ws.send(json.dumps({"op": "subscribe", "id": 2, "room": room}))
        self.subscribed = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.subscribed.wait(10), self.frames

    def _read(self) -> None:
        try:
            for raw in self.ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                if frame.get("id") == 2 and frame.get("ok"):
                    self.subscribed.set()
        except Exception:  # closed by the test
            pass

    def messages(self) -> list[Any]:
        return [f["data"] for f in list(self.frames) if f.get("type") == "message"]

    def close(self) -> None:
        self.stack.close()
        self.thread.join(5)


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    opened: list[Subscriber] = []
    yield opened
    for sub in opened:
        sub.close()


def sign_in(page: Page, credential: str) -> None:
    box = page.get_by_test_id("key-input")
    box.fill(credential)
    box.press("Enter")


def wait_row(page: Page, room: str, condition: str) -> None:
    """Until the rooms table's row of ``room`` meets ``condition`` (JS, given ``row``)."""
    page.wait_for_function(
        f"""room => {{
            const row = document.querySelector(`[data-testid="rooms"] tr[data-room="${{room}}"]`);
            return row !== null && ({condition});
        }}""",
        arg=room,
    )


def cell(page: Page, room: str, field: str) -> str:
    selector = f'[data-testid="rooms"] tr[data-room="{room}"] [data-field="{field}"]'
    return page.locator(selector).inner_text()


def test_without_the_key_the_page_is_refused_and_says_what_it_needs(
    server: ServerProcess, pages: Pages
) -> None:
    assert httpx.get(f"{server.http}/admin/overview", timeout=10).status_code == 401
    page = pages.open(f"{server.http}/admin", "admin")
    error = page.get_by_test_id("signin-error")
    error.wait_for()
    assert "needs an API key or an admin token" in error.inner_text()
    assert page.get_by_test_id("overview").is_hidden()
    assert page.evaluate("document.activeElement.dataset.testid") == "key-input"

    sign_in(page, "not-the-key")
    page.wait_for_function(
        """() => document.querySelector('[data-testid="signin-error"]').textContent
            .includes('was refused (401')"""
    )
    sign_in(page, token("ann"))  # a valid token, but not an administrator's
    page.wait_for_function(
        """() => document.querySelector('[data-testid="signin-error"]').textContent
            .includes("not an administrator's (403")"""
    )
    assert page.get_by_test_id("overview").is_hidden()

    sign_in(page, token("ops", admin=True))  # a token with the admin claim will do
    page.get_by_test_id("overview").wait_for()
    wait_state(page, "connected")  # its roomcast.js connection took the token too
    page.get_by_test_id("signout").click()
    page.get_by_test_id("signin-form").wait_for()
    page.reload()  # signed out: the key is gone from the tab's storage
    page.get_by_test_id("signin-error").wait_for()
    assert page.get_by_test_id("overview").is_hidden()
    assert pages.errors == []


def test_with_the_key_a_room_appears_its_rate_and_presence_change_and_the_form_publishes(
    server: ServerProcess, pages: Pages, subscribers: list[Subscriber]
) -> None:
    page = pages.open(f"{server.http}/admin", "admin")
    sign_in(page, API_KEY)
    page.get_by_test_id("overview").wait_for()
    wait_state(page, "connected")
    assert page.locator('[data-testid="rooms"] tr.empty').count() == 1
    assert page.get_by_test_id("health-broker").get_attribute("data-ok") == "true"

    subscribers.append(Subscriber(server, "ann"))  # a room appears
    wait_row(page, ROOM, "row.dataset.subscribers === '1'")
    assert cell(page, ROOM, "presence") == "ann"

    subscribers.append(Subscriber(server, "bob"))  # presence changes
    wait_row(page, ROOM, "row.dataset.subscribers === '2'")
    page.wait_for_function(
        """room => document.querySelector(
            `tr[data-room="${room}"] [data-field="presence"]`).textContent === 'ann, bob'""",
        arg=ROOM,
    )
    # Connections: ann, bob and the page's own roomcast.js connection, charted.
    page.wait_for_function(
        """() => document.querySelector('[data-testid="chart-connections"]')
            .dataset.value === '3'"""
    )

    with httpx.Client(timeout=10) as http:  # its rate rises
        for n in range(30):
            reply = http.post(
                f"{server.http}/rooms/{ROOM}/messages",
                json={"data": {"n": n}},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            assert reply.status_code == 201
            time.sleep(0.02)
    wait_row(page, ROOM, "Number(row.dataset.rate) > 0")
    assert cell(page, ROOM, "rate") != "—"
    wait_row(page, ROOM, "row.querySelector('[data-field=offset]').textContent === '30'")

    # Publish from the form, by keyboard only: signing in left the focus on the rooms'
    # heading; Tab round to the "Publish" link of the header, follow it, Tab into the
    # form, type, Enter.
    assert page.evaluate("document.activeElement.id") == "rooms-title"
    link = '.admin-nav a[href="#publish-title"]'
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("link => document.activeElement.matches(link)", link):
            break
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "publish-title"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.testid") == "publish-room"
    page.keyboard.type(ROOM)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.testid") == "publish-data"
    page.keyboard.type("hello from the admin page")
    page.keyboard.press("Enter")
    result = page.get_by_test_id("publish-result")
    page.wait_for_function(
        """() => document.querySelector('[data-testid="publish-result"]')
            .dataset.state === 'ok'"""
    )
    assert result.inner_text() == f"Published to {ROOM} at offset 31."
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        {"text": "hello from the admin page"} not in sub.messages() for sub in subscribers
    ):
        time.sleep(0.05)
    for sub in subscribers:
        assert sub.messages()[-1] == {"text": "hello from the admin page"}
        assert len(sub.messages()) == 31

    subscribers.pop().close()  # bob leaves: presence changes back
    wait_row(page, ROOM, "row.dataset.subscribers === '1'")
    page.wait_for_function(
        """room => document.querySelector(
            `tr[data-room="${room}"] [data-field="presence"]`).textContent === 'ann'""",
        arg=ROOM,
    )

    # Watching the room subscribes the page's roomcast.js connection: its join and the
    # room's next message show in the list as they happen.
    page.locator(f'tr[data-room="{ROOM}"] [data-testid="watch"]').click()
    tail = page.get_by_test_id("tail")
    tail.locator('li[data-kind="join"]').wait_for()
    wait_row(page, ROOM, "row.dataset.subscribers === '2'")
    httpx.post(
        f"{server.http}/rooms/{ROOM}/messages",
        json={"data": {"text": "watched"}},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    ).raise_for_status()
    message = tail.locator('li[data-kind="message"]')
    message.wait_for()
    assert message.locator(".tail-what").inner_text() == '{"text":"watched"}'
    assert message.locator(".tail-who").inner_text() == "api"
    assert pages.errors == []
