"""Through a real nginx running the repository's nginx.conf, in front of two
roomcast processes on one real redis-server (tests/nginx_server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..conftest import ServerProcess, require
from ..nginx_server import NginxServer, nginx_binary
from ..redis_server import RedisServer
from .client import Client
from .sse_client import open_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ServerFactory = Callable[..., ServerProcess]
ROOM = "chat:deploy"


class Replicas:
    """Two roomcast processes sharing one Redis, like docker-compose.yml's."""

    def __init__(self, factory: ServerFactory, redis: RedisServer) -> None:
        self.factory = factory
        self.settings = {
            "redis_url": redis.url,
            "redis_prefix": f"ngx{uuid.uuid4().hex[:8]}",
            "drain_timeout": 2,
        }
        with ThreadPoolExecutor(2) as pool:  # started together: each waits on its own
            self.servers = list(pool.map(lambda _: factory(**self.settings), range(2)))

    def restart(self, n: int) -> ServerProcess:
        self.servers[n] = self.factory(listen_port=self.servers[n].port, **self.settings)
        return self.servers[n]


@pytest.fixture
def replicas(server_factory: ServerFactory, redis_server: RedisServer) -> Replicas:
    return Replicas(server_factory, redis_server)


@pytest.fixture
def nginx(tmp_path: Path, replicas: Replicas) -> Iterator[NginxServer]:
    require(nginx_binary() is not None, "nginx (apt-get install nginx-light)")
    front = NginxServer(tmp_path / "nginx", [s.port for s in replicas.servers]).start()
    yield front
    front.stop()


def rest_publish(server: ServerProcess, text: str) -> int:
    reply = httpx.post(f"{server.http}/rooms/{ROOM}/messages", json={"data": text}, timeout=10)
    reply.raise_for_status()
    return int(reply.json()["offset"])


async def test_websocket_and_sse_clients_through_nginx_get_what_either_replica_publishes(
    replicas: Replicas, nginx: NginxServer
) -> None:
    ws = await Client.open(nginx.ws, "ann")
    assert (await ws.request("subscribe", room=ROOM))["ok"]
    async with open_stream(f"{nginx.http}/rooms/{ROOM}/events") as stream:
        first = await stream.until("subscribed")
        assert first.data["room"] == ROOM
        # One message through each replica directly: whichever replica nginx gave
        # each client, one of the two came from the other one.
        one, two = replicas.servers
        await asyncio.to_thread(rest_publish, one, "via replica 1")
        await asyncio.to_thread(rest_publish, two, "via replica 2")
        got = await stream.messages(2)
        assert [e.data["data"] for e in got] == ["via replica 1", "via replica 2"]
        assert [e.id.split(":")[-1] for e in got if e.id] == ["1", "2"]
    assert [m["data"] for m in await ws.messages(2)] == ["via replica 1", "via replica 2"]
    await ws.close()

    async with httpx.AsyncClient(base_url=nginx.http, timeout=10) as http:
        for path, kind in (("/chat", "text/html"), ("/roomcast.js", "text/javascript"),
                           ("/docs", "text/html"), ("/healthz", "application/json")):  # fmt: skip
            reply = await http.get(path)
            assert reply.status_code == 200, path
            assert reply.headers["content-type"].startswith(kind)
        assert (await http.get("/metrics")).status_code == 404  # scraped per replica
        big = await http.post(f"/rooms/{ROOM}/messages", content=b"x" * 300_000)
        assert big.status_code == 413  # nginx's body limit


class Resumer:
    """A client that stays subscribed through restarts: on any close it
    reconnects (through nginx) and resumes from the last offset it saw."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.offsets: list[int] = []
        self.epoch: str | None = None
        self.closes: list[int] = []
        self.recovered: list[bool] = []
        self.stopping = False

    async def run(self) -> None:
        while not self.stopping:
            try:
                async with connect(self.url, open_timeout=5) as conn:
                    await self._session(conn)
            except ConnectionClosed as exc:
                self.closes.append(exc.rcvd.code if exc.rcvd else 1006)
            except (OSError, InvalidStatus, TimeoutError):
                self.closes.append(1006)
            if not self.stopping:
                await asyncio.sleep(0.1)

    async def _session(self, conn: Any) -> None:
        await conn.send(json.dumps({"op": "connect", "id": 0, "name": self.name}))
        since = None
        if self.epoch is not None:
            since = {"epoch": self.epoch, "offset": self.offsets[-1] if self.offsets else 0}
        await conn.send(json.dumps({"op": "subscribe", "id": 1, "room": ROOM, "since": since}))
        while True:
            frame = json.loads(await conn.recv())
            if frame.get("id") == 1:
                assert frame["ok"], frame
                self.epoch = frame["result"]["epoch"]
                if since is not None:
                    self.recovered.append(frame["result"]["recovered"])
            elif frame.get("type") == "message":
                self.offsets.append(frame["offset"])


class SseResumer:
    """An EventSource's behaviour: when the stream ends, open it again with the
    last event id it saw."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.offsets: list[int] = []
        self.closes: list[int] = []
        self.recovered: list[bool] = []
        self.last_id: str | None = None
        self.subscribed = False
        self.stopping = False

    async def run(self) -> None:
        while not self.stopping:
            with contextlib.suppress(EOFError, httpx.HTTPError, TimeoutError):
                async with open_stream(self.url, last_event_id=self.last_id) as stream:
                    while True:
                        event = await stream.next(timeout=30)
                        self.last_id = stream.last_id
                        if event.event == "message":
                            self.offsets.append(event.data["offset"])
                        elif event.event == "subscribed":
                            self.subscribed = True
                            if self.offsets:
                                self.recovered.append(event.data["recovered"])
                        elif event.event == "close":
                            self.closes.append(event.data["code"])
            if not self.stopping:
                await asyncio.sleep(0.1)


