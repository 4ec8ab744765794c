"""FastAPI + sse-starlette with a queue per client, as a fan-out peer (SSE).

The common pattern for broadcasting over Server-Sent Events: every client of
``GET /events`` gets a bounded ``asyncio.Queue``, registered in a set, and an
``EventSourceResponse`` whose generator yields each queued frame as
``{"data": frame}``; ``POST /publish`` with the raw frame as its body puts the
frame into every registered queue with ``put_nowait`` and answers 200
``{"ok":true}``. The publisher is not a subscriber; publish is a plain HTTP
request.

Contract (see benchmarks/README.md): the first thing a stream sends is an
``event: ready`` with ``data: {"type":"ready"}``, yielded once the client's
queue is registered; every later event is an unnamed ``message`` event whose
data is one published frame, unchanged.

Backpressure: a client whose queue is full (``--queue-size`` frames waiting,
default 1,000) is dropped: its queue leaves the set, whatever it still held is
discarded and its stream ends, so the client has to reconnect (and has missed
frames). Publishing never waits on a subscriber.

Everything else is sse-starlette's default (15 s comment pings, its own
graceful drain of open streams when uvicorn shuts down). uvicorn settings are
the tutorial peer's (the WebSocket ones do not matter here).

Run::

    python benchmarks/peers/sse_starlette_peer.py --port 8006
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI, Request
from sse_starlette import EventSourceResponse
from uvicorn_settings import WS_SETTINGS  # benchmarks/peers/uvicorn_settings.py

READY = '{"type":"ready"}'
DEFAULT_QUEUE_SIZE = 1000


def create_app(queue_size: int = DEFAULT_QUEUE_SIZE) -> FastAPI:
    app = FastAPI()
    clients: set[asyncio.Queue[str | None]] = set()

    async def stream(queue: asyncio.Queue[str | None]) -> AsyncIterator[dict[str, str]]:
        clients.add(queue)
        try:
            yield {"event": "ready", "data": READY}
            while (frame := await queue.get()) is not None:
                yield {"data": frame}
        finally:
            clients.discard(queue)

    def drop(queue: asyncio.Queue[str | None]) -> None:
        """End a slow client's stream: empty its queue and leave it the end marker."""
        clients.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    @app.get("/events")
    async def events() -> EventSourceResponse:
        return EventSourceResponse(stream(asyncio.Queue(maxsize=queue_size)))

    @app.post("/publish")
    async def publish(request: Request) -> dict[str, bool]:
        frame = (await request.body()).decode()
        for queue in list(clients):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:
                drop(queue)
        return {"ok": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="FastAPI + sse-starlette broadcast server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8006)
    parser.add_argument(
        "--queue-size",
        type=int,
        default=DEFAULT_QUEUE_SIZE,
        help="frames a client may have waiting before it is dropped "
        f"(default {DEFAULT_QUEUE_SIZE})",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    if args.queue_size < 1:
        parser.error("--queue-size must be at least 1")
    uvicorn.run(
        create_app(args.queue_size),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        lifespan="off",
        **WS_SETTINGS,
    )


if __name__ == "__main__":
    main()
