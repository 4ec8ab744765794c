"""Requests carried out against a real hub (memory broker), in process."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from roomcast.auth import Authority
from roomcast.hub.broker import BrokerUnavailable, PresenceEntry
from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.subscriber import Subscriber
from roomcast.protocol.session import Session, SessionLimits
from roomcast.settings import Settings
from roomcast.transports.client import Client
from roomcast.transports.dispatch import handle_text


def client(sub: Subscriber) -> Client:
    authority = Authority(Settings())
    return Client(authority, sub, authority.limiter.lease(None))


async def test_a_history_reply_larger_than_the_outbox_bound_is_still_delivered() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    for n in range(20):
        await hub.publish("r", b'"%s"' % (b"x" * 1000), f"p{n}")
    sub = Subscriber("c", "ann", max_messages=10, max_bytes=4096)
    session = Session(SessionLimits(), sub.rooms)
    conn = client(sub)
    await handle_text('{"op": "history", "id": 1, "room": "r", "limit": 20}', hub, session, conn)
    assert sub.close_code is None
    reply = json.loads(sub.pop() or "")
    assert [e["offset"] for e in reply["result"]["events"]] == list(range(1, 21))


async def test_publish_replies_with_the_events_position() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    sub = Subscriber("c", "ann", max_messages=10, max_bytes=1 << 20)
    session = Session(SessionLimits(), sub.rooms)
    conn = client(sub)
    await handle_text('{"op": "subscribe", "id": 1, "room": "r"}', hub, session, conn)
    await handle_text('{"op": "publish", "id": 2, "room": "r", "data": 5}', hub, session, conn)
    await asyncio.sleep(0)  # a room's events go out at the end of the loop iteration
    frames = [json.loads(f) for f in iter(sub.pop, None)]
    # The reply may come before or after the event (docs/protocol.md, "Ordering").
    assert sorted(str(f.get("id", f.get("type"))) for f in frames) == ["1", "2", "message"]
    (reply,) = [f for f in frames if f.get("id") == 2]
    (event,) = [f for f in frames if f.get("type") == "message"]
    assert reply["result"]["offset"] == event["offset"] == 1


class PresenceDown(MemoryBroker):
    """The memory broker, with its presence store failing (as Redis does when it
    goes away between a subscribe's replay and its join)."""

    async def presence_add(self, room: str, entry: PresenceEntry) -> None:
        raise BrokerUnavailable("redis: presence is down")


async def test_a_subscribe_whose_join_cannot_be_announced_gets_one_reply_and_stays_subscribed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(PresenceDown(), presence=True)
    sub = Subscriber("c", "ann", max_messages=10, max_bytes=1 << 20)
    session = Session(SessionLimits(), sub.rooms)
    conn = client(sub)
    await handle_text('{"op": "subscribe", "id": 1, "room": "r"}', hub, session, conn)
    await hub.publish("r", b"5", "bob")
    await asyncio.sleep(0)
    frames = [json.loads(f) for f in iter(sub.pop, None)]
    assert [f.get("id") for f in frames if "ok" in f] == [1]  # one reply: its ok
    assert frames[0]["ok"] is True
    assert [f["offset"] for f in frames if f.get("type") == "message"] == [1]
    assert sub.rooms == {"r"}
    (warning,) = [r for r in caplog.records if "not announced" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "presence is down" in warning.getMessage()
