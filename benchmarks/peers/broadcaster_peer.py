"""FastAPI + ``broadcaster`` (encode/broadcaster), as a fan-out peer.

This is broadcaster's documented chat pattern moved onto FastAPI: each
WebSocket connection subscribes to the channel ``bench`` with
``broadcast.subscribe()`` and forwards every event it gets to its socket, while
a receiver task publishes every text frame the client sends with
``broadcast.publish(channel="bench", message=text)``. So a message goes
client -> publish -> backend -> broadcaster's listener -> one queue per
subscriber -> one task wake-up and one ``send_text`` per subscriber.

Backends: ``Broadcast("memory://")`` by default (one process only);
``--redis-url redis://...`` uses ``Broadcast(url)`` on Redis pub/sub, which is
what lets several ``--workers`` share the channel. Several workers with the
memory backend are refused: each process would have its own channel.

Contract (see benchmarks/README.md): WebSocket endpoint ``/ws``; right after
the connection's subscription is in place it is sent ``{"type":"ready"}``.

Backpressure: none. broadcaster's per-subscriber queues are unbounded and its
listener ``await``s ``queue.put`` for each of them, so a slow client's backlog
grows in server memory until the client goes away.

uvicorn settings are the tutorial peer's (websockets-sansio, no compression,
20 s pings), except that the lifespan is on: it connects and disconnects the
Broadcast.

Run::

    python benchmarks/peers/broadcaster_peer.py --port 8003
    python benchmarks/peers/broadcaster_peer.py --port 8003 --workers 2 \\
        --redis-url redis://127.0.0.1:6379
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import uvicorn
from broadcaster import Broadcast
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from uvicorn_settings import WS_SETTINGS  # benchmarks/peers/uvicorn_settings.py

READY = '{"type":"ready"}'
CHANNEL = "bench"
MEMORY_URL = "memory://"
URL_ENV = "BROADCASTER_PEER_URL"
"""How the parent process hands the backend URL to uvicorn's worker processes."""


def create_app(url: str | None = None) -> FastAPI:
    broadcast = Broadcast(url or os.environ.get(URL_ENV, MEMORY_URL))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await broadcast.connect()
        try:
            yield
        finally:
            await broadcast.disconnect()

    app = FastAPI(lifespan=lifespan)

    async def receiver(websocket: WebSocket) -> None:
        async for message in websocket.iter_text():
            await broadcast.publish(channel=CHANNEL, message=message)

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            async with broadcast.subscribe(channel=CHANNEL) as subscriber:
                await websocket.send_text(READY)
                async with anyio.create_task_group() as task_group:

                    async def run_receiver() -> None:
                        await receiver(websocket)
                        task_group.cancel_scope.cancel()

                    task_group.start_soon(run_receiver)
                    async for event in subscriber:
                        await websocket.send_text(event.message)
        except* WebSocketDisconnect:
            pass

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="FastAPI + broadcaster broadcast server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-url", help="redis://... (default: memory://, one worker)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    if args.workers > 1 and not args.redis_url:
        parser.error("--workers > 1 needs --redis-url: memory:// is per process")

    url = args.redis_url or MEMORY_URL
    os.environ[URL_ENV] = url  # inherited by the worker processes
    # uvicorn needs an import string (here a factory) to start worker processes.
    app: FastAPI | str = "broadcaster_peer:create_app" if args.workers > 1 else create_app(url)
    uvicorn.run(
        app,
        factory=isinstance(app, str),
        workers=args.workers,
        app_dir=str(Path(__file__).resolve().parent),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        lifespan="on",
        **WS_SETTINGS,
    )


if __name__ == "__main__":
    main()
