"""The WebSocket client: one logical connection to roomcast that survives drops.

:class:`Client` keeps one WebSocket open at a time, and across reconnects keeps what
the application asked for: rooms stay subscribed (each resumes from its last
position), requests made while disconnected wait for the next connection, and a
publish with an idempotency key whose reply was lost is sent again. It follows
roomcast.js (web/roomcast.js, docs/client.md) rule for rule:

* Reconnect with exponential backoff and full jitter (backoff.py) when the close code
  says so (``should_reconnect`` of protocol/codes.py: 3000-3499 and most standard
  codes yes, 3500-4999 and 1002/1003/1007/1008/1009 no). 3003 (token expired)
  reconnects only with a ``token_provider``; a handshake refused with an HTTP 4xx
  (other than 408/429; 401 with a provider) or a refused ``connect`` stops.
* After ``ping_interval`` seconds without a frame, send ``ping``; no reply within
  ``ping_timeout`` and the connection is dropped and made anew.
* With a ``token_provider``: a fresh token for every connection, and a ``refresh``
  shortly before the current one expires (tokens.py).

Callers' obligations: one event loop; ``close()`` (or the ``async with`` block) ends
the background task; a :class:`Subscription` needs a consumer, or it drops events
beyond ``max_buffer`` (and says so with a ``Reset``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Literal

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.uri import parse_uri

from ..protocol.codes import ErrorCode
from ..protocol.events import Position
from ..protocol.frames import History, Presence, Publish, Subscribe
from .errors import (
    ClientClosed,
    ConnectionFailed,
    Disconnected,
    PublishUnconfirmed,
    RequestRefused,
    RequestTimeout,
)
from .events import HistoryPage, Member, PublishResult, Session
from .link import Ended, Link
from .options import ClientOptions
from .reconnect import ABNORMAL, backoff_delay, first_attempt, give_up
from .requests import IDEMPOTENCY_KEY, PendingRequests, check_room, request_fields
from .rooms import Resubscribe, Rooms
from .state import ConnectionState, StateChange, can_move, tell
from .subscription import Subscription
from .tokens import TokenProvider, TokenSource, refresh_delay

__all__ = ["Client"]

log = logging.getLogger("roomcast.client")

State = ConnectionState


class Client:
    """A roomcast WebSocket client. Made by :func:`roomcast.client.connect`."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        on_state: Callable[[StateChange], None] | None = None,
        options: ClientOptions | None = None,
    ) -> None:
        parse_uri(url)  # a URL websockets cannot use fails here, not in the background
        self.url = url
        self.name = name
        self.options = options or ClientOptions()
        #: The connection state; ``on_state`` is called on every change.
        self.state = State.IDLE
        #: The ``connect`` result of the current (or last) connection.
        self.session: Session | None = None
        #: Why the client gave up (state ``FAILED``).
        self.failure: ConnectionFailed | None = None
        self._tokens = TokenSource(token, token_provider)
        self._headers = dict(headers or {})
        self._on_state = on_state
        self._requests = PendingRequests(self.options.max_pending)
        self._rooms = Rooms(self._requests, self.options)
        self._link: Link | None = None
        self._ready = False
        self._ever_connected = False
        self._runner: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._last_end: Ended | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect; return once connected (or raise :class:`ConnectionFailed`)."""
        if self._runner is not None:
            raise RuntimeError("the client was started already")
        self._first = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(), name=f"roomcast.client {self.url}")
        timeout = self.options.connect_timeout

        def late() -> str:
            last = self._last_end.reason if self._last_end else "no attempt finished"
            return f"not connected within {timeout:g} s ({last})"

        await first_attempt(self._first, timeout, self.close, late)

    async def close(self) -> None:
        """Close for good: the connection (code 1000), every request still waiting
        (:class:`ClientClosed`), every subscription (iterating ends)."""
        if self.state is State.CLOSED:
            return
        self._set_state(StateChange(State.CLOSED))
        self._end_everything(ClientClosed("the client was closed"), for_subscriptions=None)
        link = self._link
        if link is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.options.close_timeout):
                    await link.ws.close(1000, "closed by the client")
        runner, self._runner = self._runner, None
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    @property
    def connected(self) -> bool:
        """Whether requests go straight out now (a connection is up)."""
        return self._ready

    @property
    def pending(self) -> int:
        """Requests made and not yet settled (bounded by ``max_pending``)."""
        return len(self._requests)

    @property
    def in_flight(self) -> int:
        """Requests written to the current connection and not yet answered."""
        return self._requests.in_flight

    @property
    def resent(self) -> int:
        """Publishes sent again after a reconnect (they had a key), since the start."""
        return self._requests.resent

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """The rooms subscribed (a copy)."""
        return self._rooms.snapshot()

    # -- requests -------------------------------------------------------------------------

    async def subscribe(self, room: str, since: Position | None = None) -> Subscription:
        """Subscribe to ``room`` (from ``since``, the last position seen, to resume) and
        stay subscribed across reconnects. Returns once the server answered; raises
        :class:`RequestRefused` (``forbidden``, ``limit_exceeded``, ...)."""
        self._check_open()
        check_room(room)
        if room in self._rooms:
            raise ValueError(f"already subscribed to {room!r}")
        if since is not None:
            Subscribe.model_validate({"op": "subscribe", "room": room, "since": since._asdict()})
        if not self._ready and not self.options.queue:
            raise Disconnected("not connected (queue=False)")
        sub = Subscription(self, room, since, self.options.max_buffer)
        self._rooms.add(sub)
        if self._ready:
            self._requests.submit(self._rooms.subscribe(sub)[2])
        try:
            async with asyncio.timeout(self.options.request_timeout):
                await asyncio.shield(sub.first)
        except BaseException as exc:  # refused, timed out, cancelled by the caller, closed
            timed_out = isinstance(exc, TimeoutError) and not sub.first.done()
            if self._rooms.get(room) is sub:  # nobody ended it: undo it
                self._rooms.abandon(sub)
            if timed_out:
                raise RequestTimeout(
                    f"no reply to subscribe within {self.options.request_timeout:g} s"
                ) from None
            raise
        return sub

    async def unsubscribe(self, room: str) -> None:
        """Stop receiving ``room`` (its subscription ends); not resubscribed later."""
        sub = self._rooms.get(room)
        if sub is None:
            return
        on_server = sub.subscribed and self._ready
        self._rooms.forget(sub)
        sub.end()
        if not on_server:
            return
        try:
            await self._call("unsubscribe", {"room": room}, None)
        except Disconnected:
            pass  # the next connection does not have it either
        except RequestRefused as exc:
            if exc.code is not ErrorCode.NOT_SUBSCRIBED:  # removed by the server meanwhile
                raise

    async def publish(
        self,
        room: str,
        data: Any,
        *,
        idempotency_key: str | Literal[False] | None = None,
        durable: bool = False,
        timeout: float | None = None,
    ) -> PublishResult:
        """Publish ``data`` (any JSON value) to ``room``; where it landed.

        Every publish carries an idempotency key: ``idempotency_key``, or a fresh one
        (``idempotency_keys=True``, the default); ``False`` sends none. One with a key
        whose reply was lost to a reconnect is sent again once reconnected (the server
        answers a repeat with the first one's position); one without fails with
        :class:`PublishUnconfirmed`. ``durable``: reply after the commit to SQL."""
        self._check_open()
        key: str | None
        if idempotency_key is False:
            key = None
        elif idempotency_key is None:
            key = uuid.uuid4().hex if self.options.idempotency_keys else None
        else:
            key = idempotency_key
            if not IDEMPOTENCY_KEY.fullmatch(key):
                raise ValueError("idempotency_key: 1-128 printable ASCII characters, no spaces")
        fields = request_fields(
            Publish, "publish", room=check_room(room), data=data, durable=durable or None,
            idempotency_key=key,
        )  # fmt: skip
        result = await self._call("publish", fields, timeout, resendable=key is not None)
        return PublishResult.of(result)

    async def history(
        self, room: str, *, limit: int = 50, before: int | None = None, timeout: float | None = None
    ) -> HistoryPage:
        """Up to ``limit`` retained messages below offset ``before`` (the newest without
        it), oldest first."""
        self._check_open()
        fields = request_fields(
            History, "history", room=check_room(room), limit=limit, before=before
        )
        return HistoryPage.of(await self._call("history", fields, timeout))

    async def presence(self, room: str, *, timeout: float | None = None) -> list[Member]:
        """Who is subscribed to ``room``: one entry per connection."""
        self._check_open()
        fields = request_fields(Presence, "presence", room=check_room(room))
        result = await self._call("presence", fields, timeout)
        return [Member.of(entry) for entry in result["members"]]

    async def ping(self, *, timeout: float | None = None) -> float:
        """A round trip to the server; the server's Unix time."""
        self._check_open()
        return float((await self._call("ping", {}, timeout))["ts"])

    async def _call(
        self, op: str, fields: dict[str, Any], timeout: float | None, *, resendable: bool = False
    ) -> dict[str, Any]:
        if not self._ready and not self.options.queue:
            raise Disconnected("not connected (queue=False)")
        request = self._requests.new(
            op, fields, timeout or self.options.request_timeout, resendable=resendable
        )
        self._requests.submit(request)
        return await request.future

    def _check_open(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self.state is State.CLOSED:
            raise ClientClosed("the client was closed")
        if self._runner is None:
            raise ClientClosed("the client is not started: use `async with connect(...)`")

    # -- the connection loop --------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._reconnecting()
        except Exception as exc:  # a bug: say so, and fail rather than hang
            log.exception("roomcast client: the connection loop failed")
            self._fail(ConnectionFailed(f"the client failed: {exc!r}"))

    async def _reconnecting(self) -> None:
        options = self.options
        attempt = 0
        self._set_state(StateChange(State.CONNECTING))
        while True:
            ended = self._last_end = await self._attempt()
            if self.state is State.CLOSED:
                return
            if ended.up_for >= options.stable_after:
                attempt = 0
            stop = ended.stop or give_up(
                ended.code, ended.reason, ended.status, renewable=self._tokens.renewable
            )
            if stop is None and options.max_retries is not None and attempt >= options.max_retries:
                stop = ConnectionFailed(
                    f"gave up after {attempt} attempts ({ended.reason})",
                    close_code=ended.code,
                    status=ended.status,
                )
            if stop is not None:
                self._fail(stop)
                return
            delay = backoff_delay(attempt, options.min_delay, options.max_delay)
            attempt += 1
            change = StateChange(State.RECONNECTING, ended.code, ended.reason, attempt, delay)
            self._set_state(change)
            await asyncio.sleep(delay)

    async def _attempt(self) -> Ended:
        """One connection, from the handshake until it ends."""
        try:
            token = await self._tokens.for_connection()
        except Exception as exc:
            return Ended(ABNORMAL, f"no token: {exc!r}")
        options = self.options
        try:
            ws = await ws_connect(
                self.url,
                additional_headers=self._headers or None,
                open_timeout=options.open_timeout,
                ping_interval=None,  # the client pings with the protocol's ping (below)
                close_timeout=options.close_timeout,
                max_size=options.max_message_bytes,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            return Ended(None, f"handshake refused with HTTP {status}", status=status)
        except (OSError, TimeoutError, WebSocketException) as exc:
            return Ended(ABNORMAL, f"cannot connect: {exc or type(exc).__name__}")
        link = self._link = Link(ws, self._requests, options, self._rooms.deliver)
        try:
            return await self._serve(link, token)
        finally:
            self._link = None
            self._connection_ended()
            ws.transport.abort()  # closed already, or abandoned (close() was called)

    async def _serve(self, link: Link, token: str | None) -> Ended:
        frame: dict[str, Any] = {"op": "connect", "id": 0}
        if token is not None:
            frame["token"] = token
        if self.name is not None:
            frame["name"] = self.name
        reply = await link.hello(frame)
        if isinstance(reply, Ended):
            return reply
        if not reply.get("ok"):
            error = reply.get("error") or {}
            code, message = error.get("code", "internal"), error.get("message", "")
            failed = ConnectionFailed(f"connect refused: {code}: {message}", error=code)
            return Ended(None, message, stop=failed)
        self.session = Session.of(reply["result"])
        resubscribes = self._rooms.connected(link)
        first = [request for _, _, request in resubscribes]
        unsafe = self._requests.attach(link.outbox, first, self.session.idempotency_scope)
        self._ready = True
        for request in unsafe:
            request.future.set_exception(
                PublishUnconfirmed(
                    f"the connection was lost before the reply to this publish, and the new "
                    f"connection has another user id ({self.session.user_id}): the server "
                    f"keeps idempotency keys per user, so it is not resent"
                )
            )
        resuming, self._ever_connected = self._ever_connected, True
        also = [self._settle(link, resubscribes, resuming)]
        renew = self._tokens.renewable and self.options.refresh_before is not None
        if renew and self.session.expires is not None:
            also.append(self._refresh())
        return await link.pump(*also)

    def _connection_ended(self) -> None:
        """Fail what the connection took with it; keep what the next one can send."""
        self._ready = False
        self._rooms.disconnected()
        scope = self.session.idempotency_scope if self.session is not None else None
        for request in self._requests.detach(scope):
            if request.future.done():
                continue
            if request.op == "publish" and not request.internal:
                error: Disconnected = PublishUnconfirmed(
                    "the connection was lost before the reply to this publish: it may or "
                    "may not have been published, and it is not resent since it has no "
                    "idempotency key"
                )
            else:
                error = Disconnected(f"the connection was lost before the reply to {request.op}")
            request.future.set_exception(error)

    # -- the connection's tasks -----------------------------------------------------------

    async def _settle(self, link: Link, resubscribes: list[Resubscribe], resuming: bool) -> None:
        """Once every resubscribe is answered: ``RESUMED`` if each room that resumed
        from a position recovered its gap, else ``CONNECTED`` naming those that did not."""
        futures = [request.future for _, _, request in resubscribes]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        if self._link is not link:
            return
        lost = tuple(
            sub.room
            for (sub, since, _), outcome in zip(resubscribes, outcomes, strict=True)
            if since is not None and not (isinstance(outcome, dict) and outcome.get("recovered"))
        )
        if resuming and not lost:
            self._set_state(StateChange(State.RESUMED))
        else:
            self._set_state(StateChange(State.CONNECTED, lost=lost if resuming else ()))
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    async def _refresh(self) -> None:
        """Renew the token ``refresh_before`` s before it expires, on this connection."""
        assert self.options.refresh_before is not None
        while self.session is not None and self.session.expires is not None:
            await asyncio.sleep(refresh_delay(self.session.expires, self.options.refresh_before))
            try:
                token = await self._tokens.renewed()
            except Exception:
                log.warning("roomcast client: the token provider failed", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            request = self._requests.new(
                "refresh", {"token": token}, self.options.request_timeout, internal=True
            )
            self._requests.submit(request)
            try:
                result = await request.future
            except RequestRefused as exc:  # the server closes 3003 at expiry: reconnect
                log.warning("roomcast client: refresh refused: %s", exc)
                return
            except (Disconnected, RequestTimeout):
                return
            self.session = replace(self.session, expires=result.get("expires"))
            self._rooms.revoked(list(result.get("revoked", [])))

    # -- state ----------------------------------------------------------------------------

    def _fail(self, failure: ConnectionFailed) -> None:
        self.failure = failure
        self._set_state(StateChange(State.FAILED, failure.close_code, str(failure)))
        self._end_everything(failure, for_subscriptions=failure)

    def _end_everything(self, error: Exception, *, for_subscriptions: Exception | None) -> None:
        for request in self._requests.drain():
            request.future.set_exception(error)
            if request.internal:
                request.future.exception()
        self._rooms.end_all(for_subscriptions)
        if self._first is not None and not self._first.done():
            self._first.set_exception(error)
            self._first.exception()

    def _set_state(self, change: StateChange) -> None:
        if not can_move(self.state, change.state):
            if self.state is not change.state:
                log.debug("roomcast client: no move %s -> %s", self.state, change.state)
            return
        self.state = change.state
        tell(self._on_state, change)

    def __repr__(self) -> str:
        return f"<roomcast.client.Client {self.url} {self.state.value}>"
