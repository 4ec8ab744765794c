"""roomcast.client.sse against real ``roomcast serve`` processes: Last-Event-ID resume
after a SIGKILL, a new token after 3003, and the refusals and close codes that end a
stream for good."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import pytest

from roomcast.client import (
    ConnectionFailed,
    ConnectionState,
    Event,
    EventStream,
    Message,
    PublishResult,
    Recovered,
    Reset,
    StateChange,
    StreamOptions,
    connect,
    sse,
)

from ..conftest import ServerProcess
from ..redis_server import RedisServer
from .python_client_kit import API_KEY, JWT, admin, redis_settings, token, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ServerFactory = Callable[..., ServerProcess]

FAST = StreamOptions(min_delay=0.05, max_delay=0.3, open_timeout=2)


async def events_until(
    stream: EventStream, done: Callable[[Event], bool], timeout: float = 30
) -> list[Event]:
    found: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in stream:
            found.append(event)
            if done(event):
                break
    return found


async def test_a_stream_resumes_with_last_event_id_after_its_server_is_killed(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    settings = redis_settings(redis_server)
    a = server_factory(**settings)
    b = server_factory(**settings)
    states: list[StateChange] = []
    room = "feed:kill"
    async with (
        sse(f"{a.http}/events", [room], on_state=states.append, options=FAST) as stream,
        connect(b.ws, name="writer") as writer,
    ):
        acked: list[PublishResult] = []

        async def pump() -> None:
            for n in range(200):
                acked.append(await writer.publish(room, n))
                await asyncio.sleep(0.004)

        pumping = asyncio.create_task(pump())
        await wait_for(lambda: len(acked) >= 40, "40 publishes")
        a.stop(signal.SIGKILL)
        await wait_for(lambda: len(acked) >= 100, "publishes while the stream is down")
        server_factory(listen_port=a.port, **settings)
        await pumping
        last = acked[-1].offset
        events = await events_until(stream, lambda e: isinstance(e, Message) and e.offset >= last)
        last_id = stream.last_event_id
    received = [m.offset for m in events if isinstance(m, Message)]
    assert received == list(range(1, last + 1))  # each once, in order
    assert [e for e in events if isinstance(e, Reset)] == []
    assert [e for e in events if isinstance(e, Recovered)] != []
    assert last_id == f"{acked[-1].epoch}:{last}"
    assert ConnectionState.RESUMED in [s.state for s in states]


async def test_after_3003_the_stream_resumes_with_a_token_from_the_provider(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(**JWT)
    issued: list[str] = []

    async def provider() -> str:
        issued.append(token("ida", ttl=5 if not issued else 600))  # outlives a slow connect
        return issued[-1]

    states: list[StateChange] = []
    room = "chat:sse-token"
    async with (
        sse(
            f"{server.http}/events", [room], token_provider=provider, on_state=states.append,
            options=FAST,
        ) as stream,
        connect(server.ws, token=token("writer")) as writer,
    ):  # fmt: skip
        await writer.publish(room, "first")
        # "first" comes before the 3003 or is replayed after it: once either way.
        before = await events_until(stream, lambda e: isinstance(e, Recovered))
        await writer.publish(room, "second")
        after = await events_until(stream, lambda e: isinstance(e, Message))
    got = [m.data for m in [*before, *after] if isinstance(m, Message)]
    assert got == ["first", "second"]
    assert len(issued) == 2
    assert (3003, ConnectionState.RECONNECTING) in [(s.code, s.state) for s in states]


async def test_a_stream_refused_401_without_a_token_provider_fails(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(**JWT)
    with pytest.raises(ConnectionFailed) as failed:
        async with sse(f"{server.http}/events", ["chat:closed"], options=FAST):
            pass
    assert failed.value.status == 401


async def test_a_stream_ended_3503_by_the_application_is_not_reopened(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(**JWT, api_keys=API_KEY)
    states: list[StateChange] = []
    url = f"{server.http}/events"
    async with sse(url, ["chat:end"], token=token("sam"), on_state=states.append) as stream:
        await admin(server, "POST", "/users/sam/disconnect", json={})
        with pytest.raises(ConnectionFailed) as failed:
            await events_until(stream, lambda e: False)
        assert failed.value.close_code == 3503
        assert stream.state is ConnectionState.FAILED
    assert ConnectionState.RECONNECTING not in [s.state for s in states]
