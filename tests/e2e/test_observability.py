"""/metrics and the logs of a real `roomcast serve` process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import ServerProcess
from .client import Client
from .sse_client import open_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ServerFactory = Callable[..., ServerProcess]


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus-client's own parser."""
    reply = httpx.get(f"{server.http}/metrics", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_parse_and_move_as_clients_connect_and_publish(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    before = await asyncio.to_thread(scrape, server)
    assert value(before, "roomcast_connections", transport="websocket") == 0
    assert value(before, "roomcast_messages_published_total") == 0
    assert value(before, "roomcast_evictions_total", reason="outbox_full") == 0
    assert value(before, "roomcast_broker_reconnects_total") == 0
    assert value(before, "roomcast_ready") == 1
    assert ("process_resident_memory_bytes", ()) in before

    ann = await Client.open(server.ws, "ann")
    bob = await Client.open(server.ws, "bob")
    for client in (ann, bob):
        assert (await client.request("subscribe", room="chat:m"))["ok"]
    async with open_stream(f"{server.http}/rooms/chat:m/events") as stream:
        await stream.until("subscribed")
        for n in range(5):
            assert (await ann.request("publish", room="chat:m", data={"n": n}))["ok"]
        await stream.messages(5)
        epoch = (await bob.messages(5))[0]["epoch"]
        during = await asyncio.to_thread(scrape, server)
    assert value(during, "roomcast_connections", transport="websocket") == 2
    assert value(during, "roomcast_connections", transport="sse") == 1
    assert value(during, "roomcast_subscriptions") == 3
    assert value(during, "roomcast_rooms") == 1
    assert value(during, "roomcast_messages_published_total") == 5
    assert value(during, "roomcast_messages_delivered_total", path="live") >= 15  # 5 x 3
    assert value(during, "roomcast_publish_to_deliver_seconds_count") == 5
    assert value(during, "roomcast_publish_to_deliver_seconds_bucket", le="+Inf") == 5
    assert 0 < value(during, "roomcast_publish_to_deliver_seconds_sum") < 5

    # A resume's replay is counted too.
    carl = await Client.open(server.ws, "carl")
    reply = await carl.request("subscribe", room="chat:m", since={"epoch": epoch, "offset": 2})
    assert reply["result"]["replayed"] == 3
    for client in (ann, bob, carl):
        await client.close()
    after = await asyncio.to_thread(scrape, server)
    assert value(after, "roomcast_messages_delivered_total", path="replay") == 3
    assert value(after, "roomcast_connections", transport="websocket") == 0


def test_metrics_can_be_turned_off(server_factory: ServerFactory) -> None:
    server = server_factory(metrics="false")
    assert httpx.get(f"{server.http}/metrics", timeout=10).status_code == 404


async def test_json_logs_carry_connection_ids_and_never_a_token(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(log_format="json", log_level="info")
    secret = "eyJhbGciOiJIUzI1NiJ9.secret-part.signature"
    ann = await Client.open(f"{server.ws}?token={secret}&name=x", "ann")
    assert (await ann.request("presence", room="chat:logs"))["ok"]
    async with open_stream(f"{server.http}/events", room="chat:logs", token=secret) as stream:
        await stream.until("subscribed")
    await ann.close()
    await asyncio.sleep(0.5)  # the close is logged after the connection is cleaned up

    text = server.log()
    assert secret not in text
    assert "secret-part" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "msg"} <= line.keys() for line in lines)
    ours = [line for line in lines if line["logger"] == "roomcast.websocket"]
    opened = [line for line in ours if "opened" in line["msg"]]
    closed = [line for line in ours if "closed" in line["msg"]]
    assert len(opened) == 1
    assert len(closed) == 1
    assert opened[0]["conn"] == closed[0]["conn"]
    assert len(opened[0]["conn"]) == 12
    assert closed[0]["user"] == "ann"
    assert closed[0]["seconds"] >= 0
    redacted = [line for line in lines if "[redacted]" in line["msg"]]
    assert redacted  # the handshake and the stream request were logged, without the token
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert any(
        line["path"].startswith("/events?") and "[redacted]" in line["path"] for line in access
    )
