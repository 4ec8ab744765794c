"""The Redis broker's resync hold is bounded, and so is the publish pipeline: real
redis-servers, a real failover that leaves a process talking to a read-only replica."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from roomcast.app import create_app
from roomcast.hub.redis import RedisBroker
from roomcast.hub.stats import STATS
from roomcast.protocol.events import Notice
from roomcast.runtime import make_broker
from roomcast.settings import Settings

from ..redis_server import RedisServer
from .broker_contract import RecordingSink, sink_has


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def replicating(server: RedisServer, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while "master_link_status:up" not in await asyncio.to_thread(
            server.cli, "INFO", "replication"
        ):
            await asyncio.sleep(0.05)


async def test_a_resync_that_keeps_failing_holds_at_most_history_size_then_resets(
    own_redis: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a failover the process still talks to the old master, now a read-only
    replica: pub/sub there still carries the room (replicated), but every resync read
    fails with READONLY. The hold stops at ``history_size`` messages: subscribers get
    a ``reset`` at the newest held event, and live messages flow again."""
    new_master = RedisServer(tmp_path / "new-master", None, "--repl-diskless-sync-delay", "0")
    new_master.start()
    p = prefix()
    sink = RecordingSink()
    reader = RedisBroker(
        own_redis.url, prefix=p, history_size=5, ping_interval=0.5, timeout=1.0, backoff_cap=0.2
    )
    old_writer = RedisBroker(own_redis.url, prefix=p)
    new_writer = RedisBroker(new_master.url, prefix=p)
    reader.bind(sink)
    for writer in (old_writer, new_writer):
        writer.bind(RecordingSink())
    await reader.start()
    await old_writer.start()
    await new_writer.start()
    try:
        await reader.subscribe("r")
        for n in range(2):
            await old_writer.publish("r", b"%d" % n, "w")
        await sink_has(sink, 2)
        await asyncio.to_thread(own_redis.cli, "REPLICAOF", "127.0.0.1", str(new_master.port))
        await replicating(own_redis)
        await asyncio.to_thread(own_redis.cli, "CLIENT", "KILL", "TYPE", "pubsub")
        await wait_for(lambda: reader.reconnects >= 1 and reader.ready)
        assert "r" in reader._held  # its resync fails: READONLY on every read
        abandoned = STATS.resyncs_abandoned
        caplog.set_level(logging.WARNING, logger="roomcast.redis")

        for n in range(6):  # notices only, past the bound: passed on, still held
            await new_writer.publish_notice(Notice("join", "r", {"user": f"u{n}", "conn": "c"}))
        await wait_for(lambda: len(sink.notices) == 6)
        assert [n.kind for n in sink.notices] == ["join"] * 6
        assert reader._held["r"] == []

        events = [await new_writer.publish("r", b"%d" % n, "w") for n in range(5)]
        await wait_for(lambda: len(reader._held.get("r", [])) == 5)
        assert len(sink.events) == 2  # held, not passed over the gap
        events.append(await new_writer.publish("r", b"5", "w"))  # one more than history_size
        await wait_for(lambda: len(sink.notices) == 7)
        reset = sink.notices[-1]
        newest = events[-1].position
        assert (reset.kind, reset.fields) == ("reset", {"epoch": newest.epoch, "offset": 6})
        assert "r" not in reader._held
        assert reader.live_position("r") == newest
        assert STATS.resyncs_abandoned == abandoned + 1
        gave_up = [r for r in caplog.records if "gave up" in r.getMessage()]
        assert len(gave_up) == 1
        assert "\n" not in gave_up[0].getMessage()

        for n in range(3):  # live again, from after the reset's position
            await new_writer.publish("r", b"%d" % n, "w")
        await sink_has(sink, 5)
        assert [e.offset for e in sink.events[2:]] == [7, 8, 9]
    finally:
        await reader.stop()
        await old_writer.stop()
        await new_writer.stop()
        new_master.stop()


async def test_the_publish_pipeline_carries_at_most_redis_max_batch(
    redis_server: RedisServer,
) -> None:
    settings = Settings(redis_url=redis_server.url, redis_prefix=prefix(), redis_max_batch=4)
    broker = make_broker(settings)
    broker.bind(RecordingSink())
    await broker.start()
    try:
        assert isinstance(broker, RedisBroker)
        events = await asyncio.gather(*(broker.enqueue_publish("r", b"1", "t") for _ in range(40)))
        assert [e.offset for e in events] == list(range(1, 41))
        assert broker.publish_pipelines >= 40 // 4 - 1  # the first may go alone
    finally:
        await broker.stop()


async def test_abandoned_resyncs_are_counted_in_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(STATS, "resyncs_abandoned", 3)
    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            text = (await http.get("/metrics")).text
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples["roomcast_broker_resyncs_abandoned_total"] == 3
