"""Acceptance: roomcast mounted in a host FastAPI app (tests/e2e/host_app.py), run
for real: the host's session guards /rt/ws, SSE and REST alike, its
``authenticate`` makes the principals, its hooks refuse and transform, its
handlers publish and disconnect through the server-side API on two workers
through Redis, and its SIGTERM stays its own while clients still get 3000."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from ..conftest import ROOT, ServerProcess, free_port, launch, server_env
from ..redis_server import RedisServer
from .client import Client
from .sse_client import open_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SESSIONS = {"ann": "s-ann", "bob": "s-bob", "ro": "s-ro", "eve": "s-eve", "boss": "s-boss"}


class Host(ServerProcess):
    hook_log: Path

    def cookie(self, user: str) -> dict[str, str]:
        return {"Cookie": f"session={SESSIONS[user]}"}

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/rt/ws"

    def hooks(self) -> list[str]:
        if not self.hook_log.exists():
            return []
        return [line.split(" ", 1)[1] for line in self.hook_log.read_text().splitlines()]

    async def client(self, user: str | None) -> Client:
        headers = self.cookie(user) if user else {}
        return await Client.open(self.ws_url, additional_headers=headers)


def start_host(tmp_path: Path, **env: str) -> Host:
    port = free_port()
    environment = server_env(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/host-{port}.db", log_level="info"
    )
    environment.update(
        HOST_APP_PORT=str(port),
        HOST_APP_SESSIONS=",".join(f"{sid}={user}" for user, sid in SESSIONS.items()),
        HOST_APP_LOG=str(tmp_path / f"hooks-{port}.log"),
        PYTHONPATH=str(ROOT),
    )
    environment.update(env)
    server = launch(
        [sys.executable, "-m", "tests.e2e.host_app"],
        port=port,
        env=environment,
        cwd=ROOT,
        log_path=tmp_path / f"host-{port}.log",
        ready="/rt/readyz",
        headers={"Cookie": f"session={SESSIONS['ann']}"},
        timeout=30,
    )
    host = Host(server.process, port, server.log_path)
    host.hook_log = tmp_path / f"hooks-{port}.log"
    return host


HostFactory = Callable[..., Host]


@pytest.fixture
def host_factory(tmp_path: Path) -> Iterator[HostFactory]:
    started: list[Host] = []

    def factory(**env: str) -> Host:
        host = start_host(tmp_path, **env)
        started.append(host)
        return host

    yield factory
    for host in started:
        host.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    process = start_host(tmp_path_factory.mktemp("host"))
    yield process
    process.stop()


async def refused_status(host: Host, user: str | None) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await host.client(user)
    return refused.value.response.status_code


async def test_without_the_session_ws_sse_and_rest_are_refused_and_with_it_served(
    host: Host,
) -> None:
    assert await refused_status(host, None) == 401  # before any frame: the upgrade itself
    async with httpx.AsyncClient(base_url=host.http) as http:
        assert (await http.get("/rt/rooms/chat:a/messages")).status_code == 401
        assert (await http.get("/rt/rooms/chat:a/events")).status_code == 401
        served = await http.get("/rt/rooms/chat:a/messages", headers=host.cookie("ann"))
        assert served.status_code == 200
    client = await host.client("ann")
    hello = await client.request("connect")
    assert hello["result"]["user_id"] == "ann"
    assert hello["result"]["user"] == "Ann"
    assert (await client.request("subscribe", room="chat:a"))["ok"]
    async with open_stream(f"{host.http}/rt/rooms/chat:a/events", headers=host.cookie("bob")) as s:
        assert (await s.until("subscribed")).data["room"] == "chat:a"
        await client.request("publish", room="chat:a", data={"text": "hi"})
        message = await s.until("message")
    assert message.data["sender"] == "Ann"
    await client.close()


async def test_authenticate_decides_read_and_publish_on_every_transport(host: Host) -> None:
    reader = await host.client("ro")
    refused = await reader.request("subscribe", room="feed:x")  # ro may read chat:* only
    assert refused["error"]["code"] == "forbidden"
    assert (await reader.request("subscribe", room="chat:b"))["ok"]
    refused = await reader.request("publish", room="chat:b", data={"text": "no"})
    assert refused["error"]["code"] == "forbidden"
    async with httpx.AsyncClient(base_url=host.http) as http:
        rest = await http.post(
            "/rt/rooms/chat:b/messages", json={"data": 1}, headers=host.cookie("ro")
        )
        assert rest.status_code == 403
        stream = await http.get("/rt/rooms/feed:x/events", headers=host.cookie("ro"))
        assert stream.status_code == 403
        ok = await http.post(
            "/rt/rooms/chat:b/messages", json={"data": {}}, headers=host.cookie("bob")
        )
        assert ok.status_code == 201
    message = await reader.event("message")
    assert message["sender"] == "Bob"
    await reader.close()


async def test_on_connect_refuses_the_upgrade_and_the_stream(host: Host) -> None:
    assert await refused_status(host, "eve") == 403
    async with httpx.AsyncClient(base_url=host.http) as http:
        stream = await http.get("/rt/rooms/chat:a/events", headers=host.cookie("eve"))
        assert stream.status_code == 403
        assert stream.json() == {"detail": "eve is banned"}
    assert "connect eve" in host.hooks()


async def test_on_subscribe_refuses_one_room_and_on_publish_moderates_and_transforms(
    host: Host,
) -> None:
    ann, boss = await host.client("ann"), await host.client("boss")
    refused = await ann.request("subscribe", room="chat:secret")
    assert refused["error"] == {"code": "forbidden", "message": "members only"}
    assert (await boss.request("subscribe", room="chat:secret"))["ok"]
    assert (await ann.request("subscribe", room="chat:mod"))["ok"]
    assert (await boss.request("subscribe", room="chat:mod"))["ok"]
    bad = await ann.request("publish", room="chat:mod", data={"text": "a badword"})
    assert bad["error"] == {"code": "forbidden", "message": "mind your language"}
    assert (await ann.request("publish", room="chat:mod", data={"text": "fine"}))["ok"]
    message = await boss.event("message")
    assert message["data"] == {"text": "fine", "by": "ann", "moderated": True}
    async with httpx.AsyncClient(base_url=host.http) as http:
        rest = await http.post(
            "/rt/rooms/chat:mod/messages",
            json={"data": {"text": "rest"}},
            headers=host.cookie("bob"),
        )
        assert rest.status_code == 201
        bad_rest = await http.post(
            "/rt/rooms/chat:mod/messages",
            json={"data": {"text": "badword"}},
            headers=host.cookie("bob"),
        )
        assert bad_rest.status_code == 403
    assert (await boss.event("message"))["data"] == {"text": "rest", "by": "bob", "moderated": True}
    await ann.close()
    await boss.close()


async def test_a_hook_that_raises_refuses_that_request_with_internal_and_is_logged_once(
    host: Host,
) -> None:
    ann = await host.client("ann")
    assert (await ann.request("subscribe", room="chat:boom"))["ok"]
    failed = await ann.request("publish", room="chat:boom", data={"text": "boom"})
    assert failed["error"]["code"] == "internal"
    assert (await ann.request("publish", room="chat:boom", data={"text": "after"}))["ok"]
    assert (await ann.event("message"))["data"]["text"] == "after"
    await ann.close()
    log = host.log()
    assert log.count("RuntimeError: a bug in the host's hook") == 1
    assert log.count("hook on_publish failed") == 1


async def test_a_slow_hook_delays_only_its_own_request(host: Host) -> None:
    ann, bob, watcher = [await host.client(u) for u in ("ann", "bob", "ro")]
    for client in (ann, bob, watcher):
        assert (await client.request("subscribe", room="chat:slow"))["ok"]
    await ann.send({"op": "publish", "id": 99, "room": "chat:slow", "data": {"text": "slow"}})
    await asyncio.sleep(0.2)  # ann's hook is now sleeping for 1.5 s
    started = time.monotonic()
    assert (await bob.request("publish", room="chat:slow", data={"text": "meanwhile"}))["ok"]
    first = await watcher.event("message", timeout=5)
    assert first["data"]["text"] == "meanwhile"
    assert time.monotonic() - started < 1.0  # not held behind ann's hook
    assert (await ann.reply(99))["ok"]
    assert (await watcher.event("message", timeout=5))["data"]["text"] == "slow"
    timed_out = await ann.request("publish", room="chat:slow", data={"text": "too slow"})
    assert timed_out["error"]["code"] == "unavailable"  # past hook_timeout (3 s)
    for client in (ann, bob, watcher):
        await client.close()


async def test_on_disconnect_runs_once_per_connection_that_connected(host: Host) -> None:
    bob = await host.client("bob")
    assert (await bob.request("subscribe", room="chat:bye"))["ok"]
    before = host.hooks().count("disconnect bob")
    await bob.close()
    deadline = time.monotonic() + 5
    while host.hooks().count("disconnect bob") == before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert host.hooks().count("disconnect bob") == before + 1


async def clients_on_both_workers(host: Host, user: str, room: str) -> list[Client]:
    """Connections of ``user`` subscribed to ``room`` until both workers hold some.
    The kernel hands each connection to whichever worker accepts first, and the
    second worker may still be starting at first."""
    clients: list[Client] = []
    nodes: set[str] = set()
    async with asyncio.timeout(30):
        while len(nodes) < 2 or len(clients) < 4:
            client = await host.client(user)
            nodes.add((await client.request("connect"))["result"]["node"])
            assert (await client.request("subscribe", room=room))["ok"]
            clients.append(client)
            await asyncio.sleep(0.05)
    return clients


@pytest.mark.timeout(120)
async def test_the_server_side_api_reaches_every_worker_through_redis(
    host_factory: HostFactory, redis_server: RedisServer
) -> None:
    host = host_factory(
        HOST_APP_WORKERS="2", ROOMCAST_REDIS_URL=redis_server.url, ROOMCAST_REDIS_PREFIX="embed"
    )
    anns = await clients_on_both_workers(host, "ann", "chat:all")
    bobs = await clients_on_both_workers(host, "bob", "chat:all")
    url = f"{host.http}/rt/rooms/chat:all/events"
    async with (
        open_stream(url, headers=host.cookie("ann")) as ann_stream,
        open_stream(url, headers=host.cookie("bob")) as bob_stream,
        httpx.AsyncClient(base_url=host.http) as http,
    ):
        for stream in (ann_stream, bob_stream):
            await stream.until("subscribed")
        announced = await http.post(
            "/announce",
            json={"room": "chat:all", "text": "from a handler"},
            headers=host.cookie("boss"),
        )
        assert announced.status_code == 200
        for client in anns + bobs:
            message = await client.event("message")
            assert message["data"] == {"text": "from a handler"}
            assert message["sender"] == "boss"
        for stream in (ann_stream, bob_stream):
            assert (await stream.until("message")).data["data"] == {"text": "from a handler"}

        kicked = await http.post("/kick/ann", headers=host.cookie("boss"))
        assert kicked.status_code == 200
        assert [await client.closed() for client in anns] == [3503] * len(anns)
        assert (await ann_stream.until("close")).data["code"] == 3503

        removed = await http.post("/remove/bob/chat:all", headers=host.cookie("boss"))
        assert removed.status_code == 200
        for client in bobs:
            assert (await client.event("unsubscribed"))["room"] == "chat:all"
        assert (await bob_stream.until("unsubscribed")).data["room"] == "chat:all"
        # bob is still connected, just no longer in the room
        assert (await bobs[0].request("ping"))["ok"]
    for client in bobs:
        await client.close()


async def test_a_mounted_apps_sigterm_is_its_own_and_clients_still_get_3000(
    host_factory: HostFactory,
) -> None:
    host = host_factory()
    ann = await host.client("ann")
    assert (await ann.request("subscribe", room="chat:down"))["ok"]
    url = f"{host.http}/rt/rooms/chat:down/events"
    async with open_stream(url, headers=host.cookie("bob")) as stream:
        await stream.until("subscribed")
        host.process.send_signal(signal.SIGTERM)
        assert await ann.closed() == 3000
        assert (await stream.until("close")).data["code"] == 3000
    assert host.process.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    log = host.log()
    assert "Application shutdown complete" in log
    assert "draining connections before shutdown" not in log  # no roomcast signal handler
    assert "the server is shutting down: draining connections" in log  # uvicorn's shutdown


async def test_under_uvicorns_own_protocol_the_lifespan_says_so_and_sse_still_gets_3000(
    host_factory: HostFactory,
) -> None:
    host = host_factory(HOST_APP_SERVER="uvicorn")
    assert "fan-out through ASGI sends" in host.log()
    ann = await host.client("ann")
    assert (await ann.request("subscribe", room="chat:down"))["ok"]
    url = f"{host.http}/rt/rooms/chat:down/events"
    async with open_stream(url, headers=host.cookie("bob")) as stream:
        await stream.until("subscribed")
        host.process.send_signal(signal.SIGTERM)
        code = await ann.closed()
        assert code in (1012, 3000)  # uvicorn's own close comes first for WebSockets
        assert (await stream.until("close")).data["code"] == 3000
    assert host.process.wait(15) in (0, -signal.SIGTERM)


def test_fast_path_logged_at_start_up(host: Host) -> None:
    assert "WebSocket path: direct frame writes" in host.log()
