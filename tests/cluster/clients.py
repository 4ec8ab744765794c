"""The drills' clients (drill.py): publishers that record what became of every
publish, and subscribers that record every event and resume after a close."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

REDIS_TIMEOUT = 1.0
DEADLINE = REDIS_TIMEOUT + 2.0
"""A publish not answered within this many seconds counts as unanswered."""
PAUSE = 0.05
"""Seconds between one publisher's publishes (after each answer)."""


class DrillClient:
    """A WebSocket connection whose reader never stops: replies resolve futures by
    id, events go to ``on_event`` as they arrive."""

    def __init__(self, conn: ClientConnection, on_event: Callable[[dict[str, Any]], None]):
        self.conn = conn
        self.on_event = on_event
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.close_code: int | None = None
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, on_event: Callable[[dict[str, Any]], None]) -> DrillClient:
        return cls(await connect(url, open_timeout=10), on_event)

    async def _read(self) -> None:
        try:
            async for raw in self.conn:
                frame = json.loads(raw)
                if "type" in frame:
                    self.on_event(frame)
                    continue
                future = self.waiting.pop(frame.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(frame)
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else None
        finally:
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"closed {self.close_code}"))
                    future.exception()

    def send(self, op: str, **fields: Any) -> asyncio.Future[dict[str, Any]]:
        rid = next(self.ids)
        future = self.waiting[rid] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self.conn.send(json.dumps({"op": op, "id": rid, **fields})))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return future

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.conn.close()


@dataclass
class Sent:
    """One publish and what became of it (times: monotonic seconds)."""

    n: int
    room: str
    server: str
    sent: float
    answered: float | None = None
    ok: bool | None = None
    code: str | None = None
    message: str | None = None
    epoch: str | None = None
    offset: int | None = None

    def on_reply(self, future: asyncio.Future[dict[str, Any]]) -> None:
        """A done callback: the reply, if the connection delivered one."""
        if not future.cancelled() and future.exception() is None:
            self.answer(future.result())

    def answer(self, reply: dict[str, Any]) -> None:
        self.answered = time.monotonic()
        self.ok = bool(reply.get("ok"))
        if self.ok:
            self.epoch, self.offset = reply["result"]["epoch"], reply["result"]["offset"]
        else:
            self.code = reply.get("error", {}).get("code", "?")
            self.message = reply.get("error", {}).get("message")

    @property
    def position(self) -> tuple[str, int]:
        """Where an acknowledged publish went (epoch, offset)."""
        assert self.epoch is not None, "not acknowledged"
        assert self.offset is not None, "not acknowledged"
        return self.epoch, self.offset

    @property
    def late(self) -> bool:
        return self.answered is None or self.answered - self.sent > DEADLINE


class Publisher:
    """Publishes 0, 1, 2, ... to one room from one server until stopped; one
    publish in flight at a time, the next after its answer or its deadline.
    A closed connection is opened again (and counted in :attr:`closes`)."""

    def __init__(self, room: str, server: str, url: str) -> None:
        self.room, self.server, self.url = room, server, url
        self.sent: list[Sent] = []
        self.closes: list[int | None] = []
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        client: DrillClient | None = None
        for n in itertools.count():
            if self.stopping:
                break
            if client is None or client.reader.done():
                if client is not None:
                    self.closes.append(client.close_code)
                try:
                    client = await DrillClient.open(self.url, lambda _: None)
                except (OSError, InvalidHandshake, TimeoutError):
                    await asyncio.sleep(0.5)
                    continue
            record = Sent(n, self.room, self.server, time.monotonic())
            self.sent.append(record)
            future = client.send("publish", room=self.room, data=n)
            future.add_done_callback(record.on_reply)
            await asyncio.wait({future}, timeout=DEADLINE)
            await asyncio.sleep(PAUSE)
        if client is not None:  # late answers still count, as late
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DEADLINE):
                    while any(s.answered is None for s in self.sent[-20:]):
                        await asyncio.sleep(0.05)
            await client.close()

    async def stop(self) -> None:
        self.stopping = True
        if self.task is not None:
            await self.task


@dataclass
class Watcher:
    """One subscriber of one room on one server. A subscribe that fails is
    tried again (counted in :attr:`refused`); on a closed connection it resumes
    from the last position it saw, and a resume answered ``recovered: false``
    counts as a signalled gap, like a ``reset``."""

    room: str
    server: str
    url: str
    messages: list[tuple[str, int, Any]] = field(default_factory=list)
    signals: list[tuple[str, str, int]] = field(default_factory=list)  # kind, epoch, offset
    arrived: list[float] = field(default_factory=list)  # when each of messages came
    signalled: list[float] = field(default_factory=list)  # when each of signals came
    closes: list[int | None] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    stopped: bool = False
    """Set by the drill's close: :meth:`keep_subscribed` ends even if a cancel is lost."""
    subscribed: bool = False
    position: tuple[str, int] | None = None
    client: DrillClient | None = None

    def on_event(self, frame: dict[str, Any]) -> None:
        if frame.get("room") != self.room:
            return
        if frame["type"] == "message":
            self.messages.append((frame["epoch"], frame["offset"], frame["data"]))
            self.arrived.append(time.monotonic())
            self.position = (frame["epoch"], frame["offset"])
        elif frame["type"] == "reset":
            self.signals.append(("reset", frame["epoch"], frame["offset"]))
            self.signalled.append(time.monotonic())
            self.position = (frame["epoch"], frame["offset"])

    async def subscribe(self, timeout: float = 15) -> None:
        """Open a connection and subscribe (resuming when a position is known),
        trying again until ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                if self.client is None or self.client.reader.done():
                    self.client = await DrillClient.open(self.url, self.on_event)
                since = None
                if self.position is not None:
                    since = {"epoch": self.position[0], "offset": self.position[1]}
                try:
                    reply = await self.client.send("subscribe", room=self.room, since=since)
                except ConnectionError as exc:
                    self.refused.append(str(exc))
                    continue
                if reply["ok"]:
                    self.subscribed = True
                    break
                self.refused.append(reply["error"]["code"])
                await asyncio.sleep(0.2)
        result = reply["result"]
        if since is not None and not result["recovered"]:
            self.signals.append(("not recovered", result["epoch"], result["offset"]))
            self.signalled.append(time.monotonic())
            self.position = (result["epoch"], result["offset"])

    async def keep_subscribed(self) -> None:
        """Reconnect and resume whenever the server closes the connection."""
        while not self.stopped:
            assert self.client is not None
            await self.client.reader
            self.closes.append(self.client.close_code)
            with contextlib.suppress(Exception):
                await self.subscribe()
            await asyncio.sleep(0.2)

    def covered(self, position: tuple[str, int]) -> bool:
        """Whether a signal told this subscriber to reload past ``position``."""
        epoch, offset = position
        return any(e != epoch or o >= offset for _, e, o in self.signals)
