"""The AsyncAPI document's examples, replayed against a live server.

Every request example of the document (``components.messages.<op>.examples``), sent
in the order of its ids on one WebSocket, is a working session: each gets exactly one
reply with its id, and that reply is one of the messages the document's operation
``receive<Op>`` names as its reply (schemas and ``$ref``\\ s read from the document
alone, not from the Python models). The SSE channels' first events validate too."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect

from ..auth.keys import SECRET, hs256
from ..conftest import ServerProcess
from ..contract import Contract, contract
from .client import Client
from .sse_client import Event, SseStream, open_stream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ServerFactory = Callable[..., ServerProcess]
SENTINEL = 1_000_000
"""The id of a last ping: once its reply is in, every earlier reply is too."""
AUDIENCE = "roomcast"


def request_examples(document: Contract) -> list[tuple[str, dict[str, Any]]]:
    """(op, payload) of every example of every request message, in the order of the
    examples' ids."""
    examples = []
    for op, pointer in document.requests.items():
        message = document.resolve({"$ref": "#" + pointer})[1]
        examples += [(op, copy.deepcopy(example["payload"])) for example in message["examples"]]
    return sorted(examples, key=lambda example: example[1]["id"])


def reply_messages(document: Contract, op: str) -> list[str]:
    """The message pointers ``operations.receive<Op>.reply.messages`` resolve to."""
    operation = document.document["operations"][f"receive{op.capitalize()}"]
    return [document.resolve(ref)[0] for ref in operation["reply"]["messages"]]


async def replay(url: str, frames: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Send each frame and wait for its reply, then a ping with id SENTINEL; every
    reply received (the sentinel's excluded) and the number of events."""
    replies: list[dict[str, Any]] = []
    events = 0
    async with connect(url, open_timeout=10) as ws:

        async def until_reply(rid: int) -> None:
            nonlocal events
            while True:
                async with asyncio.timeout(10):
                    frame = json.loads(await ws.recv())
                if "type" in frame:
                    events += 1
                    continue
                if frame.get("id") == rid == SENTINEL:
                    return
                replies.append(frame)
                if frame.get("id") == rid:
                    return

        for frame in frames:
            await ws.send(json.dumps(frame))
            await until_reply(frame["id"])
        await ws.send(json.dumps({"op": "ping", "id": SENTINEL}))
        await until_reply(SENTINEL)
    return replies, events


def check_replies(
    document: Contract,
    examples: list[tuple[str, dict[str, Any]]],
    replies: list[dict[str, Any]],
    failing: dict[str, str],
) -> None:
    """One reply per example, of its operation's reply messages; ok unless its op is
    in ``failing`` (op -> the error code expected)."""
    assert Counter(reply.get("id") for reply in replies) == Counter(
        payload["id"] for _, payload in examples
    ), "exactly one reply per request"
    by_id = {reply["id"]: reply for reply in replies}
    for op, payload in examples:
        reply = by_id[payload["id"]]
        verdicts = [document.message(pointer, reply) for pointer in reply_messages(document, op)]
        valid = [v.message for v in verdicts if v.ok]
        assert len(valid) == 1, f"{op} example {payload}: reply {reply}: {verdicts}"
        if op in failing:
            assert valid == ["errorReply"], reply
            assert reply["error"]["code"] == failing[op], reply
        else:
            assert valid == [f"{op}Reply"], reply
            assert reply["ok"] is True


def test_every_request_op_of_the_document_has_an_example_with_a_distinct_id() -> None:
    document = contract()
    examples = request_examples(document)
    assert {op for op, _ in examples} == set(document.requests)
    assert len({payload["id"] for _, payload in examples}) == len(examples)
    assert examples[0][0] == "connect"


async def test_the_documents_examples_replayed_with_auth_off_get_one_valid_reply_each(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(auth="off")
    document = contract()
    examples = request_examples(document)
    replies, events = await replay(server.ws, [payload for _, payload in examples])
    # refresh needs auth=jwt: with auth=off the server refuses it.
    check_replies(document, examples, replies, failing={"refresh": "bad_request"})
    assert events >= 1  # the examples' publish comes back to the subscribed connection


async def test_the_documents_examples_replayed_with_auth_jwt_and_real_tokens_all_succeed(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(auth="jwt", jwt_secret=SECRET, jwt_audience=AUDIENCE)
    document = contract()
    examples = request_examples(document)

    def token() -> str:
        return hs256(
            sub="ann",
            aud=AUDIENCE,
            exp=int(time.time()) + 300,
            rooms=["chat:*"],
            publish=["chat:*"],
        )

    for op, payload in examples:
        if op in ("connect", "refresh"):
            payload["token"] = token()  # the examples' token is a placeholder
    replies, _ = await replay(server.ws, [payload for _, payload in examples])
    check_replies(document, examples, replies, failing={})
    refreshed = next(r for r in replies if r["id"] == dict(examples)["refresh"]["id"])
    assert refreshed["result"]["expires"] > time.time()


# -- Server-Sent Events ----------------------------------------------------------------------


async def read_until(stream: SseStream, kind: str, count: int, into: list[Event]) -> None:
    """Read events into ``into`` until ``count`` of ``kind`` are among those read now."""
    seen = 0
    while seen < count:
        event = await stream.next()
        into.append(event)
        seen += event.event == kind


def check_events(document: Contract, events: list[Event]) -> Counter[str]:
    """Each event against the document; how many of each message there were."""
    names: Counter[str] = Counter()
    for event in events:
        verdict = document.sse_event(event.event, event.id, event.data)
        assert verdict.ok, f"{event}: {verdict}"
        names[verdict.message or "?"] += 1
    return names


async def test_a_rooms_event_stream_sends_what_the_document_describes(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(auth="off")
    document = contract()
    publisher = await Client.open(server.ws, "bob")
    try:
        await publisher.request("publish", room="chat:sse", data={"text": "before"})
        url = f"{server.http}/rooms/chat:sse/events"
        events: list[Event] = []
        async with open_stream(url, name="ann") as stream:
            await read_until(stream, "subscribed", 1, events)
            await publisher.request("publish", room="chat:sse", data={"text": "live"})
            await read_until(stream, "message", 1, events)
    finally:
        await publisher.close()
    names = check_events(document, events)
    assert (names["sseSubscribed"], names["sseMessage"]) == (1, 1)
    assert events[0].event == "subscribed"
    assert events[-1].data["data"] == {"text": "live"}


async def test_the_several_rooms_event_stream_sends_what_the_document_describes(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(auth="off")
    document = contract()
    rooms = ["chat:one", "chat:two"]
    publisher = await Client.open(server.ws, "bob")
    try:
        events: list[Event] = []
        async with open_stream(f"{server.http}/events", room=rooms, name="ann") as stream:
            await read_until(stream, "subscribed", 2, events)
            for room in rooms:
                await publisher.request("publish", room=room, data=room)
            await read_until(stream, "message", 2, events)
    finally:
        await publisher.close()
    names = check_events(document, events)
    assert (names["sseSubscribed"], names["sseMessage"]) == (2, 2)
    messages = [event for event in events if event.event == "message"]
    assert [event.data["data"] for event in messages] == rooms
    assert all(";" in (event.id or "") for event in messages)  # every room's position
