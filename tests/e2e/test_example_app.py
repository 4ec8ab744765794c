"""The example app (examples/fastapi_app/), run as its README says
(``python -m examples.fastapi_app``, a real uvicorn process on roomcast's fast
path) and used in real headless Chromium: users log in with the app's own form,
chat through roomcast mounted under ``/rt``, the app's ``on_publish`` stamps and
refuses messages, its POST handler announces with ``rc.publish``, its user table
decides who may use the staff room, and logging out shuts the door on the
socket."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from roomcast.testing import free_port

from ..conftest import ROOT, ServerProcess, launch, server_env
from .browser import TIMEOUT_MS, Pages, browser, pages, wait_state

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

__all__ = ["browser", "pages"]  # the fixtures, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

LOBBY, STAFF = "chat:lobby", "chat:staff"


@pytest.fixture
def example(tmp_path: Path) -> Iterator[ServerProcess]:
    """The example app on a free port, with its own SQLite file; killed at the end."""
    port = free_port()
    env = server_env(database_url=f"sqlite+aiosqlite:///{tmp_path}/example.db", log_level="info")
    app = launch(
        [sys.executable, "-m", "examples.fastapi_app", "--port", str(port)],
        port=port,
        env=env,
        cwd=ROOT,  # as the README runs it
        log_path=tmp_path / f"example-{port}.log",
        ready="/",
        timeout=30,
    )
    try:
        yield app
    finally:
        app.stop(signal.SIGKILL)


def log_in(pages: Pages, app: ServerProcess, user: str, sockets: list[str] | None = None) -> Page:
    """A browser of its own at ``/``: logs in with the form (the demo password is
    the user's name) and waits for the chat page's socket (its URL to ``sockets``)."""
    page = pages.open(f"{app.http}/", user)
    if sockets is not None:
        page.on("websocket", lambda ws: sockets.append(ws.url))
    page.get_by_test_id("login-name").fill(user)
    page.get_by_test_id("login-password").fill(user)
    page.get_by_test_id("login-submit").click()
    wait_state(page, "connected")
    return page


def room_list(page: Page, room: str = LOBBY) -> Locator:
    return page.locator(f'ul.messages[data-room="{room}"]')


def texts(page: Page, room: str = LOBBY, kind: str = "message") -> list[str]:
    return room_list(page, room).locator(f"li.{kind} .text").all_text_contents()


def wait_texts(page: Page, expected: list[str], room: str = LOBBY, kind: str = "message") -> None:
    """Until ``room``'s list shows exactly ``expected`` (a hard deadline)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while (shown := texts(page, room, kind)) != expected:
        assert time.monotonic() < deadline, f"{page} shows {shown}, not {expected}"
        page.wait_for_timeout(50)


def say(page: Page, text: str) -> None:
    page.get_by_test_id("message-input").fill(text)
    page.get_by_test_id("message-input").press("Enter")


def session_cookie(page: Page) -> dict[str, str]:
    """The ``Cookie`` header of ``page``'s session, for clients outside the browser."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return {"Cookie": f"session={cookies['session']}"}


def open_socket(app: ServerProcess, headers: dict[str, str]) -> ClientConnection:
    url = f"ws://127.0.0.1:{app.port}/rt/ws"
    return connect(url, additional_headers=headers, open_timeout=5, close_timeout=1)


def ws_refusal(app: ServerProcess, headers: dict[str, str]) -> int:
    """The HTTP status that refuses a WebSocket handshake to /rt/ws."""
    with pytest.raises(InvalidStatus) as refused:
        open_socket(app, headers).close()
    return refused.value.response.status_code


def test_two_users_log_in_and_chat_in_the_lobby_through_the_mounted_socket(
    example: ServerProcess, pages: Pages
) -> None:
    sockets: list[str] = []
    ann = log_in(pages, example, "ann", sockets)
    assert sockets == [f"ws://127.0.0.1:{example.port}/rt/ws"]  # /rt/roomcast.js's default
    bob = log_in(pages, example, "bob")
    assert ann.get_by_test_id("me").text_content() == "Ann Staff (staff)"
    assert bob.get_by_test_id("me").text_content() == "Bob Member (member)"

    say(ann, "hello from ann")
    for page in (ann, bob):
        wait_texts(page, ["hello from ann"])
    say(bob, "  hi   ann,\tnice   to see you ")  # the hook tidies the whitespace
    for page in (ann, bob):
        wait_texts(page, ["hello from ann", "hi ann, nice to see you"])
        senders = room_list(page).locator("li.message .sender").all_text_contents()
        assert senders == ["Ann Staff", "Bob Member"]  # display names from the user table
        roles = room_list(page).locator("li.message .role").all_text_contents()
        assert roles == ["staff"]  # the hook's role field: ann's message only

    # What the hook made of the messages, read back over the mounted REST route.
    history = httpx.get(
        f"{example.http}/rt/rooms/{LOBBY}/messages", headers=session_cookie(bob), timeout=10
    )
    assert history.status_code == 200
    data: list[dict[str, Any]] = [event["data"] for event in history.json()["events"]]
    assert [(d["text"], d["role"]) for d in data] == [
        ("hello from ann", "staff"),
        ("hi ann, nice to see you", "member"),
    ]
    assert all(d["at"].endswith("+00:00") for d in data)  # stamped by the server
    assert "direct frame writes" in example.log()  # roomcast.run: the fast path
    assert pages.errors == []
    assert [line for line in pages.console if ": error:" in line] == []  # CSP violations too


def test_a_message_with_a_banned_word_is_refused_shown_as_refused_and_reaches_nobody(
    example: ServerProcess, pages: Pages
) -> None:
    ann, bob = log_in(pages, example, "ann"), log_in(pages, example, "bob")
    say(bob, "cheap SPAM here")
    refused = room_list(bob).locator("li.refused")
    refused.wait_for()
    assert "mind your language" in str(refused.text_content())
    assert "cheap SPAM here" in str(refused.text_content())
    say(bob, "sorry, all good")
    for page in (ann, bob):
        wait_texts(page, ["sorry, all good"])  # the refused one never arrived
    assert room_list(bob).locator("li.refused").count() == 1  # and bob still sees why
    assert room_list(ann).locator("li.refused").count() == 0
    assert pages.errors == []


def test_a_staff_announcement_from_the_post_handler_reaches_the_lobby_and_members_may_not_post(
    example: ServerProcess, pages: Pages
) -> None:
    ann, bob = log_in(pages, example, "ann"), log_in(pages, example, "bob")
    assert bob.get_by_test_id("announce-form").is_hidden()
    ann.get_by_test_id("announce-input").fill("Release at 5pm")
    ann.get_by_test_id("announce-input").press("Enter")
    for page in (ann, bob):
        wait_texts(page, ["Release at 5pm"], kind="announcement")
        sender = room_list(page).locator("li.announcement .sender").text_content()
        assert sender == "Announcement from Ann Staff"

    with httpx.Client(base_url=example.http, timeout=10) as http:
        body = {"text": "members cannot announce"}
        by_bob = http.post("/announce", json=body, headers=session_cookie(bob))
        assert by_bob.status_code == 403
        assert http.post("/announce", json=body).status_code == 401
    assert pages.errors == []


STAFF_ROOM_SCRIPT = """async () => {
    const { Roomcast } = await import('/rt/roomcast.js');
    const client = new Roomcast({ maxRetries: 0 });
    const staff = client.room('chat:staff');
    const outcome = {};
    try { await staff.subscribe(); outcome.subscribe = 'ok'; }
    catch (err) { outcome.subscribe = err.code; }
    try { await staff.publish({ text: 'let me in' }); outcome.publish = 'ok'; }
    catch (err) { outcome.publish = err.code; }
    client.close();
    return outcome;
}"""


def test_only_staff_are_offered_and_may_use_the_staff_room(
    example: ServerProcess, pages: Pages
) -> None:
    ann, bob = log_in(pages, example, "ann"), log_in(pages, example, "bob")
    assert ann.locator("nav.rooms button").all_text_contents() == ["Lobby", "Staff room"]
    assert bob.locator("nav.rooms button").all_text_contents() == ["Lobby"]

    # bob's own browser, his session cookie, asking for the staff room anyway.
    outcome: Any = bob.evaluate(STAFF_ROOM_SCRIPT)
    assert outcome == {"subscribe": "forbidden", "publish": "forbidden"}

    ann.locator('nav.rooms button[data-room="chat:staff"]').click()
    say(ann, "staff only")
    wait_texts(ann, ["staff only"], room=STAFF)
    assert texts(ann) == []  # not in the lobby
    assert room_list(bob, STAFF).count() == 0
    assert pages.errors == []


def test_after_logout_every_tab_shows_the_login_form_and_the_socket_is_refused(
    example: ServerProcess, pages: Pages
) -> None:
    wrong = pages.open(f"{example.http}/", "wrong password")
    wrong.get_by_test_id("login-name").fill("ann")
    wrong.get_by_test_id("login-password").fill("not ann's")
    wrong.get_by_test_id("login-submit").click()
    wrong.get_by_test_id("login-error").wait_for()

    ann = log_in(pages, example, "ann")
    cookie = session_cookie(ann)
    other_tab = ann.context.new_page()  # the same browser, so the same session
    other_tab.set_default_timeout(TIMEOUT_MS)
    pages.opened.append(("ann other tab", other_tab))
    other_tab.goto(f"{example.http}/")
    wait_state(other_tab, "connected")
    assert ws_refusal(example, {}) == 401  # no cookie: the app's require_session
    with open_socket(example, cookie) as logged_in:
        assert logged_in.protocol.state.name == "OPEN"

    ann.get_by_test_id("logout").click()
    ann.get_by_test_id("login-form").wait_for()
    # The logout handler's rc.disconnect closed the other tab's socket (3503): it reloads.
    other_tab.get_by_test_id("login-form").wait_for()
    assert ann.context.cookies() == []
    assert ws_refusal(example, cookie) == 401  # the old session is gone
    assert ws_refusal(example, {}) == 401
    stream = httpx.get(f"{example.http}/rt/events?room={LOBBY}", headers=cookie, timeout=10)
    assert stream.status_code == 401
    assert pages.errors == []
