"""roomcast.js and the chat page when the server removes a client: the
``unsubscribed`` event (the application called ``rc.unsubscribe``) and the close
code 3503 (``rc.disconnect``). What is under test is the browser library, so the
server is a stub (stub_server.py, a real uvicorn process serving the real pages
and library) that sends exactly these frames when a test asks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from roomcast.protocol.codes import should_reconnect

from .apps import AppFactory, app_factory
from .browser import Pages, browser, pages, wait_state

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from ..conftest import ServerProcess

__all__ = ["app_factory", "browser", "pages"]  # the fixtures, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

STUB = "tests.e2e.stub_server:app"
APPLICATION_DISCONNECT = 3503


def stub(app_factory: AppFactory) -> ServerProcess:
    return app_factory(STUB, "/stub/log")


def control(server: ServerProcess, action: str, **kw: Any) -> Any:
    """POST to one of the stub's control routes: ``send``, ``close``, ``hold``."""
    reply = httpx.post(f"{server.http}/stub/{action}", timeout=10, **kw)
    reply.raise_for_status()
    return reply.json()


def received(server: ServerProcess, op: str) -> list[dict[str, Any]]:
    """The frames of ``op`` the stub received, in order, each with its ``conn``."""
    reply = httpx.get(f"{server.http}/stub/log", timeout=10)
    reply.raise_for_status()
    return [frame for frame in reply.json() if frame.get("op") == op]


def removed(room: str) -> dict[str, str]:
    return {"type": "unsubscribed", "room": room, "reason": "server"}


def wait_until(page: Page, script: str, arg: Any = None) -> None:
    page.wait_for_function(script, arg=arg)


SETUP_SCRIPT = """async () => {
    const { Roomcast } = await import('/roomcast.js');
    const client = new Roomcast({ name: 'ann', minDelay: 50, maxDelay: 100, requestTimeout: 5000 });
    const events = [];
    const states = [];  // every state it passed through, however briefly
    client.on('state', (s) => states.push(s.state));
    const rooms = {};
    for (const name of ['chat:gone', 'chat:kept', 'chat:held']) {
        const room = client.room(name);
        room.on('unsubscribed', (notice) => events.push(notice));
        room.on('error', (err) => events.push({ error: err.code, room: name }));
        rooms[name] = room;
    }
    await rooms['chat:gone'].subscribe();
    await rooms['chat:kept'].subscribe();
    // The stub leaves this one unanswered: its first subscribe is still pending.
    window.held = rooms['chat:held'].subscribe().then(() => 'ok', (err) => err.code);
    Object.assign(window, { client, events, rooms, states });
}"""


def test_an_unsubscribed_event_makes_roomcast_js_forget_the_room_and_settle_its_subscribe(
    app_factory: AppFactory, pages: Pages
) -> None:
    server = stub(app_factory)
    control(server, "hold", params={"room": "chat:held"})
    page = pages.open(f"{server.http}/", "library")
    page.evaluate(SETUP_SCRIPT)
    wait_until(page, "() => client.state === 'connected'")
    assert [f["room"] for f in received(server, "subscribe")] == [
        "chat:gone",
        "chat:kept",
        "chat:held",
    ]

    control(server, "send", json=removed("chat:gone"))
    control(server, "send", json=removed("chat:held"))
    wait_until(page, "() => events.length === 2")
    assert page.evaluate("events") == [removed("chat:gone"), removed("chat:held")]
    assert page.evaluate("window.held") == "unsubscribed"  # the pending subscribe settled
    wanted = "Object.fromEntries(Object.entries(rooms).map(([n, r]) => [n, r.wanted]))"
    assert page.evaluate(wanted) == {"chat:gone": False, "chat:kept": True, "chat:held": False}

    # After a reconnect only the room still wanted is subscribed again. The client is
    # `reconnecting` for its 50-100 ms backoff only: look for it in the states it
    # passed through (a poll of client.state may miss it on a loaded machine).
    page.evaluate("states.length = 0")
    control(server, "close", params={"code": 3000, "reason": "server shutdown"})
    wait_until(page, "() => states.includes('reconnecting')")
    wait_until(page, "() => client.state === 'connected' && rooms['chat:kept'].subscribed")
    again = [f for f in received(server, "subscribe") if f["conn"] == 2]
    assert [f["room"] for f in again] == ["chat:kept"]
    assert page.evaluate("client.request('ping').then(() => 'ok')") == "ok"
    assert [f["room"] for f in received(server, "subscribe") if f["conn"] == 2] == ["chat:kept"]

    # The application may let the user back in: a new subscribe asks the server again.
    assert page.evaluate("rooms['chat:gone'].subscribe().then((r) => r.room)") == "chat:gone"
    assert page.evaluate("events.length") == 2  # no error was emitted on the way
    assert pages.errors == []


def test_roomcast_js_gives_up_on_3503_disconnected_by_the_application(
    app_factory: AppFactory, pages: Pages
) -> None:
    assert should_reconnect(APPLICATION_DISCONNECT) is False  # the server's rule agrees
    server = stub(app_factory)
    page = pages.open(f"{server.http}/", "library")
    rule = page.evaluate(
        "async (code) => (await import('/roomcast.js')).shouldReconnect(code)",
        APPLICATION_DISCONNECT,
    )
    assert rule is False
    page.evaluate(
        """async () => {
            const { Roomcast } = await import('/roomcast.js');
            window.states = [];
            window.client = new Roomcast({ name: 'ann', minDelay: 50, maxDelay: 100 });
            client.on('state', (s) => states.push(s));
            await client.room('chat:lobby').subscribe();
        }"""
    )
    control(server, "close", params={"code": APPLICATION_DISCONNECT, "reason": "removed"})
    wait_until(page, "() => client.state === 'failed'")
    last = page.evaluate("states[states.length - 1]")
    assert last == {"state": "failed", "code": APPLICATION_DISCONNECT, "reason": "removed"}
    page.wait_for_timeout(500)  # ten times the backoff: no second connection came
    assert {f["conn"] for f in received(server, "connect")} == {1}
    assert pages.errors == []


def test_the_chat_page_says_when_the_user_was_removed_from_the_room(
    app_factory: AppFactory, pages: Pages
) -> None:
    server = stub(app_factory)
    page = pages.open(f"{server.http}/chat?name=ann&room=chat:lobby", "chat")
    page.get_by_test_id("join").click()
    wait_state(page, "connected")
    notice = page.get_by_test_id("room-notice")
    assert notice.is_hidden()

    control(server, "send", json=removed("chat:lobby"))
    notice.wait_for(state="visible")
    assert notice.text_content() == "you were removed from this room"
    assert page.get_by_test_id("message-input").is_disabled()
    assert page.get_by_test_id("send").is_disabled()

    control(server, "close", params={"code": APPLICATION_DISCONNECT, "reason": "removed"})
    wait_state(page, "failed")
    assert page.get_by_test_id("status").text_content() == "gave up: removed (3503)"
    assert pages.errors == []
