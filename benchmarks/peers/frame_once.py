"""The practical limit of one event to N WebSockets in Python here, as a peer:
the frame is built once and written to every connection's transport in a loop.

Nothing a real server needs is done per delivery: no queue, no backpressure, no
ordering against the connection's own frames beyond what one ``transport.write``
per connection gives, no check that the connection is still open beyond its
transport not closing. Every text frame a client sends is framed once (a server's
frames are unmasked, so they are the same bytes for everyone) and the loop is::

    for transport in TRANSPORTS:
        transport.write(frame)

It runs on the event loop roomcast runs on (uvloop when it is installed, as
uvicorn's ``loop="auto"`` picks), with ``websockets.asyncio.server.serve`` for
the handshake, pings and closing. It is the "limit" row of benchmarks/run.py:
how far a server is from what Python can do at all for one event to N sockets.

Contract (see benchmarks/README.md): WebSocket endpoint ``/ws``; right after a
connection is added it is sent ``{"type":"ready"}``.

Run::

    python benchmarks/peers/frame_once.py --port 8007
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

READY = '{"type":"ready"}'
PATH = "/ws"
TRANSPORTS: dict[ServerConnection, asyncio.Transport] = {}


def text_frame(payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


def fan_out(message: str) -> None:
    frame = text_frame(message.encode())
    for transport in TRANSPORTS.values():
        transport.write(frame)


async def handler(websocket: ServerConnection) -> None:
    await websocket.send(READY)
    TRANSPORTS[websocket] = websocket.transport
    try:
        async for message in websocket:
            if isinstance(message, str):
                fan_out(message)
    finally:
        del TRANSPORTS[websocket]


def only_ws_path(connection: ServerConnection, request: Request) -> Response | None:
    if request.path != PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
    return None


async def run(host: str, port: int) -> None:
    async with serve(
        handler,
        host,
        port,
        process_request=only_ws_path,
        compression=None,
        ping_interval=20.0,
        ping_timeout=20.0,
    ) as server:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.close)
        await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description="frame-once transport.write loop (the limit)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8007)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
        help="event loop: uvloop when installed (auto, as roomcast under uvicorn), or asyncio",
    )  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper())
    if args.loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if args.loop == "uvloop":
                raise
        else:
            uvloop.run(run(args.host, args.port))
            return
    asyncio.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
