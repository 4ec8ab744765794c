"""The Server-Sent Events client: the same rooms and events, read-only, over httpx.

For listeners that cannot or need not keep a WebSocket (dashboards, workers behind
proxies that only pass HTTP). :class:`EventStream` reads ``GET /events?room=...``
(docs/protocol.md, "Server-Sent Events") and behaves like roomcast.js's
``FeedStream``:

* It remembers the last event id (a position, or one per room) and resumes a lost
  stream with ``Last-Event-ID``: the server replays what was missed, and the stream
  yields :class:`Recovered` (or :class:`Reset` when the gap could not be filled).
* A stream the server ends with a ``close`` event whose code says "reconnect"
  (3000 shutdown, 3001 slow consumer, ...), a stream that breaks, and one silent
  for ``idle_timeout`` (the server sends a comment every ``sse_keepalive`` s) are
  opened again with full-jitter backoff; a code of 3500 and up, or a refusal
  (400, 403, 422; 401 without a ``token_provider``) ends it with
  :class:`ConnectionFailed`. After 3003 (token expired) a ``token_provider`` gives
  the next stream a new token.
* Messages are deduplicated by position.
* A consumer that falls behind is not buffered for without bound: at ``max_buffer``
  events the stream stops reading, the server's bounded outbox fills and evicts
  the stream (3001), and it resumes from the last event taken, with nothing lost
  that the server's history still holds.

Tokens go in the ``Authorization`` header, never in the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson

from ..protocol.events import Position
from .errors import ClientClosed, ConnectionFailed
from .events import Event, Message, Recovered, Reset, SubscribeResult, Unsubscribed, event_of
from .options import StreamOptions
from .position import RoomPosition
from .reconnect import ABNORMAL, backoff_delay, first_attempt, give_up
from .state import ConnectionState, StateChange, can_move, tell
from .tokens import TokenProvider, TokenSource

__all__ = ["EventStream", "parse_event_id", "sse"]

log = logging.getLogger("roomcast.client")

State = ConnectionState
_END = object()


def parse_event_id(value: str, rooms: Iterable[str]) -> dict[str, Position]:
    """The positions an event id names: ``<epoch>:<offset>`` (the only room), or
    ``<room>=<epoch>:<offset>;...``. Parts that are not positions are skipped."""
    rooms = list(rooms)
    parts = [(rooms[0] if len(rooms) == 1 else "", value)] if "=" not in value else []
    for part in value.split(";") if "=" in value else ():
        room, _, position = part.partition("=")
        parts.append((room, position))
    found: dict[str, Position] = {}
    for room, position in parts:
        epoch, sep, offset = position.rpartition(":")
        if room in rooms and sep and epoch and offset.isdigit():
            found[room] = Position(epoch, int(offset))
    return found


@dataclass(slots=True)
class _Ended:
    code: int | None
    reason: str
    status: int | None = None
    retry_after: float = 0.0
    opened: bool = False  # every room's ``subscribed`` arrived
    stop: ConnectionFailed | None = None


class EventStream:
    """Events of one or more rooms over SSE: ``async for event in stream``. Made by
    :func:`sse`. One consumer at a time."""

    def __init__(
        self,
        url: str,
        rooms: Iterable[str],
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        name: str | None = None,
        last_event_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        on_state: Callable[[StateChange], None] | None = None,
        options: StreamOptions | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.rooms = list(dict.fromkeys(rooms))
        if not self.rooms:
            raise ValueError("an event stream needs at least one room")
        self.name = name
        self.options = options or StreamOptions()
        #: The id of the last event with one: what a resume sends as Last-Event-ID.
        self.last_event_id = last_event_id
        #: Each room's latest ``subscribed`` result.
        self.results: dict[str, SubscribeResult] = {}
        self.state = State.IDLE
        self.failure: ConnectionFailed | None = None
        self._positions = {room: RoomPosition() for room in self.rooms}
        if last_event_id:
            for room, position in parse_event_id(last_event_id, self.rooms).items():
                self._positions[room] = RoomPosition(position)
        self._tokens = TokenSource(token, token_provider)
        self._headers = dict(headers or {})
        self._on_state = on_state
        self._own_http = http is None
        self._http = http or httpx.AsyncClient()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()  # bounded by _put
        self._space = asyncio.Event()
        self._ended = False
        self._retry = 0.0  # the server's ``retry:``, in seconds
        self._runner: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._ever_opened = False

    async def start(self) -> None:
        """Open the stream; return once every room's ``subscribed`` arrived."""
        if self._runner is not None:
            raise RuntimeError("the stream was started already")
        self._first = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(), name=f"roomcast.client.sse {self.url}")
        timeout = self.options.connect_timeout
        await first_attempt(
            self._first, timeout, self.close, lambda: f"no event stream within {timeout:g} s"
        )

    async def close(self) -> None:
        """Stop reading; iterating ends after the events already received."""
        if self.state is State.CLOSED:
            return
        self._set_state(StateChange(State.CLOSED))
        self._end(None)
        runner, self._runner = self._runner, None
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> EventStream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if item is _END or isinstance(item, BaseException):
            self._queue.put_nowait(item)  # for the next call
            if isinstance(item, BaseException):
                raise item
            raise StopAsyncIteration
        self._space.set()
        event: Event = item
        return event

    # -- the reconnect loop ----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._reconnecting()
        except Exception as exc:
            log.exception("roomcast client: the event stream loop failed")
            self._fail(ConnectionFailed(f"the stream failed: {exc!r}"))

    async def _reconnecting(self) -> None:
        options = self.options
        attempt = 0
        self._set_state(StateChange(State.CONNECTING))
        while not self._ended:
            ended = await self._attempt()
            if self._ended:
                return
            if ended.opened:
                attempt = 0
            stop = ended.stop or give_up(
                ended.code, ended.reason, ended.status, renewable=self._tokens.renewable
            )
            if stop is None and options.max_retries is not None and attempt >= options.max_retries:
                stop = ConnectionFailed(f"gave up after {attempt} attempts ({ended.reason})")
            if stop is not None:
                self._fail(stop)
                return
            delay = backoff_delay(attempt, options.min_delay, options.max_delay)
            delay = max(delay, ended.retry_after)
            attempt += 1
            self._set_state(
                StateChange(State.RECONNECTING, ended.code, ended.reason, attempt, delay)
            )
            await asyncio.sleep(delay)

    async def _attempt(self) -> _Ended:
        try:
            token = await self._tokens.for_connection()
        except Exception as exc:
            return _Ended(ABNORMAL, f"no token: {exc!r}")
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **self._headers}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        resuming = self.last_event_id is not None
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("room", room) for room in self.rooms
        ]
        if self.name is not None:
            params.append(("name", self.name))
        since = {room: p.since for room, p in self._positions.items()} if resuming else {}
        timeout = httpx.Timeout(self.options.open_timeout, read=self.options.idle_timeout)
        request = self._http.build_request(
            "GET", self.url, params=params, headers=headers, timeout=timeout
        )
        try:
            response = await self._http.send(request, stream=True)
            try:
                if response.status_code != 200:
                    body = (await response.aread()).decode(errors="replace")
                    status = response.status_code
                    return _Ended(
                        None, f"HTTP {status}: {body[:200]}", status=status,
                        retry_after=_retry_after(response),
                    )  # fmt: skip
                return await self._read(response, since)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            return _Ended(ABNORMAL, "the stream was silent too long")
        except httpx.HTTPError as exc:
            return _Ended(ABNORMAL, f"stream lost: {exc or type(exc).__name__}")

    async def _read(self, response: httpx.Response, since: dict[str, Position | None]) -> _Ended:
        fields: dict[str, str] = {}
        data: list[str] = []
        opened: set[str] = set()
        async for line in response.aiter_lines():
            if line:
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                elif name == "retry" and value.isdigit():
                    self._retry = int(value) / 1000
                elif name in ("event", "id"):
                    fields[name] = value
                continue
            if not data and "event" not in fields:
                fields.clear()
                continue
            if "id" in fields:
                self.last_event_id = fields["id"] or None
            kind = fields.get("event", "message")
            try:
                payload = orjson.loads("\n".join(data)) if data else None
            except orjson.JSONDecodeError:
                log.warning("roomcast client: an event whose data is not JSON: %.200r", data)
                payload = None
            fields.clear()
            data.clear()
            if kind in ("close", "error"):
                body = payload if isinstance(payload, dict) else {}
                if kind == "close":
                    code, reason = int(body.get("code", ABNORMAL)), str(body.get("reason", ""))
                else:  # the server could not start the stream (the broker is unavailable)
                    code, reason = 1013, f"server error: {body.get('message', '')}"
                return _Ended(
                    code, reason, retry_after=self._retry, opened=opened >= set(self.rooms)
                )
            if kind == "subscribed" and isinstance(payload, dict):
                await self._subscribed(SubscribeResult.of(payload), since)
                opened.add(payload["room"])
                if opened >= set(self.rooms):
                    self._opened()
            elif isinstance(payload, dict) and "type" in payload:
                await self._event(payload)
            if not self.rooms:  # the server took the stream out of every room
                self._set_state(StateChange(State.CLOSED))
                self._end(None)
                return _Ended(1000, "no rooms left")
        return _Ended(
            ABNORMAL, "the stream ended", retry_after=self._retry, opened=opened >= set(self.rooms)
        )

    async def _subscribed(self, result: SubscribeResult, since: dict[str, Position | None]) -> None:
        room = result.room
        self.results[room] = result
        position = self._positions.setdefault(room, RoomPosition())
        if not result.recovered:
            position.reset(result.epoch, result.offset)
        asked = since.get(room)
        if asked is not None:
            if result.recovered:
                await self._put(
                    Recovered(room, asked, result.epoch, result.offset, result.replayed)
                )
            else:
                await self._put(Reset(room, result.epoch, result.offset, "not_recovered"))

    async def _event(self, frame: dict[str, Any]) -> None:
        room = frame.get("room", "")
        position = self._positions.get(room)
        if frame["type"] == "message":
            if position is None or position.advance(frame["epoch"], frame["offset"]):
                await self._put(Message.of(frame))
            return
        event = event_of(frame)
        if isinstance(event, Reset) and position is not None:
            position.reset(event.epoch, event.offset)
        await self._put(event)
        if isinstance(event, Unsubscribed) and room in self.rooms:
            self.rooms.remove(room)  # not asked for again
            self._positions.pop(room, None)

    def _opened(self) -> None:
        resuming, self._ever_opened = self._ever_opened, True
        lost = tuple(room for room, r in self.results.items() if not r.recovered)
        if resuming and not lost:
            self._set_state(StateChange(State.RESUMED))
        else:
            self._set_state(StateChange(State.CONNECTED, lost=lost if resuming else ()))
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    async def _put(self, event: Event) -> None:
        # Full: stop reading. The server's outbox fills, it evicts the stream (3001),
        # and the next one resumes from the last id read.
        while self._queue.qsize() >= self.options.max_buffer and not self._ended:
            self._space.clear()
            await self._space.wait()
        if not self._ended:
            self._queue.put_nowait(event)

    # -- state ------------------------------------------------------------------------------

    def _end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._queue.put_nowait(_END if error is None else error)
        self._space.set()
        if self._first is not None and not self._first.done():
            self._first.set_exception(error or ClientClosed("the stream was closed"))
            self._first.exception()

    def _fail(self, failure: ConnectionFailed) -> None:
        self.failure = failure
        self._set_state(StateChange(State.FAILED, failure.close_code, str(failure)))
        self._end(failure)

    def _set_state(self, change: StateChange) -> None:
        if not can_move(self.state, change.state):
            return
        self.state = change.state
        tell(self._on_state, change)

    def __repr__(self) -> str:
        return f"<roomcast.client.EventStream {self.rooms} {self.state.value}>"


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else 0.0


def sse(
    url: str,
    rooms: Iterable[str],
    *,
    token: str | None = None,
    token_provider: TokenProvider | None = None,
    name: str | None = None,
    last_event_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    on_state: Callable[[StateChange], None] | None = None,
    options: StreamOptions | None = None,
    http: httpx.AsyncClient | None = None,
) -> EventStream:
    """An event stream of ``rooms`` from roomcast's ``/events`` at ``url``
    (``http://host:port/events``). Use it with ``async with`` (which waits for the
    stream to open) and ``async for``.

    ``last_event_id``: resume from a saved :attr:`EventStream.last_event_id`.
    ``token``/``token_provider``: as for :func:`connect`, sent as
    ``Authorization: Bearer``. ``http``: an ``httpx.AsyncClient`` to use (its
    proxies, TLS settings); by default the stream makes and closes its own."""
    return EventStream(
        url,
        rooms,
        token=token,
        token_provider=token_provider,
        name=name,
        last_event_id=last_event_id,
        headers=headers,
        on_state=on_state,
        options=options,
        http=http,
    )
