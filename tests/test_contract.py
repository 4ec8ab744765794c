"""The frame checker of the end-to-end suites (tests/contract.py) rejects what the
AsyncAPI document does not describe, and its tap sees what real clients receive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from . import contract as contract_module
from .contract import Contract, contract

MESSAGE = {
    "type": "message",
    "room": "chat:a",
    "epoch": "e1",
    "offset": 1,
    "data": {"text": "hi"},
    "sender": "ann",
    "ts": 1795324714.2,
}
PUBLISHED: dict[str, Any] = {"id": 3, "ok": True, "result": {"epoch": "e1", "offset": 1}}
SUBSCRIBED = {"room": "chat:a", "epoch": "e1", "offset": 0, "recovered": False, "replayed": 0}


@pytest.fixture
def document() -> Contract:
    return contract()


# -- what is accepted: the controls ------------------------------------------------------


def test_frames_the_protocol_describes_are_accepted_as_their_message(document: Contract) -> None:
    assert document.ws_frame(MESSAGE).message == "messageEvent"
    assert document.ws_frame(PUBLISHED, "publish").ok
    assert document.ws_frame(PUBLISHED).message == "publishReply"  # op unknown: any reply
    error = {"id": None, "ok": False, "error": {"code": "bad_request", "message": "not JSON"}}
    assert document.ws_frame(error, "publish").message == "errorReply"
    assert document.sse_event("subscribed", "e1:0", SUBSCRIBED).ok
    assert document.sse_event("message", "chat:a=e1:1;chat:b=e2:7", MESSAGE).ok  # /events
    assert document.sse_event(
        "join", None, {"type": "join", "room": "chat:a", "user": "ann", "conn": "c1"}
    ).ok


# -- what is rejected ----------------------------------------------------------------------


def test_a_field_the_document_does_not_name_is_rejected(document: Contract) -> None:
    verdict = document.ws_frame({**MESSAGE, "extra": 1})
    assert not verdict.ok
    assert "'extra' was unexpected" in " ".join(verdict.problems)
    nested = {**PUBLISHED, "result": {**PUBLISHED["result"], "shard": 2}}
    assert not document.ws_frame(nested, "publish").ok


def test_a_field_of_the_wrong_type_is_rejected(document: Contract) -> None:
    verdict = document.ws_frame({**MESSAGE, "offset": "1"})
    assert not verdict.ok
    assert any(p.startswith("offset:") for p in verdict.problems)
    assert not document.ws_frame({**PUBLISHED, "id": "3"}, "publish").ok
    assert not document.ws_frame({**PUBLISHED, "ok": 1}, "publish").ok


def test_an_event_type_the_document_does_not_have_is_rejected(document: Contract) -> None:
    verdict = document.ws_frame({**MESSAGE, "type": "typing"})
    assert verdict.message is None
    assert verdict.problems == ("no event of type 'typing' in the document",)
    assert not document.sse_event("typing", None, {}).ok


def test_a_frame_that_is_neither_a_reply_nor_an_event_is_rejected(document: Contract) -> None:
    assert not document.ws_frame({"id": 1, "result": {}}).ok
    assert not document.ws_frame([MESSAGE]).ok


def test_a_reply_is_checked_against_the_op_of_its_request(document: Contract) -> None:
    pong = {"id": 3, "ok": True, "result": {"ts": 1.5}}
    assert document.ws_frame(pong).message == "pingReply"
    verdict = document.ws_frame(pong, "publish")
    assert (verdict.ok, verdict.message) == (False, "publishReply")
    assert verdict.problems == (
        "result: Additional properties are not allowed ('ts' was unexpected)",
        "result: 'epoch' is a required property",
        "result: 'offset' is a required property",
    )
    assert not document.ws_frame(PUBLISHED, "no-such-op").ok
    unknown = {"id": 6, "ok": False, "error": {"code": "unknown_op", "message": "unknown op"}}
    assert document.ws_frame(unknown, "no-such-op").message == "errorReply"
    assert not document.ws_frame({**unknown, "ok": True}, "no-such-op").ok


@pytest.mark.parametrize(
    "sse_id",
    [None, "e1", "e1:x", ":1", "e1:1:2", "chat:a=e1:1;", "x" * 65 + ":1", ""],
    ids=[
        "missing",
        "no-offset",
        "offset-not-a-number",
        "no-epoch",
        "two-offsets",
        "trailing-separator",
        "epoch-too-long",
        "empty",
    ],
)
def test_an_sse_id_of_the_wrong_shape_is_rejected(document: Contract, sse_id: str | None) -> None:
    verdict = document.sse_event("message", sse_id, MESSAGE)
    assert verdict.message == "sseMessage"
    assert verdict.problems
    assert all(p.startswith("headers") for p in verdict.problems)


def test_an_sse_payload_is_checked_by_its_event_name(document: Contract) -> None:
    assert not document.sse_event("subscribed", "e1:0", MESSAGE).ok  # a message's payload
    assert not document.sse_event("close", None, {"code": "3000", "reason": "bye"}).ok


def test_sse_lines_are_parsed_into_events_as_a_browser_would() -> None:
    lines = [
        ": ping",
        "retry: 1000",
        "",
        "event: message",
        "id: e1:1",
        'data: {"a":',
        "data: 1}",
        "",
        "event: close",
        "",
        "data:{}",
        "",
    ]
    assert contract_module.parse_sse(lines) == [
        ("message", "e1:1", '{"a":\n1}'),
        ("close", None, ""),  # no data: dispatched anyway, so that it is checked
        ("message", None, "{}"),
    ]


# -- the tap sees what clients receive -------------------------------------------------------


@pytest.fixture
async def misbehaving_server() -> AsyncIterator[int]:
    """A real WebSocket server that answers any request with a ping's reply and then
    sends a message event with an extra field and a valid join event."""

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            request = json.loads(raw)
            await ws.send(json.dumps({"id": request["id"], "ok": True, "result": {"ts": 1.0}}))
            await ws.send(json.dumps({**MESSAGE, "extra": True}))
            await ws.send(json.dumps({"type": "join", "room": "chat:a", "user": "b", "conn": "c"}))

    async with serve(handler, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


async def test_the_tap_checks_what_a_websocket_client_receives_against_its_request(
    monkeypatch: pytest.MonkeyPatch, misbehaving_server: int
) -> None:
    tap = contract_module.install(monkeypatch)
    async with connect(f"ws://127.0.0.1:{misbehaving_server}/ws") as ws:
        await ws.send(json.dumps({"op": "publish", "id": 7, "room": "chat:a", "data": 1}))
        received = [await ws.recv() for _ in range(3)]
    assert len(received) == 3
    seen, failures = tap.check()
    assert seen == {"joinEvent": 1, "(undescribed)": 2}
    assert len(failures) == 2
    assert "publishReply" in failures[0]  # a ping's reply to a publish
    assert "'extra' was unexpected" in failures[1]


async def test_frames_from_a_port_marked_not_roomcast_are_not_checked(
    monkeypatch: pytest.MonkeyPatch, misbehaving_server: int
) -> None:
    tap = contract_module.install(monkeypatch)
    tap.not_roomcast(misbehaving_server)
    async with connect(f"ws://127.0.0.1:{misbehaving_server}/ws") as ws:
        await ws.send(json.dumps({"op": "ping", "id": 1}))
        for _ in range(3):
            await ws.recv()
    assert tap.check() == ({}, [])


async def test_the_tap_checks_every_event_of_an_event_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = (
        f"event: subscribed\nid: e1:0\ndata: {json.dumps(SUBSCRIBED)}\n\n"
        f"event: message\nid: e1-1\ndata: {json.dumps(MESSAGE)}\n\n"
        f"event: message\nid: e1:1\ndata: {json.dumps(MESSAGE)}\n\n"
    )

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"connection: close\r\n\r\n" + events.encode()
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(respond, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tap = contract_module.install(monkeypatch)
    lines: list[Any] = []
    async with (
        server,
        httpx.AsyncClient(timeout=10) as http,
        http.stream("GET", f"http://127.0.0.1:{port}/rooms/chat:a/events") as response,
    ):
        lines = [line async for line in response.aiter_lines()]
    assert "id: e1-1" in lines
    seen, failures = tap.check()
    assert seen == {"sseSubscribed": 1, "sseMessage": 1, "(undescribed)": 1}
    assert len(failures) == 1
    assert "e1-1" in failures[0]
