"""Acceptance for the Redis broker: several roomcast processes, one real redis-server."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ..conftest import ServerProcess
from ..redis_server import RedisCluster, RedisServer
from .client import Client

pytestmark = pytest.mark.e2e

ServerFactory = Callable[..., ServerProcess]


def contiguous(offsets: list[int]) -> bool:
    return offsets == list(range(offsets[0], offsets[0] + len(offsets)))


async def wait_ready(server: ServerProcess, ready: bool = True, timeout: float = 15) -> None:
    async with httpx.AsyncClient() as http, asyncio.timeout(timeout):
        while ((await http.get(f"{server.http}/readyz")).status_code == 200) != ready:
            await asyncio.sleep(0.05)


class Pump:
    """Publishes numbered messages to a room until stopped; keeps every reply."""

    def __init__(self, client: Client, room: str, pause: float = 0.003) -> None:
        self.client, self.room, self.pause = client, room, pause
        self.replies: list[dict[str, Any]] = []
        self.stopped = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        for n in itertools.count():
            if self.stopped.is_set():
                return
            self.replies.append(await self.client.request("publish", room=self.room, data=n))
            await asyncio.sleep(self.pause)

    def acked(self) -> list[int]:
        return [r["result"]["offset"] for r in self.replies if r["ok"]]

    async def stop(self) -> None:
        self.stopped.set()
        await self.task


async def read_until(client: Client, offset: int, timeout: float = 15) -> list[int]:
    seen: list[int] = []
    async with asyncio.timeout(timeout):
        while not seen or seen[-1] < offset:
            seen.append((await client.event()).get("offset", -1))
    return seen


async def test_two_processes_serve_one_room_with_one_order(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    a = server_factory(redis_url=redis_server.url, redis_prefix="two")
    b = server_factory(redis_url=redis_server.url, redis_prefix="two")
    clients = [await Client.open(s.ws, f"u{i}") for i, s in enumerate([a, b, a, b])]
    room = "chat:two"
    for client in clients:
        assert (await client.request("subscribe", room=room))["ok"]
    for n, client in enumerate(clients * 5):
        assert (await client.request("publish", room=room, data=n))["ok"]
    streams = [
        [(m["epoch"], m["offset"], m["data"]) for m in await c.messages(20)] for c in clients
    ]
    assert all(stream == streams[0] for stream in streams)
    assert [offset for _, offset, _ in streams[0]] == list(range(1, 21))
    assert [data for _, _, data in streams[0]] == list(range(20))
    members = (await clients[0].request("presence", room=room))["result"]["members"]
    assert sorted(m["user"] for m in members) == ["u0", "u1", "u2", "u3"]


async def test_a_burst_of_publishes_without_waiting_is_answered_in_order_and_kept(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    """Publishes are pipelined to Redis (many per round trip): one connection's burst
    gets consecutive offsets in the order sent, its replies come back in that order,
    and a history request sent right after the burst sees every one of them."""
    a = server_factory(redis_url=redis_server.url, redis_prefix="burst")
    b = server_factory(redis_url=redis_server.url, redis_prefix="burst")
    watcher = await Client.open(b.ws, "watcher")
    await watcher.request("subscribe", room="r")
    publisher = await Client.open(a.ws, "burst")
    for n in range(200):
        await publisher.send({"op": "publish", "id": n + 1, "room": "r", "data": n})
    await publisher.send({"op": "history", "id": 1000, "room": "r", "limit": 200})
    replies = [await publisher.recv() for _ in range(201)]
    assert [r["id"] for r in replies] == [*range(1, 201), 1000]
    assert [r["result"]["offset"] for r in replies[:200]] == list(range(1, 201))
    history = replies[200]["result"]["events"]
    assert [(e["offset"], e["data"]) for e in history] == [(n + 1, n) for n in range(200)]
    events = await watcher.messages(200)
    assert [(e["offset"], e["data"]) for e in events] == [(n + 1, n) for n in range(200)]


async def test_workers_2_serve_one_room_from_two_processes(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    server = server_factory(redis_url=redis_server.url, redis_prefix="w2", workers=2)
    # The kernel hands each connection to whichever worker accepts first: connect
    # until both have answered (the second may still be starting at first).
    clients: list[Client] = []
    nodes: set[str] = set()
    async with asyncio.timeout(20):
        while len(nodes) < 2:
            client = await Client.open(server.ws)
            nodes.add((await client.request("connect", name="w"))["result"]["node"])
            clients.append(client)
            await asyncio.sleep(0.02)
    for client in clients:
        await client.request("subscribe", room="r")
    await clients[0].request("publish", room="r", data="hello")
    for client in clients:
        assert (await client.event())["data"] == "hello"


async def test_killing_pubsub_connections_loses_and_repeats_nothing(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    a = server_factory(redis_url=redis_server.url, redis_prefix="kill")
    b = server_factory(redis_url=redis_server.url, redis_prefix="kill")
    room = "feed:kill"
    readers = [await Client.open(s.ws) for s in (a, b, b, a)]
    for reader in readers:
        await reader.request("subscribe", room=room)
    pumps = [Pump(await Client.open(s.ws), room, pause=0) for s in (a, b)]
    killed = 0
    for _ in range(3):
        await asyncio.sleep(0.2)
        # Kill again and again so that publishes land while the links are down (a kill
        # may find a link still reconnecting: count them all, not each).
        for _ in range(5):
            killed += int(redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub") or 0)
            await asyncio.sleep(0.01)
        await wait_ready(a)
        await wait_ready(b)
    assert killed >= 6, "the pub/sub connections were not killed"
    await asyncio.sleep(0.2)
    for pump in pumps:
        await pump.stop()
    acked = sorted(itertools.chain.from_iterable(pump.acked() for pump in pumps))
    errors = [r["error"] for p in pumps for r in p.replies if not r["ok"]]
    assert errors == []
    assert len(acked) > 100, "publishing failed"
    for reader in readers:
        seen = await read_until(reader, acked[-1])
        problems = [(x, y) for x, y in itertools.pairwise(seen) if y != x + 1]
        assert problems == [], "gap or duplicate"
        assert seen[-1] == acked[-1]


async def test_redis_restarted_empty_gives_unavailable_then_a_reset(
    server_factory: ServerFactory, own_redis: RedisServer
) -> None:
    server = server_factory(redis_url=own_redis.url, redis_timeout=1)
    room = "chat:restart"
    reader = await Client.open(server.ws)
    await reader.request("subscribe", room=room)
    writer = await Client.open(server.ws)
    for n in range(5):
        await writer.request("publish", room=room, data=n)
    before = await reader.messages(5)

    own_redis.stop()
    reply = await writer.request("publish", room=room, data="lost?")
    assert reply["ok"] is False
    assert reply["error"]["code"] == "unavailable"
    await wait_ready(server, ready=False)

    own_redis.start()  # empty: the room's history and epoch are gone
    reset = await reader.event("reset", timeout=15)
    assert reset["epoch"] != before[0]["epoch"]
    assert reset["offset"] == 0
    await wait_ready(server)

    late = await Client.open(server.ws)
    since = {"epoch": before[-1]["epoch"], "offset": before[-1]["offset"]}
    resumed = await late.request("subscribe", room=room, since=since)
    assert resumed["result"]["recovered"] is False
    assert resumed["result"]["epoch"] == reset["epoch"]
    reply = await writer.request("publish", room=room, data="after")
    assert reply["ok"], reply
    after = await reader.event()
    assert (after["epoch"], after["offset"], after["data"]) == (reset["epoch"], 1, "after")


async def test_a_killed_workers_users_leave_presence_within_the_expiry(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    settings = {"redis_prefix": "sigkill", "presence_ttl": 1.5, "presence_refresh": 0.3}
    a = server_factory(redis_url=redis_server.url, **settings)
    b = server_factory(redis_url=redis_server.url, **settings)
    room = "chat:crash"
    watcher = await Client.open(a.ws, "watcher")
    await watcher.request("subscribe", room=room)
    ghost = await Client.open(b.ws, "ghost")
    await ghost.request("subscribe", room=room)
    join = await watcher.event("join")
    while join["user"] != "ghost":
        join = await watcher.event("join")
    b.stop(signal.SIGKILL)
    leave = await watcher.event("leave", timeout=10)
    assert (leave["user"], leave["conn"]) == ("ghost", join["conn"])
    members = (await watcher.request("presence", room=room))["result"]["members"]
    assert [m["user"] for m in members] == ["watcher"]


async def test_two_processes_on_a_redis_cluster_fan_out_rooms_on_different_shards(
    server_factory: ServerFactory, redis_cluster: RedisCluster
) -> None:
    settings = {"redis_url": redis_cluster.url, "redis_cluster": "true", "redis_prefix": "cl"}
    a = server_factory(**settings)
    b = server_factory(**settings)
    by_shard: dict[int, str] = {}
    for n in range(100):
        by_shard.setdefault(redis_cluster.node_of(f"cl:{{chat:{n}}}:ch"), f"chat:{n}")
    rooms = list(by_shard.values())
    assert len(rooms) == 3, "rooms should land on all three shards"
    on_a, on_b = await Client.open(a.ws), await Client.open(b.ws)
    for client in (on_a, on_b):
        for room in rooms:
            assert (await client.request("subscribe", room=room))["ok"]
    for n, room in enumerate(rooms):
        publisher = on_a if n % 2 else on_b
        assert (await publisher.request("publish", room=room, data=n))["ok"]
    for client in (on_a, on_b):
        got = {m["room"]: (m["offset"], m["data"]) for m in await client.messages(3)}
        assert got == {room: (1, n) for n, room in enumerate(rooms)}
