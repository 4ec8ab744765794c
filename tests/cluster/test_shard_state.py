"""/readyz and /metrics while one master of a real Redis Cluster is down
(``cluster-require-full-coverage no``): the process stays ready, names the dead
node as degraded, and reports it as a shard that is down until it returns."""

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
from roomcast.settings import Settings
from roomcast.testing import redis_available

from ..conftest import require
from .topology import PREFIX, admin, cluster_ok, rooms_per_shard, slot_owners, start_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def shard_up(client: httpx.AsyncClient) -> dict[str, float]:
    """``roomcast_redis_shard_up`` by node, from one scrape of /metrics."""
    reply = await client.get("/metrics")
    assert reply.status_code == 200
    return {
        sample.labels["node"]: sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
        if sample.name == "roomcast_redis_shard_up"
    }


async def test_a_dead_master_is_a_degraded_shard_and_readyz_stays_200_until_it_returns(
    tmp_path: Path,
) -> None:
    require(redis_available(), "redis-server (apt-get install redis-server)")
    cluster = await asyncio.to_thread(
        start_cluster, tmp_path / "cluster", node_timeout_ms=2000, full_coverage=False
    )
    try:
        names = {node.port: f"127.0.0.1:{node.port}" for node in cluster.nodes}
        rooms = await rooms_per_shard(cluster, 1)  # master port -> [room]
        async with admin(cluster.nodes[0]) as client:
            control_slot = int(
                await client.execute_command("CLUSTER", "KEYSLOT", f"{PREFIX}:{{!control}}:ch")
            )
        control_port = (await slot_owners(cluster.nodes[0]))[control_slot]
        # A master whose link carries one room only (not the control channel too).
        dead = next(i for i, node in enumerate(cluster.nodes) if node.port != control_port)
        dead_name = names[cluster.nodes[dead].port]
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite",
            redis_url=cluster.url,
            redis_cluster=True,
            redis_prefix=PREFIX,
            redis_timeout=1,
            redis_ping_interval=0.5,
            redis_backoff_cap=0.5,
        )
        app = create_app(settings)
        async with running(app) as client:
            rc: Roomcast = app.state.roomcast
            for (room,) in rooms.values():
                await rc.hub.broker.subscribe(room)
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()["degraded"]) == (200, [])
            assert await shard_up(client) == {name: 1 for name in names.values()}

            await asyncio.to_thread(cluster.nodes[dead].stop)
            answers = []
            async with asyncio.timeout(15):
                while True:
                    ready = await client.get("/readyz")
                    answers.append((ready.status_code, ready.json()["degraded"]))
                    if ready.json()["degraded"]:
                        break
                    await asyncio.sleep(0.05)
            assert {status for status, _ in answers} == {200}
            assert answers[-1] == (200, [dead_name])
            assert ready.json()["status"] == "ok"
            up = await shard_up(client)
            assert up == {name: float(name != dead_name) for name in names.values()}

            await asyncio.to_thread(cluster.nodes[dead].start)
            async with asyncio.timeout(30):
                while not await cluster_ok(cluster.nodes):
                    await asyncio.sleep(0.1)
                while True:
                    ready = await client.get("/readyz")
                    if ready.json()["degraded"] == [] and (await shard_up(client))[dead_name]:
                        break
                    await asyncio.sleep(0.05)
            assert ready.status_code == 200
            assert await shard_up(client) == {name: 1 for name in names.values()}
            (shard,) = [s for s in rc.hub.broker.shards() if s.node == dead_name]
            assert shard.reconnects >= 1
    finally:
        await asyncio.to_thread(cluster.stop)
