"""The app in process: health, readiness, draining, and mounting in a host app."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from roomcast.app import Roomcast, create_app
from roomcast.settings import Settings

pytestmark = pytest.mark.timeout(20)


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = ASGIWebSocketTransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_healthz_and_readyz_answer_ok() -> None:
    app = create_app(Settings())
    async with running(app) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ok"


async def test_while_draining_readyz_is_503_and_new_sockets_are_closed_3000() -> None:
    app = create_app(Settings())
    async with running(app) as client:
        rc: Roomcast = app.state.roomcast
        assert await rc.drain()
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["draining"] is True
        codes = []
        try:
            async with aconnect_ws("/ws", client) as ws:
                await ws.receive_text(timeout=5)
        except* WebSocketDisconnect as group:  # httpx-ws raises it from a task group
            codes = [exc.code for exc in group.exceptions if isinstance(exc, WebSocketDisconnect)]
        assert codes == [3000]


async def test_roomcast_mounts_in_a_host_app() -> None:
    rc = Roomcast(Settings())
    host = FastAPI(lifespan=rc.lifespan)

    @host.get("/host")
    async def own_route() -> dict[str, str]:
        return {"host": "yes"}

    host.include_router(rc.router, prefix="/rt")
    async with running(host) as client:
        assert (await client.get("/host")).json() == {"host": "yes"}
        async with aconnect_ws("/rt/ws", client) as ws:
            await ws.send_text(json.dumps({"op": "subscribe", "id": 1, "room": "r"}))
            reply = json.loads(await ws.receive_text(timeout=5))
            assert reply["ok"]
            await ws.send_text(json.dumps({"op": "publish", "id": 2, "room": "r", "data": 7}))
            frames = [json.loads(await ws.receive_text(timeout=5)) for _ in range(3)]
        assert frames[0]["type"] == "join"
        # the publish reply and the event come in either order (docs/protocol.md)
        assert sorted(str(f.get("type")) for f in frames[1:]) == ["None", "message"]
        (event,) = [f for f in frames if f.get("type") == "message"]
        assert event["data"] == 7


@pytest.fixture
def collector() -> Iterator[None]:
    """Put the collector back as it was: these tests change process-wide state."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector")
async def test_the_standalone_app_freezes_start_up_objects_and_sets_the_gc_threshold() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    app = create_app(Settings(gc_threshold=12_345))
    async with running(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert gc.get_threshold() == (12_345, 10, 10)
        assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("collector")
async def test_gc_tuning_can_be_turned_off_and_a_host_app_keeps_its_collector() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    async with running(create_app(Settings(gc_threshold=0, gc_freeze=False))):
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() == 0
    rc = Roomcast(Settings())
    host = FastAPI(lifespan=rc.lifespan)
    host.include_router(rc.router)
    async with running(host):
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() == 0


async def test_the_standalone_app_answers_ws_before_its_router_and_passes_the_rest_on() -> None:
    from roomcast.api.realtime import DirectWebSocketRoute, _route_path

    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])

    middleware = DirectWebSocketRoute(inner)
    await middleware({"type": "http", "path": "/ws", "root_path": ""}, None, None)
    await middleware({"type": "websocket", "path": "/other", "root_path": ""}, None, None)
    assert seen == ["/ws", "/other"]  # an HTTP /ws and other sockets reach the app
    assert _route_path({"path": "/api/ws", "root_path": "/api"}) == "/ws"
    assert _route_path({"path": "/apiws", "root_path": "/api"}) == "/apiws"
    assert _route_path({"path": "/ws", "root_path": ""}) == "/ws"

    app = create_app(Settings())
    async with running(app) as client, aconnect_ws("http://test/ws", client) as ws:
        await ws.send_text('{"op": "ping", "id": 1}')
        assert json.loads(await ws.receive_text())["id"] == 1


async def test_the_standalone_apps_ws_is_the_connections_own_coroutine() -> None:
    import inspect

    from roomcast.app import Entry
    from roomcast.transports.websocket import serve_websocket

    async def receive() -> Any:
        raise AssertionError("not run")

    app = create_app(Settings())
    assert inspect.iscoroutinefunction(app.__call__)  # an ASGI 3 app to every tool that asks
    entry = Entry(app)  # what `roomcast serve` hands uvicorn (app.serve_app)
    assert asyncio.iscoroutinefunction(entry.__call__)  # uvicorn's question
    async with running(app):
        scope = {"type": "websocket", "path": "/ws", "root_path": "", "headers": []}
        coroutine: Any = entry(scope, receive, receive)
        try:  # nothing of FastAPI's or of roomcast's routing stays suspended above it
            assert coroutine.cr_code is serve_websocket.__code__
        finally:
            coroutine.close()
        other: Any = entry({"type": "http", "path": "/ws", "root_path": ""}, receive, receive)
        assert other.cr_code is not serve_websocket.__code__  # FastAPI's own __call__
        other.close()


async def test_middleware_added_to_the_standalone_app_still_sees_ws() -> None:
    seen: list[str] = []

    class Spy:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append(f"{scope['type']} {scope['path']}")
            await self.app(scope, receive, send)

    app = create_app(Settings())
    app.add_middleware(Spy)
    async with running(app) as client, aconnect_ws("http://test/ws", client) as ws:
        await ws.send_text('{"op": "ping", "id": 1}')
        assert json.loads(await ws.receive_text())["id"] == 1
    assert "websocket /ws" in seen
