"""A stand-in WebSocket server for testing roomcast.js on its own: it serves the real
pages and library (roomcast's own web routes) and answers the protocol's requests
with fixed, well-formed replies, and the test tells it what to send or how to close.

What is under test is the browser library, so the stub sends exactly the frames a
test wants, when it wants: ``{"type": "unsubscribed", ...}``, a close with a given
code. Run it from the repository root::

    python -m uvicorn tests.e2e.stub_server:app --port P

Control routes (JSON): ``POST /stub/send`` sends the body as a frame to every open
socket; ``POST /stub/close?code=C&reason=R`` closes every open socket;
``POST /stub/hold?room=R`` leaves subscribes to room R unanswered; ``GET /stub/log``
lists every frame received, each with the ``conn`` number of its connection."""

from __future__ import annotations

import itertools
import json
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

from roomcast.api.web import default_web_dir, web_router

EPOCH = "stubepoc"

app = FastAPI()
app.include_router(web_router(default_web_dir()))

sockets: dict[int, WebSocket] = {}
received: list[dict[str, Any]] = []
held: set[str] = set()
offsets: dict[str, int] = {}
numbers = itertools.count(1)


def result_of(conn: int, frame: dict[str, Any]) -> dict[str, Any] | None:
    """The ``result`` of a successful reply to ``frame``; None: leave it unanswered."""
    op, room = frame.get("op"), frame.get("room", "")
    if op == "connect":
        name = frame.get("name") or "anon"
        return {
            "conn": f"stub{conn}",
            "user": name,
            "user_id": name,
            "expires": None,
            "node": "stub",
            "version": 1,
        }
    if op == "subscribe":
        if room in held:
            return None
        return {"room": room, "epoch": EPOCH, "offset": offsets.get(room, 0),
                "recovered": False, "replayed": 0}  # fmt: skip
    if op == "publish":
        offsets[room] = offsets.get(room, 0) + 1
        return {"epoch": EPOCH, "offset": offsets[room]}
    if op == "history":
        return {"room": room, "epoch": EPOCH, "offset": offsets.get(room, 0),
                "events": [], "more": False}  # fmt: skip
    if op == "presence":
        return {"room": room, "members": []}
    if op == "unsubscribe":
        return {"room": room}
    return {}  # ping and anything else


@app.websocket("/ws")
async def websocket(ws: WebSocket) -> None:
    await ws.accept()
    conn = next(numbers)
    sockets[conn] = ws
    try:
        while True:
            frame = json.loads(await ws.receive_text())
            received.append({"conn": conn, **frame})
            result = result_of(conn, frame)
            if result is not None:
                await ws.send_text(
                    json.dumps({"id": frame.get("id"), "ok": True, "result": result})
                )
    except (WebSocketDisconnect, RuntimeError):  # closed by the client, or by /stub/close
        pass
    finally:
        sockets.pop(conn, None)


@app.post("/stub/send")
async def send(request: Request) -> dict[str, int]:
    text = json.dumps(await request.json())
    sent = 0
    for ws in list(sockets.values()):
        try:
            await ws.send_text(text)
            sent += 1
        except Exception:  # closed meanwhile
            continue
    return {"sent": sent}


@app.post("/stub/close")
async def close(code: int, reason: str = "") -> dict[str, int]:
    closed = 0
    for conn, ws in list(sockets.items()):
        try:
            await ws.close(code, reason)
            closed += 1
        except Exception:  # closed meanwhile
            continue
        finally:
            sockets.pop(conn, None)
    return {"closed": closed}


@app.post("/stub/hold")
async def hold(room: str) -> dict[str, list[str]]:
    held.add(room)
    return {"held": sorted(held)}


@app.get("/stub/log")
async def log() -> list[dict[str, Any]]:
    return received
