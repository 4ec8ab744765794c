"""roomcast in a host app, in process: ``authenticate`` in its forms, two instances
in one app, signals left alone, and the server-side API with its REST routes."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from httpx_ws import WebSocketDisconnect, WebSocketUpgradeError, aconnect_ws
from starlette.requests import HTTPConnection

from roomcast import (
    CloseCode,
    DurableNotPersisted,
    ErrorCode,
    NotStarted,
    Principal,
    Refused,
    RequestError,
    Roomcast,
    Settings,
)

from .test_app import running

pytestmark = pytest.mark.timeout(30)

API_KEY = "backend-key-0123456789"


def user_of(conn: HTTPConnection) -> str | None:
    return conn.headers.get("x-user")


def host_with(authenticate: Any, **settings: Any) -> tuple[Roomcast, FastAPI]:
    rc = Roomcast(Settings(**settings), authenticate=authenticate)
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router, prefix="/rt")
    return rc, app


async def ws_frames(
    client: httpx.AsyncClient, user: str | None, *frames: dict[str, Any]
) -> list[Any]:
    headers = {"x-user": user} if user else {}
    replies = []
    async with aconnect_ws("/rt/ws", client, headers=headers) as ws:
        for frame in frames:
            await ws.send_text(json.dumps(frame))
            replies.append(json.loads(await ws.receive_text(timeout=5)))
    return replies


async def upgrade_status(client: httpx.AsyncClient, user: str | None) -> int:
    """The HTTP status the upgrade was refused with (101: accepted). httpx-ws's
    transport advertises no denial responses, so roomcast's own refusal is a close
    before the accept, which a server sends as 403 (real statuses:
    tests/e2e/test_embedding.py)."""
    headers = {"x-user": user} if user else {}
    try:
        async with aconnect_ws("/rt/ws", client, headers=headers):
            return 101
    except WebSocketUpgradeError as exc:
        return exc.response.status_code
    except WebSocketDisconnect as exc:
        return 403 if exc.code == CloseCode.POLICY else -exc.code


async def receive_until_closed(ws: Any) -> None:
    while True:
        await ws.receive_text(timeout=5)


def sync_unannotated(conn):  # type: ignore[no-untyped-def]  # the loosest form there is
    user = conn.headers.get("x-user")
    return Principal(user, subscribe="*", publish="*") if user else None


async def as_request(request: Request) -> Principal | None:
    user = request.headers.get("x-user")
    return Principal(user, subscribe="*") if user else None


async def with_depends(
    conn: HTTPConnection, user: Annotated[str | None, Depends(user_of)]
) -> Principal | None:
    return Principal(user, subscribe=["chat:*"], publish=["chat:*"]) if user else None


@pytest.mark.parametrize("authenticate", [sync_unannotated, as_request, with_depends])
async def test_authenticate_in_any_form_decides_rest_and_websocket(authenticate: Any) -> None:
    _, app = host_with(authenticate)
    async with running(app) as client:
        assert (await client.get("/rt/rooms/chat:a/messages")).status_code == 401
        assert (
            await client.get("/rt/rooms/chat:a/messages", headers={"x-user": "u"})
        ).status_code == 200
        assert await upgrade_status(client, None) == 403
        [hello] = await ws_frames(client, "u", {"op": "connect", "id": 1})
        assert hello["result"]["user_id"] == "u"
        assert (await client.get("/rt/healthz")).status_code == 200  # probes stay open


async def test_authenticate_refusing_answers_with_the_status_it_chose() -> None:
    async def authenticate(conn: HTTPConnection) -> Principal | None:
        if conn.headers.get("x-user") == "banned":
            raise Refused("banned")
        if conn.headers.get("x-user") == "teapot":
            raise HTTPException(418, "a teapot")
        return Principal("u", subscribe="*")

    _, app = host_with(authenticate)
    async with running(app) as client:
        banned = await client.get("/rt/rooms/r/messages", headers={"x-user": "banned"})
        assert (banned.status_code, banned.json()) == (403, {"detail": "banned"})
        teapot = await client.get("/rt/rooms/r/messages", headers={"x-user": "teapot"})
        assert teapot.status_code == 418
        assert await upgrade_status(client, "banned") == 403
        assert await upgrade_status(client, "teapot") == 418


async def test_the_hosts_dependency_overrides_reach_authenticate() -> None:
    _, app = host_with(with_depends)
    app.dependency_overrides[user_of] = lambda: "overridden"
    async with running(app) as client:
        [hello] = await ws_frames(client, None, {"op": "connect", "id": 1})
        assert hello["result"]["user_id"] == "overridden"


async def test_a_token_or_refresh_means_nothing_when_the_application_authenticates() -> None:
    _, app = host_with(with_depends, auth="jwt", jwt_secret="s" * 32)
    async with running(app) as client:
        hello, refreshed = await ws_frames(
            client,
            "u",
            {"op": "connect", "id": 1, "token": "not-even-a-jwt"},
            {"op": "refresh", "id": 2, "token": "x"},
        )
        assert hello["result"]["user_id"] == "u"
        assert refreshed["error"]["code"] == "bad_request"


async def test_api_keys_still_make_a_rest_caller_an_administrator() -> None:
    _, app = host_with(with_depends, api_keys=API_KEY)
    async with running(app) as client:
        headers = {"X-API-Key": API_KEY}
        created = await client.post("/rt/rooms", json={"name": "ops:x"}, headers=headers)
        assert created.status_code == 201
        user = await client.post("/rt/rooms", json={"name": "ops:y"}, headers={"x-user": "u"})
        assert user.status_code == 403
        wrong = await client.get("/rt/stats", headers={"X-API-Key": "wrong"})
        assert wrong.status_code == 401


async def test_two_instances_in_one_app_keep_their_own_rooms() -> None:
    a, b = Roomcast(Settings(web=False)), Roomcast(Settings(web=False))
    app = FastAPI()
    app.include_router(a.router, prefix="/a")
    app.include_router(b.router, prefix="/b")

    @contextlib.asynccontextmanager
    async def both(app: FastAPI) -> AsyncIterator[None]:
        async with a.lifespan(app), b.lifespan(app):
            yield

    app.router.lifespan_context = both
    async with running(app) as client:
        await client.post("/a/rooms/r/messages", json={"data": "to a"})
        history_a = (await client.get("/a/rooms/r/messages")).json()
        history_b = (await client.get("/b/rooms/r/messages")).json()
        assert [e["data"] for e in history_a["events"]] == ["to a"]
        assert history_b["events"] == []


async def test_a_mounted_instance_leaves_the_signal_handlers_alone() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    rc = Roomcast(Settings())
    app = FastAPI(lifespan=rc.lifespan)
    async with running(app):
        assert {sig: signal.getsignal(sig) for sig in before} == before
    standalone = Roomcast(Settings(), handle_signals=True)
    app = FastAPI(lifespan=standalone.lifespan)
    async with running(app):
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before[signal.SIGTERM]


async def test_the_server_side_api_needs_the_lifespan() -> None:
    rc = Roomcast(Settings())
    with pytest.raises(NotStarted):
        await rc.publish("r", 1)
    with pytest.raises(NotStarted):
        await rc.disconnect("u")


async def test_publish_broadcast_history_presence_and_stats_from_the_application() -> None:
    rc = Roomcast(Settings())
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router, prefix="/rt")
    async with running(app) as client, aconnect_ws("/rt/ws", client) as ws:
        await ws.send_text(json.dumps({"op": "connect", "id": 1, "name": "ann"}))
        await ws.receive_text(timeout=5)
        for rid, room in ((2, "feed:a"), (3, "feed:b")):
            await ws.send_text(json.dumps({"op": "subscribe", "id": rid, "room": room}))
            assert json.loads(await ws.receive_text(timeout=5))["ok"]
            assert json.loads(await ws.receive_text(timeout=5))["type"] == "join"
        published = await rc.publish("feed:a", {"n": 1})
        assert (published.room, published.offset) == ("feed:a", 1)
        event = json.loads(await ws.receive_text(timeout=5))
        assert (event["data"], event["sender"]) == ({"n": 1}, "server")
        results = await rc.broadcast(["feed:a", "feed:b"], "tick", sender="clock")
        assert [(p.room, p.offset) for p in results] == [("feed:a", 2), ("feed:b", 1)]
        got = [json.loads(await ws.receive_text(timeout=5)) for _ in range(2)]
        assert [(e["room"], e["data"], e["sender"]) for e in got] == [
            ("feed:a", "tick", "clock"),
            ("feed:b", "tick", "clock"),
        ]
        page = await rc.history("feed:a", limit=10)
        assert [m.data for m in page.messages] == [{"n": 1}, "tick"]
        assert (page.offset, page.more) == (2, False)
        assert [m.user for m in await rc.presence("feed:a")] == ["ann"]
        stats = rc.stats()
        assert (stats.connections, stats.websockets, stats.subscriptions) == (1, 1, 2)


async def test_disconnect_and_unsubscribe_by_user_from_the_application() -> None:
    rc, app = host_with(with_depends)
    async with (
        running(app) as client,
        aconnect_ws("/rt/ws", client, headers={"x-user": "ann"}) as ann,
        aconnect_ws("/rt/ws", client, headers={"x-user": "bob"}) as bob,
    ):
        for ws in (ann, bob):
            await ws.send_text(json.dumps({"op": "subscribe", "id": 1, "room": "chat:x"}))
            assert json.loads(await ws.receive_text(timeout=5))["ok"]
        await rc.unsubscribe("bob", "chat:x")
        frames = []
        while not frames or frames[-1].get("type") != "unsubscribed":
            frames.append(json.loads(await bob.receive_text(timeout=5)))
        assert frames[-1] == {"type": "unsubscribed", "room": "chat:x", "reason": "server"}
        await rc.disconnect("ann", code=CloseCode.SLOW_CONSUMER)
        with pytest.raises(WebSocketDisconnect) as closed:
            await receive_until_closed(ann)
        assert closed.value.code == 3001
        await bob.send_text(json.dumps({"op": "ping", "id": 9}))
        assert json.loads(await bob.receive_text(timeout=5))["id"] == 9


async def test_the_server_side_api_checks_its_arguments() -> None:
    rc = Roomcast(Settings(max_payload_bytes=100))
    app = FastAPI(lifespan=rc.lifespan)
    async with running(app):
        cases = [
            (rc.publish("bad room!", 1), ErrorCode.ROOM_INVALID),
            (rc.publish("r", "x" * 200), ErrorCode.TOO_LARGE),
            (rc.publish("r", {1, 2}), ErrorCode.BAD_REQUEST),
            (rc.broadcast(["ok", "not ok"], 1), ErrorCode.ROOM_INVALID),
            (rc.history("r", limit=0), ErrorCode.BAD_REQUEST),
            (rc.disconnect("u", code=CloseCode.NORMAL), ErrorCode.BAD_REQUEST),
            (rc.disconnect("u", code=4321), ErrorCode.BAD_REQUEST),  # type: ignore[arg-type]
        ]
        for call, code in cases:
            with pytest.raises(RequestError) as refused:
                await call
            assert refused.value.code is code
        with pytest.raises(DurableNotPersisted):
            await rc.publish("r", 1, durable=True)


async def test_rest_for_backends_broadcasts_disconnects_and_counts() -> None:
    _, app = host_with(with_depends, api_keys=API_KEY, max_broadcast_rooms=2)
    key = {"X-API-Key": API_KEY}
    async with running(app) as client:
        assert (await client.get("/rt/stats")).status_code == 401
        assert (await client.get("/rt/stats", headers={"x-user": "u"})).status_code == 403
        stats = await client.get("/rt/stats", headers=key)
        assert stats.status_code == 200
        assert stats.json()["connections"] == 0
        body = {"rooms": ["a", "b"], "data": {"x": 1}}
        sent = await client.post("/rt/broadcast", json=body, headers=key)
        assert [(p["room"], p["offset"]) for p in sent.json()["published"]] == [("a", 1), ("b", 1)]
        too_many = await client.post(
            "/rt/broadcast", json={"rooms": ["a", "b", "c"], "data": 1}, headers=key
        )
        assert too_many.status_code == 422
        kicked = await client.post("/rt/users/ann/disconnect", json={"code": 3000}, headers=key)
        assert kicked.status_code == 204
        assert (
            await client.post("/rt/users/ann/disconnect", json={}, headers=key)
        ).status_code == 204
        # No JSON body, no disconnect: a form from another site cannot send one.
        form = await client.post(
            "/rt/users/ann/disconnect",
            content=b"",
            headers={**key, "content-type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 422
        plain = await client.post(
            "/rt/users/ann/disconnect", content=b"{}", headers={**key, "content-type": "text/plain"}
        )
        assert plain.status_code == 422
        bad_code = await client.post("/rt/users/ann/disconnect", json={"code": 1000}, headers=key)
        assert bad_code.status_code == 422
        removed = await client.delete("/rt/users/ann/rooms/chat:x", headers=key)
        assert removed.status_code == 204
        by_user = await client.delete("/rt/users/ann/rooms/chat:x", headers={"x-user": "u"})
        assert by_user.status_code == 403


async def test_a_host_can_guard_the_api_and_leave_the_probes_open() -> None:
    def require_user(user: Annotated[str | None, Depends(user_of)]) -> str:
        if user is None:
            raise HTTPException(401, "log in first")
        return user

    rc = Roomcast(Settings())
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.api_router, prefix="/rt", dependencies=[Depends(require_user)])
    app.include_router(rc.probe_router, prefix="/rt")
    app.include_router(rc.page_router, prefix="/rt")
    async with running(app) as client:
        assert (await client.get("/rt/healthz")).status_code == 200
        assert (await client.get("/rt/readyz")).status_code == 200
        assert (await client.get("/rt/roomcast.js")).status_code == 200
        guarded = await client.get("/rt/rooms/r/messages")
        assert (guarded.status_code, guarded.json()) == (401, {"detail": "log in first"})
        assert await upgrade_status(client, None) == 401
        assert (
            await client.get("/rt/rooms/r/messages", headers={"x-user": "u"})
        ).status_code == 200


async def test_a_sync_authenticate_runs_in_a_thread_not_on_the_event_loop() -> None:
    threads: list[int] = []

    def authenticate(conn: HTTPConnection) -> Principal:
        threads.append(threading.get_ident())
        return Principal("u", subscribe="*")

    _, app = host_with(authenticate)
    async with running(app) as client:
        assert (await client.get("/rt/rooms/r/messages")).status_code == 200
    assert threads
    assert threading.get_ident() not in threads


async def test_without_its_lifespan_roomcast_answers_503_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rc = Roomcast(Settings())
    app = FastAPI()  # lifespan=rc.lifespan forgotten
    app.include_router(rc.router, prefix="/rt")
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for _ in range(2):
            answer = await client.get("/rt/rooms/r/messages")
            assert answer.status_code == 503
    assert "lifespan never started" in caplog.text


def test_roomcast_run_refuses_several_workers_on_the_memory_broker() -> None:
    import roomcast

    with pytest.raises(roomcast.SettingsError, match="2 workers need the Redis broker"):
        roomcast.run("tests.e2e.host_app:app", workers=2, settings=Settings())


def served_by(monkeypatch: pytest.MonkeyPatch, **config: Any) -> None:
    """As if uvicorn ran this process with ``config`` (what its SIGTERM handler shows)."""
    from types import SimpleNamespace

    from roomcast import runtime
    from roomcast.transports.uvicorn_ws import RoomcastWebSocketProtocol

    defaults = {"workers": 1, "ws_protocol_class": RoomcastWebSocketProtocol}
    namespace = SimpleNamespace(**{"ws_per_message_deflate": False, **defaults, **config})
    monkeypatch.setattr(runtime, "serving_config", lambda: namespace)


async def test_the_lifespan_refuses_several_workers_on_the_memory_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from roomcast import SettingsError

    served_by(monkeypatch, workers=3)
    rc = Roomcast(Settings())
    with pytest.raises(SettingsError, match="3 workers need the Redis broker"):
        async with rc.lifespan(FastAPI()):
            pass


async def test_the_lifespan_says_which_websocket_path_the_server_gives(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    cases = [
        ({}, "direct frame writes"),
        ({"ws_per_message_deflate": True}, "per-message compression is on"),
        ({"ws_protocol_class": WebSocketsSansIOProtocol}, "fan-out through ASGI sends"),
    ]
    for config, said in cases:
        served_by(monkeypatch, **config)
        caplog.clear()
        with caplog.at_level(logging.INFO, "roomcast"):
            async with Roomcast(Settings()).lifespan(FastAPI()):
                pass
        assert said in caplog.text
