"""The FastAPI tutorial's ConnectionManager, as the fan-out baseline.

This is the broadcast loop from the FastAPI WebSockets tutorial: a list of
sockets, and every text frame one client sends is written to each of them in
turn with ``await ws.send_text(...)``. It runs on the same uvicorn settings
roomcast runs with (websockets-sansio, no compression, 20 s pings).

One addition, so the load client knows when a socket is in the list: right
after a connection is appended it is sent ``{"type":"ready"}``. The tutorial
broadcasts to every connection, the sender included; the bench's publisher
connects last, so its own copy comes back after every subscriber's send was
issued, and it uses that copy as its acknowledgement.

Run::

    python benchmarks/peers/tutorial.py --port 8001
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from uvicorn_settings import WS_SETTINGS  # benchmarks/peers/uvicorn_settings.py

READY = '{"type":"ready"}'


class ConnectionManager:
    """The tutorial's manager: a list of connections and a send loop."""

    def __init__(self) -> None:
        self.active_connections: list[WebSocket] = []

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str) -> None:
        for connection in self.active_connections:
            await connection.send_text(message)


manager = ConnectionManager()
app = FastAPI()


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await manager.connect(websocket)
    try:
        await websocket.send_text(READY)
        while True:
            data = await websocket.receive_text()
            await manager.broadcast(data)
    except WebSocketDisconnect:
        manager.disconnect(websocket)


def main() -> None:
    parser = argparse.ArgumentParser(description="FastAPI tutorial broadcast server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        lifespan="off",
        **WS_SETTINGS,
    )


if __name__ == "__main__":
    main()
