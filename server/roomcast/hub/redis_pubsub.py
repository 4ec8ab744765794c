"""One Redis pub/sub connection: subscriptions, a reader, health, reconnect.

:class:`PubSubLink` owns one raw connection (not redis-py's PubSub object,
whose internal state is not built for a reader that never stops while
subscriptions come and go). It keeps the set of channels this process wants
and makes the connection match it:

* :meth:`subscribe` returns once Redis has confirmed the subscription, so
  every message published after that reaches ``on_message``. Requests made in
  the same loop iteration go out together: one SUBSCRIBE, or when sharded one
  SSUBSCRIBE per cluster slot (Redis refuses channels of several slots in one
  command with CROSSSLOT), as are the resubscriptions after a reconnect.
* Every (un)subscribe command sent waits in a FIFO for its replies, so an
  error reply is matched to its command: it fails that command's channels
  only (their :meth:`subscribe` callers get :class:`BrokerUnavailable`; wanted
  channels being resubscribed are tried again after a jittered backoff). An
  error reply never drops the connection.
* Slot moves (sharded): ``MOVED`` in reply to SSUBSCRIBE, or an
  ``sunsubscribe`` pushed by Redis for a channel still wanted (a slot that
  migrated, a master demoted), mean another node serves the channel now. The
  link forgets the channel (:attr:`wanted`) and tells ``on_evicted(channel,
  moved)``, or fails a waiting :meth:`subscribe` with :class:`SlotMoved`; the
  broker subscribes on the new owner and fills the gap from the room's stream.
* The reader only parses each frame and calls ``on_message(channel, data)``
  synchronously; it never awaits a consumer, so Redis never sees a slow
  pub/sub reader.
* Silence is checked: after ``health_interval`` seconds without a frame the
  link sends PING; no answer within another interval means the connection is
  dead.
* When the connection drops it calls ``on_lost()`` at once (the broker starts
  holding live messages) and reconnects after a full-jitter backoff (a random
  delay up to ``backoff_base * 2**n``, capped at ``backoff_cap``, ``n`` the
  failures in a row). A connection counts as a success, resetting ``n``, only
  once it proved itself: Redis answered every resubscription, or it stayed up
  ``backoff_cap`` seconds. A failed connect also calls ``on_connect_failed()``
  (the broker checks whether the node's slots moved: a failover). Once
  connected it subscribes to every wanted channel again and, once Redis has
  answered them all, awaits ``on_reconnect()`` (the broker fills the gap of
  each room confirmed on this connection, then releases what it held), unless
  that connection was lost meanwhile: then the next one's ``on_reconnect`` does
  it. Channels confirmed later (a refused resubscription tried again) call
  ``on_reconnect()`` again. :attr:`serial` names the connection and
  :attr:`subscribed` holds what Redis confirmed on it, so the broker can tell
  whether the one its resync started for is still up.
* :meth:`PubSubLink.reconnect` drops the connection on purpose (or cuts the
  backoff short) so the link connects again at once, through ``connect``,
  which may lead elsewhere now (a new master: redis_sentinel.py).
* Warnings (connection lost, connect failed, a refused command) are logged at
  most once per ``warn_interval`` seconds per link and kind; the next one says
  how many were left out.

While disconnected, :meth:`subscribe` raises :class:`BrokerUnavailable` at
once rather than waiting.

Errors: ``on_message`` must not raise (the broker logs and skips what it
cannot decode or deliver); should it raise all the same, the link logs it with
the channel and reads on; so it does for ``on_evicted`` and
``on_connect_failed``. The reader and the tasks it spawns (subscription
flushes, ``on_reconnect``) run under :func:`~roomcast.hub.supervise.supervised`:
an unexpected error in them is logged by the supervisor, which runs the task
again after a pause. The reader and a flush drop the connection first (its
rooms are held, then resynced, as after any drop); a failed ``on_reconnect``
is tried again while the rooms stay held.

:class:`PubSubLink` is built in two layers: redis_subscriptions.py (the
constructor and state; the channels wanted and the (un)subscribe commands on
the wire) and this module (the connection: connect, read, health, reconnect;
the replies Redis sends to the commands). The warnings are
:class:`~roomcast.hub.redis_throttle.Throttled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import Connection
from redis.exceptions import MovedError, RedisError, ResponseError

from .broker import BrokerUnavailable
from .redis_subscriptions import _PING_REPLY, SubscriptionsBase, _ping
from .redis_throttle import Throttled
from .supervise import stop_tasks, supervised

__all__ = ["PubSubLink", "SlotMoved", "Throttled"]

log = logging.getLogger("roomcast.redis")


class SlotMoved(BrokerUnavailable):
    """Another Redis node serves ``channel``'s slot now: Redis answered the
    SSUBSCRIBE with ``MOVED`` (``moved``, naming the new owner), or ended the
    subscription with a pushed ``sunsubscribe`` while it was being confirmed
    (``moved`` is None). The caller subscribes on the new owner."""

    def __init__(self, channel: bytes, moved: MovedError | None) -> None:
        where = "" if moved is None else f" to {moved.host}:{moved.port}"
        super().__init__(f"redis: the room's cluster slot moved{where}")
        self.channel = channel
        self.moved = moved


class PubSubLink(SubscriptionsBase):
    """One pub/sub connection to a Redis node (see the module docstring),
    constructed with :class:`~roomcast.hub.redis_subscriptions.SubscriptionsBase`'s
    arguments."""

    @property
    def connected(self) -> bool:
        return self._ready

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the server this link is connected to; None while not."""
        conn = self._conn
        if conn is None or not self._ready:
            return None
        return str(conn.host), int(conn.port)

    def reconnect(self) -> None:
        """Connect again now: the current connection is dropped (its channels are
        held and resynced, as after any drop; logged at INFO, not as a loss), or the
        wait before the next attempt is cut short. For a server that is no longer
        the one to talk to (a new master named by Redis Sentinel: redis_sentinel.py);
        the ``connect`` callable decides where the next connection goes. A call made
        while a connection is being made is served by that one: the caller checks
        :attr:`address` once it is up."""
        self._hurry = True
        self._wake.set()
        conn = self._conn
        if conn is not None:  # the reader sees it closed, and drops it
            self._spawn("roomcast-redis-reconnect", functools.partial(self._close, conn))

    @staticmethod
    async def _close(conn: Connection) -> None:
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)

    async def start(self, timeout: float = 5.0) -> None:
        """Start the link; wait up to ``timeout`` for the first connection."""
        self._task = supervised("roomcast-redis-pubsub", self._run)
        await self.wait_connected(timeout)

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the link to be connected."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self._ready

    async def stop(self) -> None:
        await stop_tasks(self._task, *self._tasks)
        await self._drop()

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

    def _backoff(self, failures: int) -> float:
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**failures))

    async def _connect_and_read(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                await self._open()
            except (RedisError, OSError) as exc:
                await self._drop()
                failures += 1
                delay = self._backoff(failures)
                self._warn_connect(
                    "redis pub/sub connect to %s failed (%s); retrying in %.2fs",
                    self.name, exc, delay,
                )  # fmt: skip
                self._call(self._on_connect_failed)
                await self._pause(delay)
                continue
            opened = loop.time()
            if self.serial > 1:
                self.reconnects += 1
            try:
                await self._read()
            except (RedisError, OSError, TimeoutError) as exc:
                if self._hurry:
                    log.info("redis pub/sub connection to %s closed to connect again", self.name)
                else:
                    self._warn_lost("redis pub/sub connection to %s lost: %s", self.name, exc)
            proven = self._proven or loop.time() - opened >= self.backoff_cap
            await self._drop()
            failures = 1 if proven else failures + 1
            await self._pause(self._backoff(failures))

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` seconds before the next connect, unless :meth:`reconnect`
        asks for it sooner (or asked meanwhile)."""
        if not self._hurry:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        self._hurry = False
        self._wake.clear()

    async def _open(self) -> None:
        conn = self._connect()
        await conn.connect()  # type: ignore[no-untyped-call,unused-ignore]
        self._conn = conn
        self.serial += 1
        self._ready = True
        self._proven = False
        self._retries = 0
        self._hurry = False  # served by this connection (see reconnect())
        self._wake.clear()
        self._connected.set()
        if self.wanted:  # resubscribe; once all are answered, on_reconnect (_settled)
            self._unconfirmed = set(self.wanted)
            self._round_confirmed = False
            await self._send(conn, self._subscribes(self.wanted))

    def _settled(self) -> None:
        """Every resubscription of the round answered: resync what was confirmed."""
        self._proven = True
        if self._round_confirmed:
            self._round_confirmed = False
            resync = functools.partial(self._after_reconnect, self.serial)
            self._spawn("roomcast-redis-resync", resync)

    async def _after_reconnect(self, serial: int) -> None:
        if self._ready and self.serial == serial:  # else the next connection's turn
            await self._on_reconnect()

    def _call(self, callback: Callable[..., None] | None, *args: Any) -> None:
        """A callback that must not raise; should it, the error is logged."""
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("a redis pub/sub callback (%r) failed", callback)

    async def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        pinged = False
        while True:
            try:
                frame = await conn.read_response(
                    timeout=self.health_interval, disconnect_on_error=False, push_request=True
                )
            except ResponseError as exc:  # an error reply: the oldest command's
                pinged = False
                self._error_reply(exc)
                continue
            if frame is None:
                if pinged:
                    raise TimeoutError("no answer to PING")
                await self._send(conn, [_ping()])
                pinged = True
                continue
            pinged = False
            if not isinstance(frame, list) or len(frame) < 2:
                if isinstance(frame, bytes) and frame.upper() == b"PONG":  # RESP3, or unsubscribed
                    self._reply(_PING_REPLY, b"")
                continue
            kind = frame[0]
            if kind in self._message_kinds:
                try:
                    self._on_message(frame[1], frame[2])
                except Exception:  # on_message must not raise: a bug, but not the reader's
                    log.exception("handling a pub/sub message on %r failed", frame[1])
            elif kind in self._confirm_kinds:
                self._reply(kind, frame[1])
                self._confirmed(frame[1])
            elif kind == self._unsub_kind:
                if not self._reply(kind, frame[1]) and self._sharded:
                    self._pushed_unsubscribe(frame[1])  # not ours: the slot left this node
            elif kind == _PING_REPLY:
                self._reply(kind, b"")

    def _reply(self, kind: bytes, channel: bytes) -> bool:
        """Count a reply frame against the first command waiting for it."""
        for command in self._inflight:
            if command.reply == kind and channel in command.waiting:
                command.waiting.discard(channel)
                if not command.waiting:
                    self._inflight.remove(command)
                return True
        return False

    def _confirmed(self, channel: bytes) -> None:
        self.subscribed.add(channel)
        future = self._pending.pop(channel, None)
        if future is not None and not future.done():
            future.set_result(None)
        if channel in self._unconfirmed:
            self._unconfirmed.discard(channel)
            self._round_confirmed = True
            if not self._unconfirmed:
                self._settled()

    def _error_reply(self, exc: ResponseError) -> None:
        """Redis refused the oldest command waiting for replies: fail its
        channels only. MOVED: another node serves their slot (evicted)."""
        command = self._inflight.popleft() if self._inflight else None
        if command is None or command.name == "PING":
            self._warn_refused("redis pub/sub on %s: error reply %s", self.name, exc)
            return
        if command.name == self._unsub_cmd:  # those channels are not wanted anyway
            self._warn_refused(
                "redis refused %s on %s: %s", command.name, self.name, exc
            )  # fmt: skip
            return
        self.refusals += 1
        moved = exc if isinstance(exc, MovedError) else None
        retry = []
        for channel in command.waiting:
            future = self._pending.pop(channel, None)
            if moved is not None and channel in self.wanted:
                self._evict(channel, moved, future)
                continue
            if future is not None and not future.done():
                future.set_exception(BrokerUnavailable(f"redis refused the subscription: {exc}"))
                future.exception()
            elif channel in self.wanted:
                retry.append(channel)
        if moved is None:
            self._warn_refused(
                "redis refused %s of %d channels on %s: %s%s",
                command.name, len(command.waiting), self.name, exc,
                "; trying again" if retry else "",
            )  # fmt: skip
        if retry:
            self._schedule_retry(retry)
        if self._unconfirmed & command.waiting:
            self._unconfirmed -= command.waiting
            if not self._unconfirmed:
                self._settled()

    def _pushed_unsubscribe(self, channel: bytes) -> None:
        """Redis ended a shard subscription itself: its slot left this node."""
        self.subscribed.discard(channel)
        if channel not in self.wanted:
            return
        self._evict(channel, None, self._pending.pop(channel, None))
        if channel in self._unconfirmed:
            self._unconfirmed.discard(channel)
            if not self._unconfirmed:
                self._settled()

    def _evict(
        self, channel: bytes, moved: MovedError | None, waiter: asyncio.Future[None] | None
    ) -> None:
        """Another node serves ``channel`` now: forget it here; a waiting
        :meth:`subscribe` fails with :class:`SlotMoved`, else ``on_evicted``."""
        self.evictions += 1
        self.wanted.discard(channel)
        self.subscribed.discard(channel)
        if waiter is not None and not waiter.done():
            waiter.set_exception(SlotMoved(channel, moved))
            waiter.exception()
            return
        self._call(self._on_evicted, channel, moved)
