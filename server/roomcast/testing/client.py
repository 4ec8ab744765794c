"""A WebSocket client that speaks roomcast's protocol (docs/protocol.md), for tests.

::

    async with connect(server.ws_url("/rt/ws"), name="ann") as ann:
        await ann.subscribe("chat:lobby")
        await ann.publish("chat:lobby", {"text": "hi"})
        event = await ann.next_event("message", room="chat:lobby")

Built on the ``websockets`` library. One connection, one ordered stream of
frames: replies are matched to requests by id, and events that arrive while a
reply is awaited are kept, in order, in :attr:`ProtocolClient.events` until
:meth:`~ProtocolClient.next_event` takes them. Every wait has a timeout and
raises :class:`TimeoutError` naming what it waited for.

A handshake the server refuses with an HTTP status (a host dependency that
says 403, an ``Origin`` not allowed) raises websockets' ``InvalidStatus`` from
:func:`connect`; ``exc.response.status_code`` is the status. A token the server
refuses closes the connection (3500, 3003, ...): the ``connect`` frame then gets
no reply and websockets' ``ConnectionClosed`` is raised, ``exc.rcvd.code``
being the close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Generator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from .errors import ReplyError

__all__ = ["Connecting", "ProtocolClient", "connect"]

T = TypeVar("T")
Frame = dict[str, Any]

DEFAULT_TIMEOUT = 5.0


class ProtocolClient:
    """One open connection. Made by :func:`connect`; used by one test at a time.

    The request helpers (:meth:`subscribe`, :meth:`publish`, ...) return the
    reply's ``result`` and raise :class:`~roomcast.testing.ReplyError` for an
    error reply; :meth:`request` returns the raw reply frame. If the connection
    closes while a reply or an event is awaited, websockets' ``ConnectionClosed``
    is raised (:attr:`close_code` then tells the code).
    Several tasks may await replies on one client at once.
    """

    def __init__(self, ws: ClientConnection, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.ws = ws
        #: How long request helpers wait for a reply, in seconds.
        self.timeout = timeout
        #: The ``connect`` reply's result (``conn``, ``user``, ``user_id``, ...), if one was sent.
        self.session: Frame | None = None
        #: The server's close code and reason, once the connection has closed.
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._events: list[Frame] = []
        self._replies: list[Frame] = []
        self._ids = itertools.count(1)
        self._receiving = asyncio.Lock()

    @property
    def events(self) -> list[Frame]:
        """Events received and not yet taken by :meth:`next_event`, oldest first.

        The list itself: a test may read it or clear it."""
        return self._events

    @property
    def replies(self) -> list[Frame]:
        """Replies received and not claimed by a :meth:`request` (answers to :meth:`send`)."""
        return self._replies

    # -- requests -----------------------------------------------------------------------

    async def request(self, op: str, /, **fields: Any) -> Frame:
        """Send ``{"op": op, "id": N, **fields}``; return its reply frame (ok or not)."""
        rid = next(self._ids)
        await self.send({"op": op, "id": rid, **fields})
        return await self._wait(
            lambda: self._take(self._replies, lambda r: r.get("id") == rid),
            f"no reply to {op!r} (id {rid})",
            self.timeout,
        )

    async def _result(self, op: str, /, **fields: Any) -> Frame:
        reply = await self.request(op, **fields)
        if not reply.get("ok"):
            raise ReplyError(reply)
        result: Frame = reply["result"]
        return result

    async def subscribe(self, room: str, since: Mapping[str, Any] | None = None) -> Frame:
        """Subscribe; the result (``room``, ``epoch``, ``offset``, ``recovered``, ``replayed``).

        ``since`` is a position: ``{"epoch", "offset"}``, or any event or result that
        carries both (the last event seen, to resume after it)."""
        fields: dict[str, Any] = {"room": room}
        if since is not None:
            fields["since"] = {"epoch": since["epoch"], "offset": since["offset"]}
        return await self._result("subscribe", **fields)

    async def unsubscribe(self, room: str) -> Frame:
        """Unsubscribe; the result (``room``)."""
        return await self._result("unsubscribe", room=room)

    async def publish(self, room: str, data: Any, *, durable: bool = False) -> Frame:
        """Publish ``data`` (any JSON value); the result, the event's ``epoch`` and ``offset``.

        ``durable=True`` asks for the reply after the event is committed to SQL
        (persisted rooms only)."""
        fields: dict[str, Any] = {"room": room, "data": data}
        if durable:
            fields["durable"] = True
        return await self._result("publish", **fields)

    async def history(self, room: str, *, limit: int = 50, before: int | None = None) -> Frame:
        """A page of retained events; the result (``events`` oldest first, ``more``, ...)."""
        fields: dict[str, Any] = {"room": room, "limit": limit}
        if before is not None:
            fields["before"] = before
        return await self._result("history", **fields)

    async def presence(self, room: str) -> list[Frame]:
        """The room's members: ``[{"conn", "user", "joined"}, ...]``."""
        members: list[Frame] = (await self._result("presence", room=room))["members"]
        return members

    # -- frames -------------------------------------------------------------------------

    async def send(self, frame: Mapping[str, Any] | str) -> None:
        """Send one text frame as is (a mapping is JSON-encoded); wait for nothing.

        For frames a test builds by hand: its reply lands in :attr:`replies`,
        :meth:`next_reply` waits for it. Waits at most :attr:`timeout` for the socket
        to take it (a server that stops reading backs the socket up)."""
        text = frame if isinstance(frame, str) else json.dumps(frame)
        timer = asyncio.timeout(self.timeout)
        try:
            async with timer:
                await self.ws.send(text)
        except TimeoutError:
            if timer.expired():
                raise TimeoutError(f"could not send a frame within {self.timeout} s") from None
            raise

    async def next_reply(self, *, timeout: float | None = None) -> Frame:
        """The oldest reply no :meth:`request` claimed, waiting for one if there is none."""
        return await self._wait(
            lambda: self._take(self._replies, lambda r: True),
            "no reply",
            self.timeout if timeout is None else timeout,
        )

    async def next_event(
        self, type: str | None = None, *, room: str | None = None, timeout: float = 5.0
    ) -> Frame:
        """The oldest event of ``type`` (any if ``None``) in ``room`` (any if ``None``).

        Takes it from :attr:`events` if one is there, else waits for it. Events that
        do not match stay in :attr:`events`, in order, for later calls: nothing is
        dropped."""

        def matches(event: Frame) -> bool:
            return (type is None or event.get("type") == type) and (
                room is None or event.get("room") == room
            )

        what = "no event" if type is None else f"no {type!r} event"
        if room is not None:
            what += f" in {room!r}"
        return await self._wait(lambda: self._take(self._events, matches), what, timeout)

    async def closed(self, timeout: float = 5.0) -> int:
        """Wait until the server closes the connection; its close code.

        Frames received meanwhile are kept (:attr:`events`, :attr:`replies`). An end
        without a close frame is ``1006``, as websockets reports it."""
        with contextlib.suppress(ConnectionClosed):
            await self._wait(lambda: None, "the server did not close the connection", timeout)
        assert self.close_code is not None
        return self.close_code

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from this side (and wait for the closing handshake)."""
        await self.ws.close(code, reason)

    # -- receiving ----------------------------------------------------------------------

    @staticmethod
    def _take(frames: list[Frame], matches: Callable[[Frame], bool]) -> Frame | None:
        for i, frame in enumerate(frames):
            if matches(frame):
                return frames.pop(i)
        return None

    async def _wait(self, take: Callable[[], T | None], what: str, timeout: float) -> T:
        """Receive frames until ``take()`` finds something; after ``timeout`` s,
        ``TimeoutError(f"{what} within {timeout} s")``."""
        timer = asyncio.timeout(timeout)
        try:
            async with timer:
                while True:
                    found = take()
                    if found is not None:
                        return found
                    async with self._receiving:
                        # Another task may have received it while this one waited.
                        found = take()
                        if found is not None:
                            return found
                        await self._receive()
        except TimeoutError:
            if timer.expired():
                raise TimeoutError(f"{what} within {timeout} s") from None
            raise

    async def _receive(self) -> None:
        """One frame into :attr:`events` or :attr:`replies` (the lock is held)."""
        try:
            raw = await self.ws.recv()
        except ConnectionClosed:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            raise
        frame = json.loads(raw)
        if not isinstance(frame, dict):
            raise ValueError(f"the server sent a frame that is not a JSON object: {raw!r}")
        if "type" in frame:
            self._events.append(frame)
        else:
            self._replies.append(frame)

    def __repr__(self) -> str:
        return f"<ProtocolClient {self.session['conn'] if self.session else '?'}>"


class Connecting:
    """What :func:`connect` returns: ``await`` it, or use it with ``async with``
    (which closes the connection on exit)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        name: str | None,
        headers: Mapping[str, str] | None,
        timeout: float,
        websockets_kwargs: dict[str, Any],
    ) -> None:
        self.url = url
        self.token = token
        self.name = name
        self.headers = headers
        self.timeout = timeout
        self.websockets_kwargs = websockets_kwargs
        self._client: ProtocolClient | None = None

    async def _open(self) -> ProtocolClient:
        url = self.url
        if url.startswith(("http://", "https://")):
            url = "ws" + url[4:]
        kwargs = {"open_timeout": self.timeout, "proxy": None, **self.websockets_kwargs}
        ws = await ws_connect(url, additional_headers=self.headers, **kwargs)
        client = ProtocolClient(ws, timeout=self.timeout)
        if self.token is None and self.name is None:
            return client
        fields = {k: v for k, v in (("token", self.token), ("name", self.name)) if v is not None}
        try:
            client.session = await client._result("connect", **fields)
        except BaseException:
            await ws.close()
            raise
        return client

    def __await__(self) -> Generator[Any, None, ProtocolClient]:
        return self._open().__await__()

    async def __aenter__(self) -> ProtocolClient:
        self._client = await self._open()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()


def connect(
    url: str,
    *,
    token: str | None = None,
    name: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    **websockets_kwargs: Any,
) -> Connecting:
    """Open a WebSocket to roomcast at ``url`` (``server.ws_url("/rt/ws")``).

    With ``token`` or ``name`` a ``connect`` frame is sent first and its result
    kept as :attr:`ProtocolClient.session` (a ``connect`` error raises
    :class:`~roomcast.testing.ReplyError`). ``headers`` are sent with the
    handshake (a host's session cookie: ``{"Cookie": "session=..."}``).
    ``timeout`` bounds the handshake and every reply (``client.timeout``).
    ``websockets_kwargs`` go to ``websockets.asyncio.client.connect``
    (``origin=``, ``subprotocols=``, ...); ``proxy`` defaults to ``None``, since a
    test talks to its own server. Use ``async with connect(...) as client`` (closed
    on exit) or ``client = await connect(...)`` (then ``await client.close()``).
    """
    return Connecting(
        url,
        token=token,
        name=name,
        headers=headers,
        timeout=timeout,
        websockets_kwargs=websockets_kwargs,
    )
