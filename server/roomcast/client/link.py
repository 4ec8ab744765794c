"""One WebSocket connection of the client, from its ``connect`` to its end.

A :class:`Link` sends the ``connect`` frame and reads its reply (:meth:`hello`), then
(:meth:`pump`) runs three things until the socket closes: a writer that sends the
requests given to its ``outbox`` in order without waiting for replies (pipelining);
the reader, which hands each reply to the request it answers and each event to the
client; and the keepalive, which sends the protocol's ``ping`` after
``ping_interval`` seconds without a frame and drops the link when no reply comes
within ``ping_timeout`` (roomcast.js does the same: a dead network can look open for
minutes). It knows nothing of rooms or reconnects: :class:`~.connection.Client`
makes a new link for every connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .errors import ConnectionFailed, Disconnected, RequestRefused, RequestTimeout
from .options import ClientOptions
from .reconnect import ABNORMAL
from .requests import PendingRequests, Request

__all__ = ["Ended", "Link"]

log = logging.getLogger("roomcast.client")


@dataclass(slots=True)
class Ended:
    """How one connection (or attempt) ended."""

    code: int | None
    reason: str
    status: int | None = None  # a handshake refused with this HTTP status
    up_for: float = 0.0  # seconds it was connected (0: never got a connect reply)
    stop: ConnectionFailed | None = None  # give up: a refused connect


class Link:
    """One open WebSocket; used by one :class:`Client` for one connection."""

    def __init__(
        self,
        ws: ClientConnection,
        requests: PendingRequests,
        options: ClientOptions,
        on_event: Callable[[dict[str, Any]], None],
    ) -> None:
        self.ws = ws
        self.outbox: asyncio.Queue[Request] = asyncio.Queue()
        self._requests = requests
        self._options = options
        self._on_event = on_event
        self._dropped: str | None = None
        self._last_frame = 0.0

    async def hello(self, frame: dict[str, Any]) -> dict[str, Any] | Ended:
        """Send ``connect``; its reply, or how the link ended before it came."""
        try:
            async with asyncio.timeout(self._options.open_timeout):
                await self.ws.send(orjson.dumps(frame).decode())
                reply = orjson.loads(await self.ws.recv())
        except ConnectionClosed:
            return self.ended()
        except TimeoutError:
            return Ended(ABNORMAL, "no connect reply in time")
        except orjson.JSONDecodeError:
            return Ended(ABNORMAL, "the connect reply is not JSON")
        if not isinstance(reply, dict) or reply.get("id") != 0:
            return Ended(ABNORMAL, "the first frame is not the connect reply")
        return reply

    async def pump(self, *also: Coroutine[Any, Any, None]) -> Ended:
        """Write, read and keep alive (and run ``also``) until the socket closes."""
        loop = asyncio.get_running_loop()
        up_since = self._last_frame = loop.time()
        tasks = [
            asyncio.create_task(self._write()),
            asyncio.create_task(self._keep_alive()),
            *(asyncio.create_task(coroutine) for coroutine in also),
        ]
        try:
            async for raw in self.ws:
                self._last_frame = loop.time()
                self._dispatch(raw)
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        ended = self.ended()
        ended.up_for = loop.time() - up_since
        return ended

    def drop(self, reason: str) -> None:
        """Abandon a link that looks dead (its end reads as 1006 with ``reason``)."""
        if self._dropped is None:
            log.info("roomcast client: dropping the connection: %s", reason)
            self._dropped = reason
            self.ws.transport.abort()

    def ended(self) -> Ended:
        if self._dropped is not None:
            return Ended(ABNORMAL, self._dropped)
        code = int(self.ws.close_code) if self.ws.close_code is not None else ABNORMAL
        return Ended(code, self.ws.close_reason or ("connection lost" if code == ABNORMAL else ""))

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("roomcast client: a frame that is not JSON: %.200r", raw)
            return
        if not isinstance(frame, dict):
            return
        if "type" in frame:
            self._on_event(frame)
            return
        request = self._requests.answer(frame.get("id"))
        if request is None or request.future.done():
            return  # timed out, or cancelled by its caller, meanwhile
        if frame.get("ok"):
            result = frame.get("result") or {}
            if request.on_result is not None:
                request.on_result(result)
            request.future.set_result(result)
        else:
            error = frame.get("error") or {}
            code, message = error.get("code", "internal"), error.get("message", "")
            request.future.set_exception(RequestRefused(request.op, code, message, request.id))

    async def _write(self) -> None:
        """Send requests in the order given: pipelined, the replies come later."""
        try:
            while True:
                request = await self.outbox.get()
                if request.future.done():
                    continue
                request.sent = True
                request.sends += 1
                await self.ws.send(request.frame())
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("roomcast client: sending failed")
            self.drop("sending failed")

    async def _keep_alive(self) -> None:
        """After ``ping_interval`` s of silence, ``ping``; no reply in time: drop."""
        options = self._options
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.05, options.ping_interval / 4))
            if loop.time() - self._last_frame < options.ping_interval:
                continue
            request = self._requests.new("ping", {}, options.ping_timeout, internal=True)
            self._requests.submit(request)
            try:
                await request.future
            except RequestTimeout:
                self.drop("ping timeout")
                return
            except (Disconnected, RequestRefused):
                return
