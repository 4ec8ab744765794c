"""Acceptance: idempotent publishes against real servers. A publish with an
``idempotency_key`` (WebSocket) or ``Idempotency-Key`` header (REST) that the same
user already used in the room within ``idempotency_window`` seconds is answered
with the first publish's position and ``"duplicate": true``, and nobody receives it
again: after a dropped connection, after a server restart on Redis, and when two
servers race the same key."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from roomcast import ErrorCode, Hooks, Principal, RequestError, Roomcast, Settings
from roomcast.server_api import Published
from roomcast.testing import LiveServer

from ..auth.keys import SECRET, hs256
from ..conftest import ServerProcess
from ..redis_server import RedisServer
from .client import Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ServerFactory = Callable[..., ServerProcess]

JWT = {"auth": "jwt", "jwt_secret": SECRET}


def token(sub: str) -> str:
    return hs256(sub=sub, exp=int(time.time()) + 600, rooms=["*"], publish=["*"])


async def login(server: ServerProcess, sub: str) -> Client:
    client = await Client.open(server.ws)
    reply = await client.request("connect", token=token(sub))
    assert reply["ok"], reply
    return client


def publish_frame(rid: int, room: str, data: Any, key: str | None) -> dict[str, Any]:
    frame = {"op": "publish", "id": rid, "room": room, "data": data}
    return frame if key is None else {**frame, "idempotency_key": key}


async def watch(server: ServerProcess, room: str) -> Client:
    watcher = await login(server, "watcher")
    assert (await watcher.request("subscribe", room=room))["ok"]
    return watcher


async def test_a_websocket_publish_with_a_used_key_answers_the_first_position_as_a_duplicate(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(**JWT)
    watcher = await watch(server, "chat:r")
    alice = await login(server, "alice")
    first = await alice.request("publish", room="chat:r", data=1, idempotency_key="k:1")
    again = await alice.request("publish", room="chat:r", data=2, idempotency_key="k:1")
    position = {"epoch": first["result"]["epoch"], "offset": 1}
    assert first["result"] == position  # the first answer is as without a key
    assert again["result"] == {**position, "duplicate": True}
    # Another user's publish with the same key is published: keys are per user
    bob = await login(server, "bob")
    theirs = await bob.request("publish", room="chat:r", data=3, idempotency_key="k:1")
    assert theirs["result"] == {"epoch": position["epoch"], "offset": 2}
    # The same user's key is the same over REST
    async with httpx.AsyncClient(base_url=server.http) as http:
        posted = await http.post(
            "/rooms/chat:r/messages",
            json={"data": 4},
            headers={"Authorization": f"Bearer {token('alice')}", "Idempotency-Key": "k:1"},
        )
    assert posted.status_code == 201
    assert posted.json() == {"room": "chat:r", **position, "duplicate": True}
    marker = await alice.request("publish", room="chat:r", data=5)
    assert marker["result"]["offset"] == 3
    events = await watcher.messages(3)
    assert [(e["offset"], e["data"], e["sender"]) for e in events] == [
        (1, 1, "alice"),
        (2, 3, "bob"),
        (3, 5, "alice"),
    ]


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("", "at least 1 character"),
        ("x" * 129, "at most 128 characters"),
        ("a key", "should match pattern"),
        ("clé", "should match pattern"),
        (7, "valid string"),
    ],
)
async def test_a_bad_idempotency_key_is_a_bad_request_and_publishes_nothing(
    server_factory: ServerFactory, key: Any, says: str
) -> None:
    server = server_factory()
    client = await Client.open(server.ws)
    reply = await client.request("publish", room="r", data=1, idempotency_key=key)
    assert reply["error"]["code"] == "bad_request"
    assert reply["error"]["message"].startswith("idempotency_key: ")
    assert says in reply["error"]["message"]
    page = await client.request("history", room="r")  # the connection stays open
    assert page["result"]["events"] == []


async def test_a_rest_publish_with_a_used_idempotency_key_header_is_answered_as_a_duplicate(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.http) as http:
        first = await http.post(
            "/rooms/r/messages", json={"data": 1}, headers={"Idempotency-Key": "order-7"}
        )
        again = await http.post(
            "/rooms/r/messages", json={"data": 2}, headers={"Idempotency-Key": "order-7"}
        )
        plain = await http.post("/rooms/r/messages", json={"data": 3})
        assert (first.status_code, again.status_code, plain.status_code) == (201, 201, 201)
        epoch = first.json()["epoch"]
        assert first.json() == {"room": "r", "epoch": epoch, "offset": 1}
        assert again.json() == {"room": "r", "epoch": epoch, "offset": 1, "duplicate": True}
        assert plain.json() == {"room": "r", "epoch": epoch, "offset": 2}
        for bad in ["", "a b", "x" * 129]:
            refused = await http.post(
                "/rooms/r/messages", json={"data": 9}, headers={"Idempotency-Key": bad}
            )
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.json()["detail"]
        page = (await http.get("/rooms/r/messages")).json()
        assert [e["data"] for e in page["events"]] == [1, 3]
        schema = (await http.get("/openapi.json")).json()
    operation = schema["paths"]["/rooms/{room}/messages"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in operation["parameters"]]


async def test_two_servers_on_one_redis_racing_one_key_publish_it_once(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    a = server_factory(redis_url=redis_server.url, redis_prefix="idem-race", **JWT)
    b = server_factory(redis_url=redis_server.url, redis_prefix="idem-race", **JWT)
    watcher = await watch(b, "feed:race")
    on_a, on_b = await login(a, "alice"), await login(b, "alice")
    rounds = 20
    for n in range(rounds):
        key = f"race-{n}"
        await asyncio.gather(
            on_a.send(publish_frame(n, "feed:race", ["a", n], key)),
            on_b.send(publish_frame(n, "feed:race", ["b", n], key)),
        )
    replies_a = [await on_a.reply(n) for n in range(rounds)]
    replies_b = [await on_b.reply(n) for n in range(rounds)]
    for reply_a, reply_b in zip(replies_a, replies_b, strict=True):
        one, other = reply_a["result"], reply_b["result"]
        assert (one["epoch"], one["offset"]) == (other["epoch"], other["offset"])
        assert sorted([one.get("duplicate", False), other.get("duplicate", False)]) == [
            False,
            True,
        ]
    offsets = sorted(r["result"]["offset"] for r in replies_a)
    assert offsets == list(range(1, rounds + 1))
    marker = await on_a.request("publish", room="feed:race", data="end")
    assert marker["result"]["offset"] == rounds + 1
    events = await watcher.messages(rounds + 1)
    assert [e["offset"] for e in events] == list(range(1, rounds + 2))
    assert [e["data"][1] for e in events[:rounds]] == list(range(rounds))


async def test_a_retry_after_a_dropped_connection_is_delivered_once(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(**JWT)
    watcher = await watch(server, "chat:drop")
    first = await login(server, "alice")
    await first.send(publish_frame(1, "chat:drop", "hello", "msg-1"))
    event = await watcher.event()  # it went out; its reply is never read:
    first.conn.transport.abort()  # the socket dies
    retry = await login(server, "alice")
    reply = await retry.request("publish", room="chat:drop", data="hello", idempotency_key="msg-1")
    assert reply["result"] == {
        "epoch": event["epoch"],
        "offset": event["offset"],
        "duplicate": True,
    }
    await retry.request("publish", room="chat:drop", data="marker")
    assert (await watcher.event())["data"] == "marker"  # and nothing between


async def test_an_anonymous_clients_retry_after_a_reconnect_is_a_duplicate(
    server_factory: ServerFactory,
) -> None:
    """Without tokens each connection gets a new ``anon-`` user id; anonymous clients
    share one scope of keys, so the retry on the new connection finds its key."""
    server = server_factory()
    watcher = await Client.open(server.ws)
    assert (await watcher.request("subscribe", room="chat:anon"))["ok"]
    first = await Client.open(server.ws)
    await first.send(publish_frame(1, "chat:anon", "hello", "anon-msg-1"))
    event = await watcher.event()
    first.conn.transport.abort()
    retry = await Client.open(server.ws)
    reply = await retry.request(
        "publish", room="chat:anon", data="hello", idempotency_key="anon-msg-1"
    )
    assert reply["result"] == {
        "epoch": event["epoch"],
        "offset": event["offset"],
        "duplicate": True,
    }
    await retry.request("publish", room="chat:anon", data="marker")
    assert (await watcher.event())["data"] == "marker"


async def test_a_retry_after_a_server_restart_on_redis_is_published_once(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    settings = {"redis_url": redis_server.url, "redis_prefix": "idem-restart", **JWT}
    server = server_factory(**settings)
    alice = await login(server, "alice")
    first = await alice.request("publish", room="chat:re", data="once", idempotency_key="m-1")
    assert "duplicate" not in first["result"]
    server.stop(signal.SIGKILL)
    restarted = server_factory(listen_port=server.port, **settings)
    alice = await login(restarted, "alice")
    retry = await alice.request("publish", room="chat:re", data="once", idempotency_key="m-1")
    assert retry["result"] == {**first["result"], "duplicate": True}
    page = await alice.request("history", room="chat:re")
    assert [(e["offset"], e["data"]) for e in page["result"]["events"]] == [(1, "once")]


async def test_a_key_publishes_again_once_the_window_has_passed(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(idempotency_window=0.5)
    client = await Client.open(server.ws)
    first = await client.request("publish", room="r", data=1, idempotency_key="k")
    await asyncio.sleep(1.0)
    later = await client.request("publish", room="r", data=2, idempotency_key="k")
    assert later["result"] == {"epoch": first["result"]["epoch"], "offset": 2}


async def test_a_window_of_0_publishes_every_publish(server_factory: ServerFactory) -> None:
    server = server_factory(idempotency_window=0)
    client = await Client.open(server.ws)
    replies = [
        await client.request("publish", room="r", data=n, idempotency_key="k") for n in range(3)
    ]
    assert [r["result"]["offset"] for r in replies] == [1, 2, 3]
    assert not any("duplicate" in r["result"] for r in replies)


async def test_a_durable_duplicate_writes_no_second_row_and_waits_for_the_first_ones(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    database = tmp_path / "idem.db"
    server = server_factory(database_url=f"sqlite+aiosqlite:///{database}")
    async with httpx.AsyncClient(base_url=server.http) as http:
        created = await http.post("/rooms", json={"name": "log:d", "persist": True})
        assert created.status_code == 201, created.text
        client = await Client.open(server.ws)
        replies = [
            await client.request(
                "publish", room="log:d", data=n, durable=True, idempotency_key="d-1"
            )
            for n in range(2)
        ]
        assert replies[1]["result"] == {**replies[0]["result"], "duplicate": True}
        posted = await http.post(
            "/rooms/log:d/messages",
            params={"durable": "true"},
            json={"data": 9},
            headers={"Idempotency-Key": "d-2"},
        )
        again = await http.post(
            "/rooms/log:d/messages",
            params={"durable": "true"},
            json={"data": 9},
            headers={"Idempotency-Key": "d-2"},
        )
    assert posted.status_code == again.status_code == 201
    assert again.json() == {**posted.json(), "duplicate": True}
    with sqlite3.connect(database) as db:
        rows = db.execute(
            'SELECT "offset", data FROM messages WHERE room = ? ORDER BY "offset"', ("log:d",)
        ).fetchall()
    assert rows == [(1, "0"), (2, "9")]


async def test_a_durable_duplicate_of_an_event_the_broker_let_go_is_checked_in_the_database(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    database = tmp_path / "idem.db"
    server = server_factory(database_url=f"sqlite+aiosqlite:///{database}")
    async with httpx.AsyncClient(base_url=server.http) as http:
        created = await http.post(
            "/rooms", json={"name": "log:s", "persist": True, "history_size": 1}
        )
        assert created.status_code == 201, created.text
    client = await Client.open(server.ws)
    first = await client.request("publish", room="log:s", data=0, durable=True, idempotency_key="k")
    await client.request("publish", room="log:s", data=1, durable=True)  # pushes it out
    retry = await client.request("publish", room="log:s", data=0, durable=True, idempotency_key="k")
    assert retry["result"] == {**first["result"], "duplicate": True}


async def test_on_publish_does_not_run_for_a_publish_known_as_a_duplicate() -> None:
    seen: list[Any] = []

    async def on_publish(principal: Principal, room: str, data: Any) -> Any:
        seen.append(data)
        return {"checked": data}

    rc = Roomcast(Settings(web=False), hooks=Hooks(on_publish=on_publish))
    from fastapi import FastAPI

    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router)
    async with LiveServer(app) as server:
        client = await Client.open(server.ws_url())
        first = await client.request("publish", room="r", data=1, idempotency_key="k")
        again = await client.request("publish", room="r", data=2, idempotency_key="k")
        assert again["result"] == {**first["result"], "duplicate": True}
        async with httpx.AsyncClient(base_url=server.url) as http:
            posts = [
                await http.post(
                    "/rooms/r/messages", json={"data": n}, headers={"Idempotency-Key": "k2"}
                )  # anonymous over REST too: the same scope as the socket's, so a key of its own
                for n in (3, 4)
            ]
            page = (await http.get("/rooms/r/messages")).json()
        await client.close()
    assert [p.json().get("duplicate", False) for p in posts] == [False, True]
    assert seen == [1, 3]  # never for the duplicates
    assert [e["data"] for e in page["events"]] == [{"checked": 1}, {"checked": 3}]


async def test_the_applications_own_keys_answer_duplicates_and_never_meet_a_users() -> None:
    from fastapi import FastAPI

    rc = Roomcast(Settings(web=False))
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router)
    async with LiveServer(app) as server:
        first = await server.acall(rc.publish("r", 1, idempotency_key="job-1"))
        again = await server.acall(rc.publish("r", 2, sender="other", idempotency_key="job-1"))
        assert (first.offset, first.duplicate) == (1, False)
        assert again == Published("r", first.epoch, 1, duplicate=True)
        client = await Client.open(server.ws_url())
        users = await client.request("publish", room="r", data=3, idempotency_key="job-1")
        assert users["result"] == {"epoch": first.epoch, "offset": 2}
        await client.close()
        with pytest.raises(RequestError) as refused:
            await server.acall(rc.publish("r", 4, idempotency_key="job 1"))
        assert refused.value.code is ErrorCode.BAD_REQUEST
        page = await server.acall(rc.history("r"))
    assert [m.data for m in page.messages] == [1, 3]
