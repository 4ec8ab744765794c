"""One Redis pub/sub connection: subscriptions, a reader, health, reconnect.

:class:`PubSubLink` owns one raw connection (not redis-py's PubSub object,
whose internal state is not built for a reader that never stops while
subscriptions come and go). It keeps the set of channels this process wants
and makes the connection match it:

* :meth:`subscribe` returns once Redis has confirmed the subscription, so
  every message published after that reaches ``on_message``. Requests made in
  the same loop iteration go out as one SUBSCRIBE.
* The reader only parses each frame and calls ``on_message(channel, data)``
  synchronously; it never awaits a consumer, so Redis never sees a slow
  pub/sub reader.
* Silence is checked: after ``health_interval`` seconds without a frame the
  link sends PING; no answer within another interval means the connection is
  dead.
* When the connection drops it calls ``on_lost()`` at once (the broker starts
  holding live messages), reconnects with capped, jittered exponential
  backoff, subscribes to every wanted channel again and, once Redis has
  confirmed them (or ``confirm_timeout`` passed), awaits ``on_reconnect()``
  (the broker fills the gap, then releases what it held), unless that
  connection was lost meanwhile: then the next one's ``on_reconnect`` does it.
  :attr:`serial` names the connection, so the broker can tell whether the one
  its resync started for is still up.

While disconnected, :meth:`subscribe` raises :class:`BrokerUnavailable` at
once rather than waiting.

Errors: ``on_message`` must not raise (the broker logs and skips what it
cannot decode or deliver); should it raise all the same, the link logs it with
the channel and reads on. The reader and the tasks it spawns (subscription
flushes, ``on_reconnect``) run under :func:`~roomcast.hub.supervise.supervised`:
an unexpected error in them is logged by the supervisor, which runs the task
again after a pause. The reader and a flush drop the connection first (its
rooms are held, then resynced, as after any drop); a failed ``on_reconnect``
is tried again while the rooms stay held.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

from .broker import BrokerUnavailable
from .supervise import supervised

__all__ = ["PubSubLink"]

log = logging.getLogger("roomcast.redis")

OnMessage = Callable[[bytes, bytes], None]


class PubSubLink:
    def __init__(
        self,
        connect: Callable[[], Connection],
        on_message: OnMessage,
        on_reconnect: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None],
        *,
        sharded: bool = False,
        health_interval: float = 5.0,
        confirm_timeout: float = 5.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
    ) -> None:
        self._connect = connect
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._on_lost = on_lost
        self._sub_cmd, self._unsub_cmd = (
            ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE")
        )
        self._message_kinds = (b"smessage",) if sharded else (b"message",)
        self._confirm_kinds = (b"ssubscribe",) if sharded else (b"subscribe",)
        self.health_interval = health_interval
        self.confirm_timeout = confirm_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.wanted: set[bytes] = set()
        self.reconnects = 0
        self.serial = 0
        """Counts connections made: a resync is for the connection it was started
        for, and only while that one is up (RedisBroker._resync)."""
        self._conn: Connection | None = None
        self._ready = False
        self._pending: dict[bytes, asyncio.Future[None]] = {}
        self._to_sub: set[bytes] = set()
        self._to_unsub: set[bytes] = set()
        self._flush_scheduled = False
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._ready

    async def start(self, timeout: float = 5.0) -> None:
        """Start the link; wait up to ``timeout`` for the first connection."""
        self._task = supervised("roomcast-redis-pubsub", self._run)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)

    async def stop(self) -> None:
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
        for task in [self._task, *self._tasks]:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._drop()

    # -- subscriptions ------------------------------------------------------------

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe and wait for Redis to confirm it."""
        self.wanted.add(channel)
        self._to_unsub.discard(channel)
        if not self._ready:
            raise BrokerUnavailable("redis pub/sub is reconnecting")
        future = self._pending.get(channel)
        if future is None or future.done():
            future = self._pending[channel] = asyncio.get_running_loop().create_future()
            self._to_sub.add(channel)
            self._schedule_flush()
        try:
            await asyncio.wait_for(asyncio.shield(future), self.confirm_timeout)
        except TimeoutError:
            raise BrokerUnavailable("redis did not confirm the subscription") from None

    def unsubscribe(self, channel: bytes) -> None:
        self.wanted.discard(channel)
        self._to_sub.discard(channel)
        if self._ready:
            self._to_unsub.add(channel)
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._spawn, "roomcast-redis-flush", self._flush)

    def _spawn(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work()`` in a supervised task that :meth:`stop` cancels."""
        task = supervised(name, work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        self._flush_scheduled = False
        to_sub, self._to_sub = self._to_sub, set()
        to_unsub, self._to_unsub = self._to_unsub, set()
        conn = self._conn
        if conn is None:
            return
        try:
            if to_unsub:
                await conn.send_command(self._unsub_cmd, *to_unsub, check_health=False)
            if to_sub:
                await conn.send_command(self._sub_cmd, *to_sub, check_health=False)
        except (RedisError, OSError) as exc:
            log.warning("redis pub/sub command failed: %s", exc)
            await self._drop()
        except Exception:  # a bug: what this connection is subscribed to is unknown now
            await self._drop()
            raise

    # -- the connection ---------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, read, reconnect, for ever. An unexpected error drops the
        connection and escapes to the supervisor, which logs it and runs this
        again: a reconnect like any other (serial > 1: the rooms are resynced)."""
        try:
            await self._connect_and_read()
        except Exception:
            await self._drop()
            raise

    async def _connect_and_read(self) -> None:
        failures = 0
        while True:
            try:
                await self._open()
            except (RedisError, OSError) as exc:
                failures += 1
                delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**failures))
                log.warning("redis pub/sub connect failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            if self.serial > 1:  # not the first connection: fill the gap
                self.reconnects += 1
                resync = functools.partial(self._after_reconnect, self.serial)
                self._spawn("roomcast-redis-resync", resync)
            try:
                await self._read()
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("redis pub/sub connection lost: %s", exc)
            await self._drop()

    async def _open(self) -> None:
        conn = self._connect()
        await conn.connect()  # type: ignore[no-untyped-call]
        self._conn = conn
        self.serial += 1
        self._ready = True
        self._connected.set()
        if self.wanted:
            loop = asyncio.get_running_loop()
            for channel in self.wanted:
                self._pending[channel] = loop.create_future()
            await conn.send_command(self._sub_cmd, *self.wanted, check_health=False)

    async def _after_reconnect(self, serial: int) -> None:
        waiting = [f for f in self._pending.values() if not f.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=self.confirm_timeout)
        if self._ready and self.serial == serial:  # else the next connection's turn
            await self._on_reconnect()

    async def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        pinged = False
        while True:
            frame = await conn.read_response(
                timeout=self.health_interval, disconnect_on_error=False, push_request=True
            )
            if frame is None:
                if pinged:
                    raise TimeoutError("no answer to PING")
                await conn.send_command("PING", check_health=False)
                pinged = True
                continue
            pinged = False
            if not isinstance(frame, list) or len(frame) < 2:
                continue
            kind = frame[0]
            if kind in self._message_kinds:
                try:
                    self._on_message(frame[1], frame[2])
                except Exception:  # on_message must not raise: a bug, but not the reader's
                    log.exception("handling a pub/sub message on %r failed", frame[1])
            elif kind in self._confirm_kinds:
                future = self._pending.pop(frame[1], None)
                if future is not None and not future.done():
                    future.set_result(None)

    async def _drop(self) -> None:
        if self._ready:
            self._on_lost()
        self._ready = False
        self._connected.clear()
        conn, self._conn = self._conn, None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BrokerUnavailable("redis pub/sub connection lost"))
                future.exception()
        self._pending.clear()
        self._to_sub.clear()
        self._to_unsub.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
