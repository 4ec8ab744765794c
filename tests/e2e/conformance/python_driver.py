"""The conformance scenarios' driver for roomcast.client: the clients run in this
process, on an asyncio event loop of a thread of their own, so that the scenarios
(synchronous, like the browser's) drive both libraries with the same calls."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from roomcast.client import (
    Client,
    ClientClosed,
    ClientOptions,
    ConnectionFailed,
    Disconnected,
    Message,
    QueueFull,
    Recovered,
    RequestRefused,
    RequestTimeout,
    Reset,
    StateChange,
    Subscription,
    connect,
)

from .scenarios import Ack, Observed

if TYPE_CHECKING:
    from ...conftest import ServerProcess

T = TypeVar("T")
CALL_TIMEOUT = 60.0


def code_of(exc: BaseException) -> str:
    """roomcast.js's error code for what roomcast.client raised."""
    if isinstance(exc, RequestRefused):
        return exc.raw_code
    if isinstance(exc, RequestTimeout):
        return "timeout"
    if isinstance(exc, QueueFull):
        return "queue_full"
    if isinstance(exc, Disconnected):
        return "disconnected"
    if isinstance(exc, ClientClosed | ConnectionFailed):
        return "closed"
    raise exc


class PythonDriver:
    kind = "python"

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="conformance")
        self._thread.start()
        self._clients: dict[str, Client] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT)

    def open(
        self,
        label: str,
        server: ServerProcess,
        *,
        name: str | None = None,
        tokens: Sequence[str] = (),
        request_timeout: float = 10.0,
    ) -> None:
        self._call(self._open(label, server.ws, name, list(tokens), request_timeout))

    async def _open(
        self, label: str, url: str, name: str | None, tokens: list[str], request_timeout: float
    ) -> None:
        record: dict[str, Any] = {
            "events": [], "states": [], "errors": [], "acks": [], "tokens": 0, "busy": 0,
        }  # fmt: skip
        self._records[label] = record

        async def provider() -> str:
            asked: int = record["tokens"] + 1
            record["tokens"] = asked
            return tokens[min(asked, len(tokens)) - 1]

        def on_state(change: StateChange) -> None:
            record["states"].append([change.state.value, change.code])

        options = ClientOptions(
            min_delay=0.05, max_delay=0.3, request_timeout=request_timeout, refresh_before=None
        )
        self._clients[label] = await connect(
            url,
            token_provider=provider if tokens else None,
            name=name,
            on_state=on_state,
            options=options,
        )

    def subscribe(self, label: str, room: str) -> str | None:
        return self._call(self._subscribe(label, room))

    async def _subscribe(self, label: str, room: str) -> str | None:
        record = self._records[label]
        try:
            sub = await self._clients[label].subscribe(room)
        except Exception as exc:
            record["errors"].append(["subscribe", code_of(exc)])
            return code_of(exc)
        self._spawn(self._consume(record, sub))
        return None

    async def _consume(self, record: dict[str, Any], sub: Subscription) -> None:
        events = record["events"]
        try:
            async for event in sub:
                if isinstance(event, Message):
                    events.append(["message", event.room, event.epoch, event.offset, event.data])
                elif isinstance(event, Reset):
                    events.append(["gap", event.room, event.epoch, event.offset, event.cause])
                elif isinstance(event, Recovered):
                    events.append(["recovered", event.room])
        except ConnectionFailed:
            pass  # the client gave up: its state says so
        except RequestRefused as exc:  # a resubscribe refused
            record["errors"].append(["resubscribe", exc.raw_code])

    def publish(self, label: str, room: str, data: Any) -> Ack | str:
        return self._call(self._publish(label, room, data))

    async def _publish(self, label: str, room: str, data: Any) -> Ack | str:
        record = self._records[label]
        try:
            result = await self._clients[label].publish(room, data)
        except Exception as exc:
            record["errors"].append(["publish", code_of(exc)])
            return code_of(exc)
        ack = Ack(room, result.epoch, result.offset, result.duplicate, data)
        record["acks"].append(list(ack))
        return ack

    def pump(self, label: str, room: str, count: int, pause: float = 0.02) -> None:
        record = self._records[label]

        async def pumping() -> None:
            try:
                for n in range(count):
                    await self._publish(label, room, [label, n])
                    await asyncio.sleep(pause)
            finally:
                record["busy"] -= 1

        async def start() -> None:
            record["busy"] += 1
            self._spawn(pumping())

        self._call(start())

    def in_flight(self, label: str) -> int:
        async def count() -> int:
            return self._clients[label].in_flight

        return self._call(count())

    def observed(self, label: str) -> Observed:
        async def snapshot() -> dict[str, Any]:
            return copy.deepcopy(self._records[label])

        return Observed.of(self._call(snapshot()))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        async def closing() -> None:
            await asyncio.gather(*(c.close() for c in self._clients.values()))
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        try:
            self._call(closing())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
