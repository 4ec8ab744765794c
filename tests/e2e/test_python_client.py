"""roomcast.client against real ``roomcast serve`` processes (memory broker and Redis):
requests, pipelining, resume after a SIGKILL, close codes, token refresh, a silent
server, the pending bound, and which publishes are resent after a drop.

A server is made silent with SIGSTOP (the socket stays open, nothing answers) and
killed with SIGKILL; a restarted one listens on the same port. The duplicate test
uses the protocol stub (stub_server.py), the one server that sends a position twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from roomcast.client import (
    ClientOptions,
    ConnectionFailed,
    ConnectionState,
    Event,
    Message,
    PublishResult,
    PublishUnconfirmed,
    QueueFull,
    Recovered,
    RequestRefused,
    RequestTimeout,
    Reset,
    StateChange,
    Subscription,
    Unsubscribed,
    connect,
)
from roomcast.protocol.codes import ErrorCode

from ..conftest import ServerProcess
from ..redis_server import RedisServer
from .apps import AppFactory, app_factory
from .python_client_kit import API_KEY, JWT, admin, redis_settings, token, wait_for

__all__ = ["app_factory"]  # a fixture, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ServerFactory = Callable[..., ServerProcess]

FAST = ClientOptions(min_delay=0.05, max_delay=0.3, request_timeout=30, open_timeout=2)


async def messages(sub: Subscription, count: int, timeout: float = 20) -> list[Message]:
    """The next ``count`` messages (other events are skipped)."""
    found: list[Message] = []
    async with asyncio.timeout(timeout):
        async for event in sub:
            if isinstance(event, Message):
                found.append(event)
                if len(found) == count:
                    break
    return found


async def events_until(
    sub: Subscription, done: Callable[[Event], bool], timeout: float = 30
) -> list[Event]:
    """Every event up to and including the first for which ``done`` is true."""
    found: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in sub:
            found.append(event)
            if done(event):
                break
    return found


def freeze(server: ServerProcess, sig: int = signal.SIGSTOP) -> None:
    os.killpg(server.process.pid, sig)


@pytest.fixture(params=["memory", "redis"])
def broker(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "memory":
        return {}
    return redis_settings(request.getfixturevalue("redis_server"))


# -- requests -----------------------------------------------------------------------------


async def test_subscribe_publish_history_and_presence_on_each_broker(
    server_factory: ServerFactory, broker: dict[str, str]
) -> None:
    server = server_factory(**broker)
    async with connect(server.ws, name="ann") as ann, connect(server.ws, name="bob") as bob:
        sub = await ann.subscribe("chat:py")
        assert sub.result is not None
        assert (sub.result.offset, sub.result.recovered) == (0, False)
        published = [await bob.publish("chat:py", {"n": n}) for n in range(3)]
        assert [p.offset for p in published] == [1, 2, 3]
        assert not any(p.duplicate for p in published)
        got = await messages(sub, 3)
        assert [(m.data, m.sender, m.position) for m in got] == [
            ({"n": n}, "bob", p.position) for n, p in enumerate(published)
        ]
        page = await bob.history("chat:py", limit=2)
        assert [m.data for m in page.events] == [{"n": 1}, {"n": 2}]
        assert page.more
        older = await bob.history("chat:py", before=page.events[0].offset)
        assert [m.data for m in older.events] == [{"n": 0}]
        assert [m.user for m in await bob.presence("chat:py")] == ["ann"]
        with pytest.raises(RequestRefused) as refused:
            await bob.publish("chat:py", "x" * 70_000)
        assert refused.value.code is ErrorCode.TOO_LARGE
        await ann.unsubscribe("chat:py")
        assert not sub.active
        assert await bob.presence("chat:py") == []
        assert "chat:py" not in ann.subscriptions


async def test_publishes_are_pipelined_and_answered_in_call_order(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    async with connect(server.ws, name="burst") as rc:
        sub = await rc.subscribe("chat:burst")
        results = await asyncio.gather(*(rc.publish("chat:burst", n) for n in range(200)))
        assert [r.offset for r in results] == list(range(1, 201))
        assert [m.data for m in await messages(sub, 200)] == list(range(200))


async def test_a_refused_subscribe_raises_and_the_connection_stays(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(**JWT)
    async with connect(server.ws, token=token("una", rooms=["chat:*"])) as rc:
        with pytest.raises(RequestRefused) as refused:
            await rc.subscribe("dm:secret")
        assert refused.value.code is ErrorCode.FORBIDDEN
        assert "dm:secret" not in rc.subscriptions
        assert await rc.ping() > 0
        assert rc.state is ConnectionState.CONNECTED


# -- resume -------------------------------------------------------------------------------


async def test_after_a_sigkill_every_acknowledged_message_arrives_once_or_is_covered_by_a_reset(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    """The reader's server is killed while another server takes publishes into the same
    Redis; restarted, the reader resumes from its last position."""
    settings = redis_settings(redis_server)
    a = server_factory(**settings)
    b = server_factory(**settings)
    states: list[StateChange] = []
    room = "chat:kill"
    async with (
        connect(a.ws, name="reader", on_state=states.append, options=FAST) as reader,
        connect(b.ws, name="writer", options=FAST) as writer,
    ):
        sub = await reader.subscribe(room)
        acked: list[PublishResult] = []

        async def pump() -> None:
            for n in range(240):
                acked.append(await writer.publish(room, n))
                await asyncio.sleep(0.004)

        pumping = asyncio.create_task(pump())
        await wait_for(lambda: len(acked) >= 40, "40 publishes")
        a.stop(signal.SIGKILL)
        await wait_for(lambda: len(acked) >= 120, "publishes while the reader is away")
        server_factory(listen_port=a.port, **settings)
        await pumping
        last = acked[-1].offset
        events = await events_until(sub, lambda e: isinstance(e, Message) and e.offset >= last)
    received = [m.position for m in events if isinstance(m, Message)]
    resets = [e for e in events if isinstance(e, Reset)]
    assert len(received) == len(set(received))  # nothing twice
    for ack in acked:
        covered = any(r.epoch != ack.epoch or r.offset >= ack.offset for r in resets)
        assert ack.position in received or covered, ack
    # Redis kept the history, so this resume is a full recovery, in order.
    assert [e for e in events if isinstance(e, Recovered)] != []
    assert resets == []
    assert [p.offset for p in received] == list(range(1, last + 1))
    assert ConnectionState.RESUMED in [s.state for s in states]


async def test_a_reconnect_code_from_the_application_reconnects_and_resumes(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(api_keys=API_KEY)
    states: list[StateChange] = []
    async with connect(server.ws, name="ray", on_state=states.append, options=FAST) as rc:
        sub = await rc.subscribe("chat:again")
        await rc.publish("chat:again", 1)
        first = rc.session
        assert first is not None
        await admin(server, "POST", f"/users/{first.user_id}/disconnect", json={"code": 3000})
        events = await events_until(sub, lambda e: isinstance(e, Recovered))
        assert rc.session is not None
        assert rc.session.conn != first.conn
        await rc.publish("chat:again", 2)
        assert [m.data for m in await messages(sub, 1)] == [2]
    assert [m.data for m in events if isinstance(m, Message)] == [1]
    assert (3000, ConnectionState.RECONNECTING) in [(s.code, s.state) for s in states]


# -- close codes that stop ------------------------------------------------------------------


async def test_a_bad_token_stops_at_3500_without_a_reconnect(server_factory: ServerFactory) -> None:
    server = server_factory(**JWT)
    states: list[StateChange] = []
    with pytest.raises(ConnectionFailed) as failed:
        async with connect(server.ws, token="not-a-token", on_state=states.append, options=FAST):
            pass
    assert failed.value.close_code == 3500
    assert [s.state for s in states] == [
        ConnectionState.CONNECTING,
        ConnectionState.FAILED,
        ConnectionState.CLOSED,
    ]


async def test_3503_from_the_application_ends_subscriptions_and_the_client_stays_stopped(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(api_keys=API_KEY)
    states: list[StateChange] = []
    async with connect(server.ws, name="sid", on_state=states.append, options=FAST) as rc:
        sub = await rc.subscribe("chat:bye")
        assert rc.session is not None
        await admin(server, "POST", f"/users/{rc.session.user_id}/disconnect", json={})
        with pytest.raises(ConnectionFailed) as failed:
            await events_until(sub, lambda e: False)
        assert failed.value.close_code == 3503
        assert rc.state is ConnectionState.FAILED
        with pytest.raises(ConnectionFailed):
            await rc.publish("chat:bye", 1)
    assert ConnectionState.RECONNECTING not in [s.state for s in states]


async def test_a_room_the_server_takes_the_client_out_of_ends_with_unsubscribed(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(api_keys=API_KEY)
    async with connect(server.ws, name="tom") as rc:
        gone = await rc.subscribe("chat:gone")
        kept = await rc.subscribe("chat:kept")
        assert rc.session is not None
        await admin(server, "DELETE", f"/users/{rc.session.user_id}/rooms/chat:gone")
        events = await events_until(gone, lambda e: isinstance(e, Unsubscribed))
        assert events[-1] == Unsubscribed("chat:gone", "server")
        assert [e async for e in gone] == []  # ended
        assert list(rc.subscriptions) == ["chat:kept"]
        await rc.publish("chat:kept", "still here")
        assert [m.data for m in await messages(kept, 1)] == ["still here"]


# -- tokens -------------------------------------------------------------------------------


async def test_3003_gets_a_new_token_from_the_provider_and_resumes(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(**JWT)
    issued: list[str] = []

    async def provider() -> str:
        issued.append(token("zoe", ttl=4 if not issued else 600))  # outlives a slow connect
        return issued[-1]

    states: list[StateChange] = []
    options = ClientOptions(min_delay=0.05, max_delay=0.3, refresh_before=None)
    async with connect(
        server.ws, token_provider=provider, on_state=states.append, options=options
    ) as rc:
        sub = await rc.subscribe("chat:tok")
        assert rc.session is not None
        first = rc.session.conn
        await events_until(sub, lambda e: isinstance(e, Recovered))  # after the 3003
        assert rc.session.conn != first
        await rc.publish("chat:tok", "renewed")
        assert [m.data for m in await messages(sub, 1)] == ["renewed"]
    assert len(issued) == 2
    assert (3003, ConnectionState.RECONNECTING) in [(s.code, s.state) for s in states]


async def test_3003_with_a_fixed_token_stops(server_factory: ServerFactory) -> None:
    server = server_factory(**JWT)
    async with connect(server.ws, token=token("vic", ttl=4), options=FAST) as rc:
        sub = await rc.subscribe("chat:fixed")
        with pytest.raises(ConnectionFailed) as failed:
            await events_until(sub, lambda e: False)
        assert failed.value.close_code == 3003
        assert rc.state is ConnectionState.FAILED


async def test_a_token_is_refreshed_before_it_expires_on_the_same_connection(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(**JWT)
    issued: list[str] = []

    async def provider() -> str:
        issued.append(token("wes", ttl=4 if not issued else 600))
        return issued[-1]

    states: list[StateChange] = []
    async with connect(server.ws, token_provider=provider, on_state=states.append) as rc:
        sub = await rc.subscribe("chat:refresh")
        assert rc.session is not None
        assert rc.session.expires is not None
        first_conn, first_expiry = rc.session.conn, rc.session.expires
        await wait_for(lambda: len(issued) == 2, "a refresh (half of the token's 4 s)")
        await wait_for(
            lambda: rc.session is not None and (rc.session.expires or 0) > first_expiry,
            "the refresh's reply",
        )
        await asyncio.sleep(max(0.0, first_expiry - time.time()) + 1.0)  # past the first exp
        await rc.publish("chat:refresh", "alive")
        assert [m.data for m in await messages(sub, 1)] == ["alive"]
        assert rc.session.conn == first_conn
    assert ConnectionState.RECONNECTING not in [s.state for s in states]


# -- a silent server, the pending bound -----------------------------------------------------


async def test_a_silent_server_fails_the_ping_and_the_client_reconnects_and_resumes(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    states: list[StateChange] = []
    options = ClientOptions(
        ping_interval=0.5, ping_timeout=1, open_timeout=1, min_delay=0.05, max_delay=0.3
    )
    async with connect(server.ws, name="pia", on_state=states.append, options=options) as rc:
        sub = await rc.subscribe("chat:silent")
        await rc.publish("chat:silent", "before")
        freeze(server)
        try:
            await wait_for(
                lambda: any(s.reason == "ping timeout" for s in states), "a ping timeout"
            )
        finally:
            freeze(server, signal.SIGCONT)
        await wait_for(lambda: rc.state is ConnectionState.RESUMED, "resumed")
        await rc.publish("chat:silent", "after")
        got = await messages(sub, 2)
    assert [m.data for m in got] == ["before", "after"]


async def test_pending_requests_are_bounded_while_replies_do_not_come(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    options = ClientOptions(max_pending=3, ping_interval=120, request_timeout=60)
    async with connect(server.ws, name="quinn", options=options) as rc:
        freeze(server)
        try:
            pending = [asyncio.create_task(rc.publish("chat:q", n)) for n in range(3)]
            await wait_for(lambda: rc.in_flight == 3, "three publishes in flight at once")
            with pytest.raises(QueueFull):
                await rc.publish("chat:q", "one too many")
            with pytest.raises(QueueFull):
                await rc.history("chat:q")
        finally:
            freeze(server, signal.SIGCONT)
        assert [r.offset for r in await asyncio.gather(*pending)] == [1, 2, 3]
        assert rc.pending == 0
        assert [m.data for m in (await rc.history("chat:q")).events] == [0, 1, 2]


async def test_a_subscribe_without_a_reply_times_out_and_leaves_no_subscription(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    options = ClientOptions(request_timeout=1, ping_interval=120, min_delay=0.05, max_delay=0.3)
    async with connect(server.ws, name="ria", options=options) as rc:
        freeze(server)
        try:
            with pytest.raises(RequestTimeout):
                await rc.subscribe("chat:late")
            assert rc.subscriptions == {}
        finally:
            freeze(server, signal.SIGCONT)
        # The connection that did not answer was dropped; on the next one it works.
        await wait_for(lambda: rc.connected, "connected again")
        sub = await rc.subscribe("chat:late")
        await rc.publish("chat:late", "on time")
        assert [m.data for m in await messages(sub, 1)] == ["on time"]


# -- publishes in flight at a drop ----------------------------------------------------------


@pytest.mark.parametrize("case", ["no key", "key, anonymous", "key, token"])
async def test_a_publish_in_flight_at_a_drop_is_resent_once_only_when_it_has_a_key(
    server_factory: ServerFactory, redis_server: RedisServer, case: str
) -> None:
    """The server is stopped with the publish written to its socket, then killed and
    restarted (on Redis, so the room's history survives). A publish with an
    idempotency key is sent again once reconnected, exactly once: under a token's user,
    or anonymously (a new anon- id, but anonymous connections share one scope of keys
    on the server); one without a key fails and is not sent again."""
    settings: dict[str, Any] = redis_settings(redis_server)
    anonymous = case == "key, anonymous"
    if not anonymous:
        settings.update(JWT)
    credentials: dict[str, Any] = {"name": "xia"} if anonymous else {"token": token("xia")}
    key: dict[str, Any] = {"idempotency_key": False} if case == "no key" else {}
    options = ClientOptions(ping_interval=120, request_timeout=60, min_delay=0.05, max_delay=0.3)
    room = "chat:inflight"
    server = server_factory(**settings)
    async with connect(server.ws, options=options, **credentials) as rc:
        await rc.publish(room, "before")
        freeze(server)
        in_flight = asyncio.create_task(rc.publish(room, "in flight", **key))
        await wait_for(lambda: rc.in_flight == 1, "the publish written")
        server.stop(signal.SIGKILL)
        server_factory(listen_port=server.port, **settings)
        if case != "no key":
            result = await in_flight
            assert not result.duplicate  # the killed server never read the first copy
        else:
            with pytest.raises(PublishUnconfirmed):
                await in_flight
        await wait_for(lambda: rc.connected, "reconnected")
        after = await rc.publish(room, "after")
        page = await rc.history(room)
        resent = rc.resent
    data = [m.data for m in page.events]
    if case != "no key":
        assert data == ["before", "in flight", "after"]
        assert page.events[1].offset == result.offset
        assert resent == 1
    else:
        assert data == ["before", "after"]
        assert after.offset == 2
        assert resent == 0


# -- duplicates -----------------------------------------------------------------------------


async def test_a_message_at_a_position_already_delivered_is_dropped(
    app_factory: AppFactory,
) -> None:
    stub = app_factory("tests.e2e.stub_server:app", "/stub/log")
    async with connect(stub.ws, name="ann", options=FAST) as rc:
        sub = await rc.subscribe("chat:dup")

        async def send(offset: int, epoch: str = "stubepoc") -> None:
            frame = {"type": "message", "room": "chat:dup", "epoch": epoch, "offset": offset,
                     "data": f"{epoch}/{offset}", "sender": "s", "ts": 1.0}  # fmt: skip
            async with httpx.AsyncClient(timeout=10) as http:
                (await http.post(f"{stub.http}/stub/send", json=frame)).raise_for_status()

        for offset in (1, 1, 2, 1, 2, 3):
            await send(offset)
        await send(1, epoch="another")  # a new epoch starts over
        await send(1, epoch="another")
        got = await messages(sub, 4)
    assert [m.data for m in got] == ["stubepoc/1", "stubepoc/2", "stubepoc/3", "another/1"]
