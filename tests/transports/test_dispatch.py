"""Requests carried out against a real hub (memory broker), in process."""

from __future__ import annotations

import json

from roomcast.auth import Authority
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


async def test_publish_replies_with_the_events_position_after_the_event() -> None:
    hub = Hub(MemoryBroker(), presence=False)
    sub = Subscriber("c", "ann", max_messages=10, max_bytes=1 << 20)
    session = Session(SessionLimits(), sub.rooms)
    conn = client(sub)
    await handle_text('{"op": "subscribe", "id": 1, "room": "r"}', hub, session, conn)
    await handle_text('{"op": "publish", "id": 2, "room": "r", "data": 5}', hub, session, conn)
    frames = [json.loads(f) for f in iter(sub.pop, None)]
    assert [f.get("id", f.get("type")) for f in frames] == [1, "message", 2]
    assert frames[2]["result"]["offset"] == frames[1]["offset"] == 1
