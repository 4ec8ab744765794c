"""roomcast.js publishes with idempotency keys, in real Chromium against real servers:
every publish carries a key; one whose reply a dropped connection took is sent again
once reconnected (the server answers the repeat with the first one's position), so the
room ends with exactly one event per publish; one without a key, one with resending
turned off, or one the next connection's user could not repeat fails instead; and a
publish waiting for a reconnect still times out and is bounded by ``maxQueue``.

The socket is dropped from the page side right after a publish frame is sent (a
``WebSocket`` subclass that closes itself): the server has the publish, the page never
reads its reply. A server is killed with SIGKILL, stopped first with SIGSTOP so that
publishes are certainly in flight when it dies."""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ..auth.keys import SECRET, hs256
from ..conftest import ServerProcess
from .browser import Pages, browser, pages

if TYPE_CHECKING:
    from ..redis_server import RedisServer

__all__ = ["browser", "pages"]  # the fixtures, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ServerFactory = Callable[..., ServerProcess]
UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"

# A WebSocket that records every frame the client sends (with its connection's number)
# and closes itself right after sending a publish while `window.dropNext` is set.
DROPPING = """
    window.sent = [];
    window.dropNext = false;
    let connections = 0;
    class Dropping extends WebSocket {
        constructor(url) { super(url); this.conn = ++connections; }
        send(text) {
            super.send(text);
            const frame = JSON.parse(text);
            sent.push({ conn: this.conn, ...frame });
            if (frame.op === 'publish' && window.dropNext) {
                window.dropNext = false;
                this.close(3000, 'dropped by the test');
            }
        }
    }
    const outcome = (promise) => promise.then(
        (result) => ({ result }),
        (err) => ({ error: err.code, key: err.idempotencyKey ?? null, message: err.message }),
    );
"""


def history(server: ServerProcess, room: str, **headers: str) -> list[dict[str, Any]]:
    reply = httpx.get(
        f"{server.http}/rooms/{room}/messages", params={"limit": 1000}, headers=headers, timeout=10
    )
    reply.raise_for_status()
    events: list[dict[str, Any]] = reply.json()["events"]
    return events


