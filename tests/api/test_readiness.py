"""/readyz for a load balancer, and per-shard state in /metrics: 200 while some broker
shard serves (listing the degraded ones), 503 only when the process serves nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from roomcast.app import Roomcast, create_app
from roomcast.hub.broker import ShardState
from roomcast.settings import Settings

from ..redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite", **values)


async def scrape(client: httpx.AsyncClient) -> Samples:
    reply = await client.get("/metrics")
    assert reply.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def shard_samples(samples: Samples) -> dict[str, dict[str, float]]:
    """``{metric name: {node: value}}`` of the roomcast_redis_shard_* families."""
    out: dict[str, dict[str, float]] = {}
    for (name, labels), value in samples.items():
        if name.startswith("roomcast_redis_shard_"):
            out.setdefault(name, {})[dict(labels)["node"]] = value
    return out


async def test_the_memory_broker_has_no_shards_nothing_degraded_and_no_shard_metrics(
    tmp_path: Path,
) -> None:
    async with running(create_app(settings(tmp_path))) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["degraded"] == []
        assert shard_samples(await scrape(client)) == {}


async def test_readyz_stays_200_naming_degraded_shards_and_is_503_when_none_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(settings(tmp_path))
    states = [
        ShardState("127.0.0.1:7000", up=True, reconnects=2),
        ShardState("127.0.0.1:7001", up=False, reconnects=5, held_rooms=3, held_messages=40),
        ShardState("127.0.0.1:7002", up=True),
    ]
    async with running(app) as client:
        rc: Roomcast = app.state.roomcast
        monkeypatch.setattr(rc.hub.broker, "shards", lambda: states)
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert (body["status"], body["broker"]) == ("ok", True)
        assert body["degraded"] == ["127.0.0.1:7001"]
        shards = shard_samples(await scrape(client))
        assert shards == {
            "roomcast_redis_shard_up": {
                "127.0.0.1:7000": 1,
                "127.0.0.1:7001": 0,
                "127.0.0.1:7002": 1,
            },
            "roomcast_redis_shard_reconnects_total": {
                "127.0.0.1:7000": 2,
                "127.0.0.1:7001": 5,
                "127.0.0.1:7002": 0,
            },
            "roomcast_redis_shard_held_rooms": {
                "127.0.0.1:7000": 0,
                "127.0.0.1:7001": 3,
                "127.0.0.1:7002": 0,
            },
            "roomcast_redis_shard_held_messages": {
                "127.0.0.1:7000": 0,
                "127.0.0.1:7001": 40,
                "127.0.0.1:7002": 0,
            },
        }

        states[:] = [ShardState(s.node, up=False) for s in states]
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert (body["status"], body["broker"]) == ("unavailable", False)
        assert body["degraded"] == [s.node for s in states]
        assert ("roomcast_ready", ()) in (samples := await scrape(client))
        assert samples[("roomcast_ready", ())] == 0


async def test_master_switches_are_counted_only_for_a_shard_the_sentinels_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(settings(tmp_path))
    states = [ShardState("main", up=True, reconnects=1, master_switches=2)]
    async with running(app) as client:
        rc: Roomcast = app.state.roomcast
        monkeypatch.setattr(rc.hub.broker, "shards", lambda: states)
        samples = await scrape(client)
        assert samples[("roomcast_redis_master_switches_total", (("node", "main"),))] == 2

        states[:] = [ShardState("main", up=True), ShardState("127.0.0.1:7000", up=True)]
        samples = await scrape(client)
        assert not [name for name, _ in samples if name.startswith("roomcast_redis_master")]
        assert shard_samples(samples)["roomcast_redis_shard_up"] == {"main": 1, "127.0.0.1:7000": 1}


async def test_with_a_single_redis_readyz_is_503_while_it_is_down_as_before(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    values = {"redis_url": own_redis.url, "redis_ping_interval": 0.5, "redis_timeout": 1}
    app = create_app(settings(tmp_path, **values))
    async with running(app) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["degraded"] == []
        assert shard_samples(await scrape(client))["roomcast_redis_shard_up"] == {"main": 1}

        await asyncio.to_thread(own_redis.stop)
        async with asyncio.timeout(10):
            while (ready := await client.get("/readyz")).status_code == 200:
                await asyncio.sleep(0.05)
        assert ready.status_code == 503
        assert ready.json()["degraded"] == ["main"]
        assert ready.json()["broker"] is False
        assert shard_samples(await scrape(client))["roomcast_redis_shard_up"] == {"main": 0}

        await asyncio.to_thread(own_redis.start)
        async with asyncio.timeout(10):
            while (ready := await client.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.05)
        assert ready.json()["degraded"] == []
        shards = shard_samples(await scrape(client))
        assert shards["roomcast_redis_shard_up"] == {"main": 1}
        assert shards["roomcast_redis_shard_reconnects_total"] == {"main": 1}
