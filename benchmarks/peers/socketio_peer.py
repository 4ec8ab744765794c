"""python-socketio's AsyncServer under uvicorn, as a fan-out peer.

A plain Socket.IO room broadcast: a client emits ``join`` and is put in the
room ``bench``; a client emits ``publish`` with a string and the server emits
it as a ``message`` event to the whole room, the sender included
(``await sio.emit("message", data, room="bench")``).

Socket.IO does not speak the ``/ws`` contract of the other peers; it is driven
with ``roomcast bench --protocol socketio``. The Socket.IO endpoint is the
library's default ``/socket.io/``. ``join`` answers in both ways a Socket.IO
client may wait for: its acknowledgement (``await sio.call("join")``) returns
``"ready"``, and the server also emits a ``ready`` event to that client, in
both cases after the client is in the room.

With ``--redis-url`` the server uses ``socketio.AsyncRedisManager(url)``, the
library's documented way to run several processes: every emit is published to
Redis and each process delivers it to its own members of the room. Several
``--workers`` need it. Clients must then connect with the WebSocket transport
only (``transports=["websocket"]``): long-polling needs sticky sessions, which
uvicorn's workers do not give.

Everything else is the library's default: ``async_handlers=True`` (each event
handler runs in its own task), JSON encoding of every packet, Engine.IO pings.
uvicorn settings are the tutorial peer's (websockets-sansio, no compression,
20 s pings).

Backpressure: none. A room emit encodes the packet once, then starts one task
per member that puts it into that client's Engine.IO queue (an unbounded
``asyncio.Queue``); each client's writer task drains its queue into the socket.
A slow client's backlog grows in server memory until Engine.IO's ping timeout
drops it.

Run::

    python benchmarks/peers/socketio_peer.py --port 8004
    python benchmarks/peers/socketio_peer.py --port 8004 --workers 2 \\
        --redis-url redis://127.0.0.1:6379
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import socketio
import uvicorn
from uvicorn_settings import WS_SETTINGS  # benchmarks/peers/uvicorn_settings.py

ROOM = "bench"
URL_ENV = "SOCKETIO_PEER_REDIS_URL"
"""How the parent process hands the Redis URL to uvicorn's worker processes."""


def create_app(redis_url: str | None = None) -> socketio.ASGIApp:
    redis_url = redis_url or os.environ.get(URL_ENV) or None
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)

    @sio.event
    async def join(sid: str, data: object = None) -> str:
        await sio.enter_room(sid, ROOM)
        await sio.emit("ready", to=sid)
        return "ready"

    @sio.event
    async def publish(sid: str, data: str) -> None:
        await sio.emit("message", data, room=ROOM)

    return socketio.ASGIApp(sio)


def main() -> None:
    parser = argparse.ArgumentParser(description="python-socketio room broadcast server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8004)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-url", help="redis://... (AsyncRedisManager; needed for workers)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    if args.workers > 1 and not args.redis_url:
        parser.error("--workers > 1 needs --redis-url: without it each process has its own rooms")

    if args.redis_url:
        os.environ[URL_ENV] = args.redis_url  # inherited by the worker processes
    # uvicorn needs an import string (here a factory) to start worker processes.
    app: socketio.ASGIApp | str = (
        "socketio_peer:create_app" if args.workers > 1 else create_app(args.redis_url)
    )
    uvicorn.run(
        app,
        factory=isinstance(app, str),
        workers=args.workers,
        app_dir=str(Path(__file__).resolve().parent),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        **WS_SETTINGS,
    )


if __name__ == "__main__":
    main()