def publishes(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [frame for frame in sent if frame["op"] == "publish"]


ANONYMOUS_SCRIPT = (
    """async () => {
    const { Roomcast, newIdempotencyKey } = await import('/roomcast.js');
"""
    + DROPPING
    + """
    const client = new Roomcast({ name: 'ann', WebSocket: Dropping, minDelay: 20, maxDelay: 100 });
    const room = client.room('chat:retry');
    const got = {};
    got.plain = await outcome(room.publish('plain'));
    window.dropNext = true;
    got.resent = await outcome(room.publish('dropped, resent'));
    window.dropNext = true;
    got.noKey = await outcome(room.publish('dropped, no key', { idempotencyKey: false }));
    window.dropNext = true;
    got.noResend = await outcome(room.publish('dropped, not resent', { resend: false }));
    got.retried = await outcome(
        room.publish('dropped, not resent', { idempotencyKey: got.noResend.key }));
    got.own = await outcome(room.publish('own key', { idempotencyKey: 'order-42' }));
    got.ownAgain = await outcome(room.publish('own key, again', { idempotencyKey: 'order-42' }));
    got.bad = await outcome(room.publish('bad key', { idempotencyKey: 'a key' }));
    got.resentCount = client.resent;
    const keyless = new Roomcast({ name: 'bob', idempotencyKeys: false, WebSocket: Dropping });
    got.bare = await outcome(keyless.room('chat:retry').publish('no keys at all'));
    crypto.randomUUID = undefined;  // as on a page that is not a secure context
    got.fallback = newIdempotencyKey();
    delete crypto.randomUUID;
    got.user = client.info.user_id;
    got.sent = sent;
    return got;
}"""
)


def test_every_publish_carries_a_key_and_one_cut_off_by_a_drop_is_resent_once(
    server_factory: ServerFactory, pages: Pages
) -> None:
    """Anonymous: each connection has a new ``anon-`` user id, and the server keeps
    every anonymous client's keys in one scope, so the resend is known."""
    server = server_factory()
    page = pages.open(f"{server.http}/", "retry")
    got = page.evaluate(ANONYMOUS_SCRIPT)
    epoch = got["plain"]["result"]["epoch"]
    assert got["plain"] == {"result": {"epoch": epoch, "offset": 1}}
    # The server had the dropped publish: the resend is its duplicate, one event.
    assert got["resent"] == {"result": {"epoch": epoch, "offset": 2, "duplicate": True}}
    assert got["resentCount"] == 1
    assert got["user"].startswith("anon-")
    no_key = got["noKey"]
    assert (no_key["error"], no_key["key"]) == ("disconnected", None)
    # Resending turned off: it fails, with its key to send it again by hand.
    assert got["noResend"]["error"] == "disconnected"
    assert got["retried"] == {"result": {"epoch": epoch, "offset": 4, "duplicate": True}}
    assert got["own"] == {"result": {"epoch": epoch, "offset": 5}}
    assert got["ownAgain"] == {"result": {"epoch": epoch, "offset": 5, "duplicate": True}}
    assert got["bad"]["error"] == "bad_request"
    assert got["bare"] == {"result": {"epoch": epoch, "offset": 6}}
    assert len(got["fallback"]) == 32
    assert int(got["fallback"], 16) >= 0

    frames = publishes(got["sent"])
    by_data: dict[str, list[dict[str, Any]]] = {}
    for frame in frames:
        by_data.setdefault(frame["data"], []).append(frame)
    assert "bad key" not in by_data  # refused before anything was sent
    assert "idempotency_key" not in by_data["no keys at all"][0]
    assert "idempotency_key" not in by_data["dropped, no key"][0]
    resent = by_data["dropped, resent"]
    assert [f["conn"] for f in resent] == [1, 2]  # sent again on the next connection
    assert resent[0]["idempotency_key"] == resent[1]["idempotency_key"]
    assert [len(by_data[d]) for d in ("plain", "dropped, no key", "own key")] == [1, 1, 1]
    own = [f["idempotency_key"] for f in by_data["own key"] + by_data["own key, again"]]
    assert own == ["order-42", "order-42"]
    fresh = {by_data[d][0]["idempotency_key"] for d in ("plain", "dropped, resent")}
    assert len(fresh) == 2  # a new key for every publish
    assert all(re.match(UUID, key) for key in fresh)
    not_resent = by_data["dropped, not resent"]
    assert not_resent[0]["idempotency_key"] == got["noResend"]["key"]
    assert not_resent[1]["idempotency_key"] == got["noResend"]["key"]  # the retry by hand

    # One event per publish: nothing twice, nothing lost.
    assert [(e["offset"], e["data"]) for e in history(server, "chat:retry")] == [
        (1, "plain"),
        (2, "dropped, resent"),
        (3, "dropped, no key"),
        (4, "dropped, not resent"),
        (5, "own key"),
        (6, "no keys at all"),
    ]
    assert pages.errors == []


USER_SCRIPT = (
    """async (tokens) => {
    const { Roomcast } = await import('/roomcast.js');
"""
    + DROPPING
    + """
    let calls = 0;
    const token = () => tokens[Math.min(calls++, tokens.length - 1)];
    const client = new Roomcast({ token, WebSocket: Dropping, minDelay: 20, maxDelay: 100 });
    const room = client.room('chat:users');
    const got = {};
    got.one = await outcome(room.publish('one'));
    window.dropNext = true;
    got.two = await outcome(room.publish('two'));    // resent under the same user
    window.dropNext = true;
    got.three = await outcome(room.publish('three'));  // the next connection is bob's
    got.four = await outcome(room.publish('four'));
    got.resentCount = client.resent;
    got.user = client.info.user_id;
    got.sent = sent;
    return got;
}"""
)


def test_a_publish_is_resent_only_under_the_same_user(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory(auth="jwt", jwt_secret=SECRET)
    tokens = [
        hs256(sub=sub, exp=int(time.time()) + 600, rooms=["*"], publish=["*"])
        for sub in ("ann", "ann", "bob")
    ]
    page = pages.open(f"{server.http}/", "users")
    got = page.evaluate(USER_SCRIPT, tokens)
    epoch = got["one"]["result"]["epoch"]
    assert got["two"] == {"result": {"epoch": epoch, "offset": 2, "duplicate": True}}
    three = got["three"]
    assert three["error"] == "disconnected"
    assert "another user (ann -> bob)" in three["message"]
    assert three["key"] is not None
    assert got["four"] == {"result": {"epoch": epoch, "offset": 4}}
    assert (got["resentCount"], got["user"]) == (1, "bob")
    threes = [f for f in publishes(got["sent"]) if f["data"] == "three"]
    assert [f["conn"] for f in threes] == [2]  # never sent on bob's connection
    events = history(server, "chat:users", Authorization=f"Bearer {tokens[0]}")
    assert [(e["offset"], e["data"], e["sender"]) for e in events] == [
        (1, "one", "ann"),
        (2, "two", "ann"),
        (3, "three", "ann"),  # the first copy went out; no second one
        (4, "four", "bob"),
    ]
    assert pages.errors == []


STREAM_SCRIPT = """async ({ lanes, each }) => {
    const { Roomcast } = await import('/roomcast.js');
    const client = new Roomcast({ name: 'pump', minDelay: 50, maxDelay: 300,
                                  requestTimeout: 30000 });
    const room = client.room('chat:stream');
    window.client = client;
    window.outcomes = [];
    window.lanesDone = 0;
    for (let lane = 0; lane < lanes; lane++) {
        (async () => {
            for (let n = 0; n < each; n++) {
                const data = `${lane}/${n}`;
                try {
                    const r = await room.publish(data);
                    const { epoch, offset } = r;
                    outcomes.push({ data, epoch, offset, duplicate: Boolean(r.duplicate) });
                } catch (err) {
                    outcomes.push({ data, error: err.code });
                }
                await new Promise((resolve) => setTimeout(resolve, 20));  // still streaming
            }
            window.lanesDone += 1;
        })();
    }
}"""


def test_a_server_killed_mid_stream_leaves_exactly_one_event_per_publish(
    server_factory: ServerFactory, pages: Pages, redis_server: RedisServer
) -> None:
    """Three lanes of publishes stream into a server on Redis; it is stopped with
    publishes in flight, killed and restarted: every publish resolves, and the room
    holds each one exactly once."""
    settings = {"redis_url": redis_server.url, "redis_prefix": f"jsre{uuid.uuid4().hex[:8]}"}
    server = server_factory(**settings)
    page = pages.open(f"{server.http}/", "stream")
    lanes, each = 3, 60
    page.evaluate(STREAM_SCRIPT, {"lanes": lanes, "each": each})
    page.wait_for_function("() => outcomes.length >= 30")
    server.process.send_signal(signal.SIGSTOP)  # publishes pile up unanswered
    assert page.evaluate("lanesDone") == 0, "the stream ended before the server stopped"
    page.wait_for_function(f"() => client._pending.size === {lanes}")
    server.stop(signal.SIGKILL)
    page.wait_for_function("() => client.state === 'reconnecting'")
    server = server_factory(listen_port=server.port, **settings)
    page.wait_for_function(f"() => lanesDone === {lanes}", timeout=30_000)
    outcomes: list[dict[str, Any]] = page.evaluate("outcomes")
    assert [o for o in outcomes if "error" in o] == []
    assert page.evaluate("client.resent") >= lanes  # those in flight at the kill
    events = history(server, "chat:stream")
    published = [e["data"] for e in events]
    assert sorted(published) == sorted(f"{lane}/{n}" for lane in range(lanes) for n in range(each))
    assert len(published) == len(set(published))  # nothing twice
    at = {e["data"]: (e["epoch"], e["offset"]) for e in events}
    assert all(at[o["data"]] == (o["epoch"], o["offset"]) for o in outcomes)
    assert pages.errors == []


BOUND_SCRIPT = """async () => {
    const { Roomcast } = await import('/roomcast.js');
    const client = new Roomcast({ name: 'ann', maxQueue: 2, requestTimeout: 1500,
                                  minDelay: 50, maxDelay: 200, pingInterval: 60000 });
    window.client = client;
    window.room = client.room('chat:bound');
    window.outcome = (promise) => promise.then(
        (result) => ({ result }), (err) => ({ error: err.code }));
    return outcome(room.publish('first'));
}"""


def test_a_publish_waiting_for_a_reconnect_times_out_and_the_wait_is_bounded(
    server_factory: ServerFactory, pages: Pages
) -> None:
    server = server_factory()
    page = pages.open(f"{server.http}/", "bound")
    assert page.evaluate(BOUND_SCRIPT)["result"]["offset"] == 1
    server.process.send_signal(signal.SIGSTOP)
    page.evaluate("() => { window.late = outcome(room.publish('late')); }")
    page.wait_for_function("() => client._pending.size === 1")  # written, unanswered
    server.stop(signal.SIGKILL)
    page.wait_for_function("() => client.state === 'reconnecting'")
    got = page.evaluate(
        """async () => {
            const queued = outcome(room.publish('queued'));  // the late one + this: maxQueue
            const over = await outcome(room.publish('one too many'));
            return { over, queued: await queued, late: await late };
        }"""
    )
    assert got == {
        "over": {"error": "queue_full"},
        "queued": {"error": "timeout"},
        "late": {"error": "timeout"},  # waited for the reconnect within its own timeout
    }
    restarted = server_factory(listen_port=server.port)  # memory broker: a fresh room
    page.wait_for_function("() => client.state === 'connected' || client.state === 'resumed'")
    assert page.evaluate("outcome(room.publish('after'))")["result"]["offset"] == 1
    # What timed out was never sent to the new server.
    assert [e["data"] for e in history(restarted, "chat:bound")] == ["after"]
    assert page.evaluate("client.resent") == 0
    assert pages.errors == []
