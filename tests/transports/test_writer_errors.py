"""Sending to a WebSocket on a real connection (the direct write of a reply,
transports/uvicorn_ws.py, or the writer task's ASGI send, transports/websocket.py
``_write``): an error that is not a gone peer is a bug, logged once with its own
traceback, and the connection is closed 1011 while the others go on."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.websockets import WebSocket

from roomcast import Roomcast, Settings
from roomcast.testing import LiveServer, connect
from roomcast.transports.uvicorn_ws import SansIOWriter

pytestmark = pytest.mark.timeout(30)


MARKER = "break-the-writer"
"""In a room name: sending breaks on the reply to a subscribe to that room."""


class WriterBug(Exception):
    """What the writer hits: no error a gone peer causes."""


def break_the_writer(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Make sending raise WriterBug on any frame that carries :data:`MARKER`: in the
    direct path (roomcast's protocol) where the reply is framed to be written at
    once, in the ASGI path (uvicorn's own protocol) where the writer task sends."""
    if path == "direct":
        real_encode = SansIOWriter.encode

        def encode(self: SansIOWriter, text: str) -> bytes:
            if MARKER in text:
                raise WriterBug("injected")
            return real_encode(self, text)

        monkeypatch.setattr(SansIOWriter, "encode", encode)
    else:
        real_send = WebSocket.send_text

        async def send_text(self: WebSocket, data: str) -> None:
            if MARKER in data:
                raise WriterBug("injected")
            await real_send(self, data)

        monkeypatch.setattr(WebSocket, "send_text", send_text)


@pytest.mark.parametrize(
    ("path", "options"),
    [("direct", {}), ("asgi", {"ws": "websockets-sansio"})],
    ids=["direct-writes", "asgi-sends"],
)
async def test_a_writer_that_fails_is_logged_once_with_its_traceback_and_closes_1011(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    path: str,
    options: dict[str, Any],
) -> None:
    break_the_writer(monkeypatch, path)
    rc = Roomcast(Settings())
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router)
    caplog.set_level(logging.ERROR)
    async with (
        LiveServer(app, **options) as server,
        connect(server.ws_url()) as victim,
        connect(server.ws_url()) as bystander,
    ):
        await bystander.subscribe("chat:calm")
        await victim.send({"op": "subscribe", "id": 1, "room": f"chat:{MARKER}"})
        assert await victim.closed(timeout=10) == 1011
        await server.acall(rc.publish("chat:calm", {"text": "fine"}))
        assert (await bystander.next_event("message"))["data"] == {"text": "fine"}
        assert (await bystander.request("ping"))["ok"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    (error,) = errors
    assert error.exc_info is not None
    assert isinstance(error.exc_info[1], WriterBug)  # its own traceback, not a cancellation's
    assert error.name == ("roomcast.hub" if path == "direct" else "roomcast.websocket")
    assert "failed" in error.getMessage()