class Publisher:
    """Publishes through nginx as fast as replies come, reconnecting when closed;
    remembers every offset acknowledged."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked: list[int] = []
        self.stopping = False
        self.n = 0

    async def run(self) -> None:
        while not self.stopping:
            with contextlib.suppress(ConnectionClosed, OSError, InvalidStatus, TimeoutError):
                async with connect(self.url, open_timeout=5) as conn:
                    while not self.stopping:
                        self.n += 1
                        await conn.send(json.dumps(
                            {"op": "publish", "id": self.n, "room": ROOM, "data": self.n}
                        ))  # fmt: skip
                        while True:
                            reply = json.loads(await conn.recv())
                            if reply.get("id") == self.n:
                                break
                        if reply.get("ok"):
                            self.acked.append(reply["result"]["offset"])
                        await asyncio.sleep(0.01)
            if not self.stopping:
                await asyncio.sleep(0.1)


async def test_a_rolling_restart_through_nginx_loses_nothing(
    replicas: Replicas, nginx: NginxServer
) -> None:
    """SIGTERM one replica, start it again, then the other: clients closed with 3000
    reconnect through nginx to the replica that is up and resume with no gap."""
    clients = [Resumer(nginx.ws, f"c{n}") for n in range(6)]
    streams = [SseResumer(f"{nginx.http}/rooms/{ROOM}/events") for _ in range(2)]
    publisher = Publisher(nginx.ws)
    tasks = [asyncio.create_task(c.run()) for c in [*clients, *streams]]
    async with asyncio.timeout(20):  # all subscribed
        while any(c.epoch is None for c in clients) or not all(s.subscribed for s in streams):
            await asyncio.sleep(0.02)
    tasks.append(asyncio.create_task(publisher.run()))

    async def acked_more(than: int) -> None:
        async with asyncio.timeout(20):
            while len(publisher.acked) < than + 20:
                await asyncio.sleep(0.05)

    await acked_more(0)
    for n in (0, 1):
        stopped = replicas.servers[n]
        code = await asyncio.to_thread(stopped.stop, signal.SIGTERM)
        assert code in (0, -signal.SIGTERM)
        await acked_more(len(publisher.acked))  # publishing goes on through the other
        await asyncio.to_thread(replicas.restart, n)
        await acked_more(len(publisher.acked))

    publisher.stopping = True
    await asyncio.sleep(0.5)
    last = max(publisher.acked)
    async with asyncio.timeout(20):  # every client reaches the last acknowledged message
        while any(not c.offsets or c.offsets[-1] < last for c in [*clients, *streams]):
            await asyncio.sleep(0.05)
    for c in [*clients, *streams]:
        c.stopping = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    assert publisher.acked == sorted(publisher.acked)
    moved = [c for c in clients if 3000 in c.closes]
    assert len(moved) >= 3, [c.closes for c in clients]  # each restart moved someone
    assert all(c.recovered for c in moved)  # each of them resumed at least once
    assert len(publisher.acked) >= 80
    for c in clients:
        first = c.offsets[0]
        assert c.offsets == list(range(first, c.offsets[-1] + 1)), f"{c.name}: gap or duplicate"
        assert set(publisher.acked) <= set(c.offsets)
        assert all(c.recovered), f"{c.name} could not resume: {c.recovered}"
        assert set(c.closes) <= {3000, 1006}, c.closes
    for stream in streams:  # SSE: ended with `event: close` 3000, resumed by its last id
        assert stream.offsets == list(range(1, stream.offsets[-1] + 1))
        assert set(publisher.acked) <= set(stream.offsets)
        assert stream.closes
        assert set(stream.closes) == {3000}
        assert stream.recovered
        assert all(stream.recovered)
    assert "no live upstreams" not in nginx.log()  # nobody got a 502 on the way
