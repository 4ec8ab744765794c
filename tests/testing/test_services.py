"""Real services from roomcast.testing: redis-server and PostgreSQL on free ports, and
roomcast running on them under LiveServer."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roomcast import Settings
from roomcast.testing import (
    LiveServer,
    PostgresServer,
    RedisServer,
    connect,
    free_port,
    port_open,
    redis_available,
)

from ..conftest import require
from .conftest import host_app

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    require(redis_available(), "redis-server (apt-get install redis-server)")
    with RedisServer(tmp_path / "redis") as server:
        yield server


def test_free_port_is_a_port_nobody_listens_on() -> None:
    port = free_port()
    assert not port_open(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert port_open(port)


def test_redis_server_answers_ping_and_is_gone_after_the_block(tmp_path: Path) -> None:
    require(redis_available(), "redis-server (apt-get install redis-server)")
    with RedisServer(tmp_path / "redis") as server:
        assert server.cli("PING") == "PONG"
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        port = server.port
    assert not port_open(port)


def test_redis_server_starts_again_empty_on_the_same_port(redis: RedisServer) -> None:
    redis.cli("SET", "k", "v")
    port = redis.port
    redis.stop()
    redis.start()
    assert redis.port == port
    assert redis.cli("GET", "k") == ""


async def test_two_roomcasts_on_one_redis_fan_out_to_each_others_clients(
    redis: RedisServer,
) -> None:
    """Two LiveServers sharing a Redis are two workers of one app."""
    settings = Settings(redis_url=redis.url, redis_prefix=f"t{uuid.uuid4().hex[:8]}")
    async with (
        LiveServer(host_app(settings).app) as one,
        LiveServer(host_app(settings).app) as two,
        connect(one.ws_url("/rt/ws"), name="ann") as ann,
        connect(two.ws_url("/rt/ws"), name="bob") as bob,
    ):
        await ann.subscribe("chat:redis")
        await bob.subscribe("chat:redis")
        await bob.publish("chat:redis", {"text": "across workers"})
        event = await ann.next_event("message", room="chat:redis")
        assert event["data"] == {"text": "across workers"}
        joined = [await ann.next_event("join", room="chat:redis") for _ in range(2)]
        assert sorted(e["user"] for e in joined) == ["ann", "bob"]  # any order across servers
        members = await bob.presence("chat:redis")  # Redis presence covers both servers
        assert sorted(m["user"] for m in members) == ["ann", "bob"]
        history = await ann.history("chat:redis")
        assert [e["data"] for e in history["events"]] == [{"text": "across workers"}]


def test_postgres_server_runs_sql_and_makes_databases(postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    assert postgres_server.psql("SELECT 1", database=name) == "1"
    assert postgres_server.url(name).endswith(f":{postgres_server.port}/{name}")


async def test_roomcast_keeps_its_rooms_in_postgres_under_live_server(
    postgres_server: PostgresServer,
) -> None:
    database = postgres_server.create_database()
    settings = Settings(database_url=postgres_server.url(database))
    async with LiveServer(host_app(settings).app) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            created = await http.post("/rt/rooms", json={"name": "chat:pg", "persist": True})
            assert created.status_code == 201, created.text
        async with connect(server.ws_url("/rt/ws")) as client:
            await client.publish("chat:pg", "kept", durable=True)
    rows = postgres_server.psql("SELECT count(*) FROM messages", database=database)
    assert rows == "1"
