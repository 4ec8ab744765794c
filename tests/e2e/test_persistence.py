"""Acceptance: persisted rooms over a real server process and a real database."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ..conftest import ServerProcess
from ..postgres_server import PostgresServer
from .client import Client

pytestmark = pytest.mark.e2e

ServerFactory = Callable[..., ServerProcess]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test here runs on a SQLite file and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/rooms.db"
    server = request.getfixturevalue("postgres_server")
    return str(server.url(server.create_database()))


def create_room(server: ServerProcess, name: str, **options: object) -> httpx.Response:
    return httpx.post(f"{server.http}/rooms", json={"name": name, **options}, timeout=10)


async def test_rooms_are_created_listed_inspected_and_deleted(
    server_factory: ServerFactory, database_url: str
) -> None:
    server = server_factory(database_url=database_url)
    created = create_room(server, "chat:kept", persist=True, history_size=50)
    assert created.status_code == 201
    assert created.json()["persist"] is True
    assert create_room(server, "chat:kept").status_code == 409
    assert create_room(server, "chat:other").status_code == 201
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        listing = (await http.get("/rooms", params={"limit": 1})).json()
        assert listing["total"] == 2
        assert [r["name"] for r in listing["rooms"]] == ["chat:kept"]
        watcher = await Client.open(server.ws, "watcher")
        await watcher.request("subscribe", room="chat:kept")
        await http.post("/rooms/chat:kept/messages", json={"data": 1})
        detail = (await http.get("/rooms/chat:kept")).json()
        assert (detail["offset"], detail["local_subscribers"], detail["total_subscribers"]) == (
            1,
            1,
            1,
        )
        assert (await http.delete("/rooms/chat:kept")).status_code == 204
        assert (await watcher.event("deleted"))["room"] == "chat:kept"
        reply = await watcher.request("unsubscribe", room="chat:kept")
        assert reply["error"]["code"] == "not_subscribed"  # the server unsubscribed it
        assert (await http.get("/rooms/chat:kept")).status_code == 404
        assert (await http.delete("/rooms/chat:kept")).status_code == 404


async def test_durable_publishes_are_acknowledged_after_commit_and_need_a_persisted_room(
    server_factory: ServerFactory, database_url: str
) -> None:
    server = server_factory(database_url=database_url)
    create_room(server, "log:audit", persist=True)
    client = await Client.open(server.ws)
    reply = await client.request("publish", room="log:audit", data={"n": 1}, durable=True)
    assert reply["ok"], reply
    ephemeral = await client.request("publish", room="chat:temp", data=1, durable=True)
    assert ephemeral["error"]["code"] == "bad_request"
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        rest = await http.post("/rooms/log:audit/messages?durable=true", json={"data": {"n": 2}})
        assert rest.status_code == 201
        assert rest.json()["offset"] == 2
        conflict = await http.post("/rooms/chat:temp/messages?durable=true", json={"data": 1})
        assert conflict.status_code == 409


async def test_a_resume_older_than_the_brokers_history_is_filled_from_sql(
    server_factory: ServerFactory, database_url: str
) -> None:
    server = server_factory(database_url=database_url, history_size=5, presence="false")
    create_room(server, "feed:long", persist=True)
    writer = await Client.open(server.ws)
    replies = [
        await writer.request("publish", room="feed:long", data=n, durable=True) for n in range(20)
    ]
    epoch = replies[0]["result"]["epoch"]
    reader = await Client.open(server.ws)
    reply = await reader.request("subscribe", room="feed:long", since={"epoch": epoch, "offset": 2})
    assert reply["result"]["recovered"] is True
    assert reply["result"]["replayed"] == 18
    assert [m["offset"] for m in await reader.messages(18)] == list(range(3, 21))
    # A room that is not persisted cannot do the same: its history is the broker's.
    for n in range(20):
        await writer.request("publish", room="feed:short", data=n)
    short = await reader.request("subscribe", room="feed:short", since={"epoch": "x", "offset": 2})
    assert short["result"]["recovered"] is False
    # And history pages reach back into SQL too.
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        page = (await http.get("/rooms/feed:long/messages", params={"limit": 8})).json()
        assert [e["offset"] for e in page["events"]] == list(range(13, 21))
        older = (await http.get("/rooms/feed:long/messages", params={"before": 13})).json()
        assert [e["offset"] for e in older["events"]] == list(range(1, 13))
        assert older["more"] is False


async def test_persisted_rooms_and_their_positions_survive_a_restart(
    server_factory: ServerFactory, database_url: str
) -> None:
    first = server_factory(database_url=database_url, presence="false")
    create_room(first, "chat:durable", persist=True)
    client = await Client.open(first.ws)
    published = [
        await client.request("publish", room="chat:durable", data=n, durable=True) for n in range(3)
    ]
    epoch = published[0]["result"]["epoch"]
    await client.close()
    assert first.stop(signal.SIGTERM) in (0, -signal.SIGTERM)

    second = server_factory(database_url=database_url, presence="false")
    async with httpx.AsyncClient(base_url=second.http, timeout=10) as http:
        room = (await http.get("/rooms/chat:durable")).json()
        assert (room["persist"], room["epoch"], room["offset"]) == (True, epoch, 3)
        page = (await http.get("/rooms/chat:durable/messages")).json()
        assert [e["data"] for e in page["events"]] == [0, 1, 2]
    client = await Client.open(second.ws)
    resumed = await client.request(
        "subscribe", room="chat:durable", since={"epoch": epoch, "offset": 1}
    )
    assert (resumed["result"]["recovered"], resumed["result"]["replayed"]) == (True, 2)
    after = await client.request("publish", room="chat:durable", data=3)
    assert (after["result"]["epoch"], after["result"]["offset"]) == (epoch, 4)


async def test_rooms_of_a_persisted_namespace_are_kept_without_being_created(
    server_factory: ServerFactory, database_url: str
) -> None:
    settings = {
        "database_url": database_url,
        "presence": "false",
        "namespaces": '{"log": {"persist": true, "history_size": 2}}',
    }
    first = server_factory(**settings)
    client = await Client.open(first.ws)
    published = [
        await client.request("publish", room="log:app", data=n, durable=True) for n in range(4)
    ]
    assert all(reply["ok"] for reply in published)  # durable: only persisted rooms allow it
    refused = await client.request("publish", room="chat:x", data=0, durable=True)
    assert not refused["ok"]
    epoch = published[0]["result"]["epoch"]
    await client.close()
    assert first.stop(signal.SIGTERM) in (0, -signal.SIGTERM)

    second = server_factory(**settings)
    client = await Client.open(second.ws)
    # The broker keeps 2 events (history_size); the other two come from SQL.
    resumed = await client.request("subscribe", room="log:app", since={"epoch": epoch, "offset": 0})
    assert (resumed["result"]["recovered"], resumed["result"]["replayed"]) == (True, 4)
    after = await client.request("publish", room="log:app", data=4)
    assert (after["result"]["epoch"], after["result"]["offset"]) == (epoch, 5)


async def test_with_the_database_down_persisted_rooms_refuse_and_others_go_on(
    server_factory: ServerFactory, own_postgres: PostgresServer
) -> None:
    database = own_postgres.create_database()
    url = own_postgres.url(database)
    server = server_factory(database_url=url, database_timeout=1, room_options_ttl=0.2)
    create_room(server, "log:kept", persist=True)
    client = await Client.open(server.ws)
    assert (await client.request("publish", room="log:kept", data=0, durable=True))["ok"]

    own_postgres.stop("immediate")
    durable = await client.request("publish", room="log:kept", data=1, durable=True)
    # It went out live before the commit failed: not `unavailable` (refused before
    # anyone got it, safe to retry) but `not_persisted` (a retry would deliver it twice).
    assert durable["error"]["code"] == "not_persisted"
    plain = await client.request("publish", room="log:kept", data=2)
    assert plain["error"]["code"] == "unavailable"  # refused before anyone receives it
    await asyncio.sleep(0.3)  # past the options cache: the last known options still hold
    assert (await client.request("publish", room="log:kept", data=3))["ok"] is False
    assert (await client.request("publish", room="chat:free", data=1))["ok"]

    own_postgres.restart()
    async with asyncio.timeout(30):
        while not (reply := await client.request("publish", room="log:kept", data=4, durable=True))[
            "ok"
        ]:
            await asyncio.sleep(0.2)
    # What was acknowledged as durable is committed; the durable publish that got
    # `not_persisted` had already gone out live (the broker assigns offsets, so it
    # publishes before the commit): it is in the broker's history, not in SQL.
    stored = own_postgres.psql('SELECT data FROM messages ORDER BY "offset"', database)
    assert stored.split() == ["0", "4"]
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        page = (await http.get("/rooms/log:kept/messages")).json()
    assert [e["data"] for e in page["events"]] == [0, 1, 4]
    assert reply["result"]["offset"] == page["events"][-1]["offset"]
