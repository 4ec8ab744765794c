"""A small Server-Sent Events reader over httpx's streaming client, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    id: str | None
    data: Any


class SseStream:
    """Events of one open ``text/event-stream`` response, parsed as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.last_id: str | None = None
        self.retry: int | None = None

    async def next(self, timeout: float = 10) -> Event:
        """The next event (comments and retry lines are consumed on the way)."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if not line:
                    if "data" in fields or "event" in fields:
                        break
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                if name == "retry":
                    self.retry = int(value)
                else:
                    fields[name] = value
            else:
                raise EOFError("the stream ended")
        if "id" in fields:
            self.last_id = fields["id"]
        data = json.loads(fields["data"]) if "data" in fields else None
        return Event(fields.get("event", "message"), fields.get("id"), data)

    async def until(self, kind: str, timeout: float = 10) -> Event:
        async with asyncio.timeout(timeout):
            while (event := await self.next(timeout)).event != kind:
                pass
        return event

    async def messages(self, count: int, timeout: float = 10) -> list[Event]:
        return [await self.until("message", timeout) for _ in range(count)]


@contextlib.asynccontextmanager
async def open_stream(
    url: str,
    last_event_id: str | None = None,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> AsyncIterator[SseStream]:
    headers = dict(headers or {})
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", url, headers=headers, params=params) as response,
    ):
        yield SseStream(response)
