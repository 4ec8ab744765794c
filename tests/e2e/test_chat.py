"""Acceptance: real `websockets` clients against `roomcast serve` on 127.0.0.1."""

from __future__ import annotations

import asyncio
import functools
import itertools
import uuid
from collections.abc import Callable

import pytest

from ..conftest import ServerProcess
from .client import Client

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["memory", "redis"])
def server_factory(
    request: pytest.FixtureRequest, server_factory: Callable[..., ServerProcess]
) -> Callable[..., ServerProcess]:
    """Every test here runs once on each broker."""
    if request.param == "memory":
        return server_factory
    redis = request.getfixturevalue("redis_server")
    prefix = f"chat{uuid.uuid4().hex[:8]}"
    return functools.partial(server_factory, redis_url=redis.url, redis_prefix=prefix)


ServerFactory = Callable[..., ServerProcess]


async def test_two_clients_chat_with_consecutive_offsets_history_and_presence(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    ann = await Client.open(server.ws, "ann")
    bob = await Client.open(server.ws, "bob")
    room = "chat:lobby"
    for client in (ann, bob):
        reply = await client.request("subscribe", room=room)
        assert reply["ok"], reply
        assert reply["result"]["offset"] == 0
    first = await ann.request("publish", room=room, data={"text": "hello"})
    second = await bob.request("publish", room=room, data={"text": "hi ann"})
    assert first["ok"]
    assert second["ok"]
    assert second["result"]["offset"] == first["result"]["offset"] + 1
    assert second["result"]["epoch"] == first["result"]["epoch"]

    for client in (ann, bob):
        got = await client.messages(2)
        assert [m["offset"] for m in got] == [1, 2]
        assert [m["sender"] for m in got] == ["ann", "bob"]
        assert [m["data"]["text"] for m in got] == ["hello", "hi ann"]

    history = await ann.request("history", room=room, limit=10)
    assert [e["offset"] for e in history["result"]["events"]] == [1, 2]
    assert history["result"]["events"][0]["data"] == {"text": "hello"}
    assert history["result"]["more"] is False
    presence = await bob.request("presence", room=room)
    assert sorted(m["user"] for m in presence["result"]["members"]) == ["ann", "bob"]

    await bob.close()
    leave = await ann.event("leave")
    assert leave["user"] == "bob"
    presence = await ann.request("presence", room=room)
    assert [m["user"] for m in presence["result"]["members"]] == ["ann"]
    await ann.close()


async def test_resume_after_missing_50_events_while_another_publishes_continuously(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(presence="false")
    room = "feed:resume"
    publisher = await Client.open(server.ws, "pub")
    stop = asyncio.Event()
    acked: list[int] = []

    async def publish_continuously() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            reply = await publisher.request("publish", room=room, data={"n": n})
            assert reply["ok"], reply
            acked.append(reply["result"]["offset"])

    reader = await Client.open(server.ws)
    await reader.request("subscribe", room=room)
    pump = asyncio.create_task(publish_continuously())
    before = await reader.messages(10)
    last = before[-1]
    await reader.close()  # miss what comes next

    async with asyncio.timeout(20):
        while not acked or acked[-1] < last["offset"] + 50:
            await asyncio.sleep(0.01)

    reader = await Client.open(server.ws)
    since = {"epoch": last["epoch"], "offset": last["offset"]}
    reply = await reader.request("subscribe", room=room, since=since)
    assert reply["result"]["recovered"] is True
    assert reply["result"]["replayed"] >= 50
    # Read through the replay and well into live events while publishing goes on.
    target = reply["result"]["offset"] + 30
    got = []
    while not got or got[-1]["offset"] < target:
        got.append(await reader.event())
    stop.set()
    await pump
    final = acked[-1]
    while got[-1]["offset"] < final:
        got.append(await reader.event())
    assert [m["offset"] for m in got] == list(range(last["offset"] + 1, final + 1))
    assert [m["data"]["n"] for m in got] == [o - 1 for o in range(last["offset"] + 1, final + 1)]
    await reader.close()
    await publisher.close()


async def test_many_resuming_clients_under_load_see_no_gap_and_no_duplicate(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(presence="false", history_size=100_000, outbox_max_messages=100_000)
    room = "feed:load"
    stop = asyncio.Event()

    async def publish_until_stopped(n: int) -> None:
        client = await Client.open(server.ws)
        while not stop.is_set():
            assert (await client.request("publish", room=room, data={"p": n}))["ok"]
            await asyncio.sleep(0.002)
        await client.close()

    async def resume_repeatedly() -> list[int]:
        seen: list[int] = []
        since = None
        for _ in range(4):
            client = await Client.open(server.ws)
            fields = {"room": room} if since is None else {"room": room, "since": since}
            reply = await client.request("subscribe", **fields)
            assert since is None or reply["result"]["recovered"], reply
            for message in await client.messages(20 + len(seen) % 7):
                seen.append(message["offset"])
                since = {"epoch": message["epoch"], "offset": message["offset"]}
            await client.close()
        return seen

    publishers = [asyncio.create_task(publish_until_stopped(n)) for n in range(3)]
    results = await asyncio.gather(*(resume_repeatedly() for _ in range(8)))
    stop.set()
    await asyncio.gather(*publishers)
    for seen in results:
        problems = [(x, y) for x, y in itertools.pairwise(seen) if y != x + 1]
        assert problems == [], "gap or duplicate"


async def test_ping_op_answers_with_server_time(server_factory: ServerFactory) -> None:
    server = server_factory()
    client = await Client.open(server.ws)
    reply = await client.request("ping")
    assert reply["ok"]
    assert reply["result"]["ts"] > 1_600_000_000
    await client.close()
