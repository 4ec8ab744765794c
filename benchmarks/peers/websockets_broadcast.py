"""A broadcast server on the bare ``websockets`` library, as a fan-out peer.

No ASGI and no framework: ``websockets.asyncio.server.serve`` and the library's
own ``broadcast()``, written the way the websockets documentation's
"Broadcasting" page writes it: a set of open connections, and every text frame
one client sends is passed to ``broadcast(CONNECTIONS, message)``, which writes
it to every open connection, the sender included, without awaiting anything.

Contract (see benchmarks/README.md): WebSocket endpoint ``/ws``; right after a
connection is added to the set it is sent ``{"type":"ready"}``.

Settings match the uvicorn peers: no per-message compression, 20 s pings with a
20 s timeout. Everything else is the library's default.

Backpressure: ``broadcast()`` never waits. It skips connections that are not
OPEN (closing handshake in progress) and connections in the middle of sending
a fragmented message; every other connection gets the frame appended to its
write buffer, however full that buffer is. A client that cannot keep up makes
its buffer grow until the ping timeout closes it (see the websockets docs of
``broadcast``).

Run::

    python benchmarks/peers/websockets_broadcast.py --port 8002
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

READY = '{"type":"ready"}'
PATH = "/ws"

CONNECTIONS: set[ServerConnection] = set()


async def handler(websocket: ServerConnection) -> None:
    CONNECTIONS.add(websocket)
    try:
        await websocket.send(READY)
        async for message in websocket:
            if isinstance(message, str):
                broadcast(CONNECTIONS, message)
    finally:
        CONNECTIONS.remove(websocket)


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
    parser = argparse.ArgumentParser(description="websockets serve() + broadcast() server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper())
    asyncio.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
