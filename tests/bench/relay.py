"""A broadcast server for tests, in a thread: relays every frame to every connection,
and can be told to damage what some connections get (to test the delivery checks)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection, serve

# (connection number, offset) -> frames to send instead of the one relayed
Damage = Callable[[int, int, str], list[str]]


def intact(conn: int, offset: int, frame: str) -> list[str]:
    return [frame]


class Relay:
    """``with Relay(damage) as relay:`` serves ws://127.0.0.1:{relay.port}/ws."""

    def __init__(self, damage: Damage = intact) -> None:
        self.damage = damage
        self.port = 0
        self.connections: list[ServerConnection | None] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: object = None

    async def handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        number = len(self.connections) - 1
        try:
            async for frame in ws:
                assert isinstance(frame, str)
                try:
                    offset = int(json.loads(frame).get("offset", 0))
                except (ValueError, AttributeError):
                    offset = 0
                for i, other in enumerate(list(self.connections)):
                    if other is None:
                        continue
                    out = self.damage(i, offset, frame) if offset and i != number else [frame]
                    for text in out:
                        try:
                            await other.send(text)
                        except Exception:
                            break
        except Exception:
            pass
        finally:
            self.connections[number] = None

    async def _start(self) -> None:
        self.server = await serve(self.handler, "127.0.0.1", 0, compression=None)
        self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.ready.set()

    def __enter__(self) -> Relay:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()  # type: ignore[attr-defined]

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
