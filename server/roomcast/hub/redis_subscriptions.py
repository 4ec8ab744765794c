"""The subscriptions of one Redis pub/sub link: the channels it wants and the
(un)subscribe commands that ask Redis for them.

:class:`SubscriptionsBase` is the bottom of
:class:`~roomcast.hub.redis_pubsub.PubSubLink` (redis_pubsub.py adds the
connection, its reader and Redis's replies). It owns the link's constructor and
state: :attr:`~SubscriptionsBase.wanted` (the channels this process wants),
:attr:`~SubscriptionsBase.subscribed` (what Redis confirmed on the current
connection), the :meth:`~SubscriptionsBase.subscribe` callers waiting for a
confirmation, and the commands on the wire, each waiting in a FIFO for its
replies (:class:`_Command`). Requests made in one loop iteration go out
together (:meth:`~SubscriptionsBase._flush`): one SUBSCRIBE, or when sharded
one SSUBSCRIBE per cluster slot. Channels Redis refused are subscribed again
after a jittered backoff while they are wanted. When the connection drops
(:meth:`~SubscriptionsBase._drop`), every waiting caller fails with
:class:`BrokerUnavailable` and what was on the wire is forgotten.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from redis.asyncio.connection import Connection
from redis.crc import key_slot
from redis.exceptions import MovedError, RedisError

from .broker import BrokerUnavailable
from .redis_throttle import Throttled
from .supervise import supervised

__all__ = ["OnEvicted", "OnMessage", "SubscriptionsBase"]

OnMessage = Callable[[bytes, bytes], None]
OnEvicted = Callable[[bytes, MovedError | None], None]


class _Command:
    """An (un)subscribe command (or a PING) on the wire, waiting for its
    replies: one frame of kind ``reply`` per channel, or one error reply."""

    __slots__ = ("channels", "name", "reply", "waiting")

    def __init__(self, name: str, reply: bytes, channels: list[bytes]) -> None:
        self.name = name
        self.reply = reply
        self.channels = channels
        self.waiting = set(channels)


_PING_REPLY = b"pong"


def _ping() -> _Command:
    """PING: its one reply is ``[pong, ""]`` (RESP2 in pub/sub mode) or ``PONG``."""
    command = _Command("PING", _PING_REPLY, [])
    command.waiting.add(b"")
    return command


class SubscriptionsBase:
    """The constructor, state and subscribe commands of :class:`PubSubLink`."""

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
        name: str = "redis",
        on_evicted: OnEvicted | None = None,
        on_connect_failed: Callable[[], None] | None = None,
        warn_interval: float = 5.0,
    ) -> None:
        self._connect = connect
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._on_lost = on_lost
        self._on_evicted = on_evicted
        self._on_connect_failed = on_connect_failed
        self.name = name
        """The node this link talks to (``host:port``), for logs."""
        self._sharded = sharded
        self._sub_cmd, self._unsub_cmd = (
            ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE")
        )
        self._message_kinds = (b"smessage",) if sharded else (b"message",)
        self._confirm_kinds = (b"ssubscribe",) if sharded else (b"subscribe",)
        self._unsub_kind = b"sunsubscribe" if sharded else b"unsubscribe"
        self.health_interval = health_interval
        self.confirm_timeout = confirm_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.wanted: set[bytes] = set()
        self.subscribed: set[bytes] = set()
        """What Redis confirmed on the current connection (emptied when it drops)."""
        self.reconnects = 0
        self.serial = 0
        """Counts connections made: a resync is for the connection it was started
        for, and only while that one is up (RedisBroker._resync)."""
        self.evictions = 0
        """Channels whose slot moved to another node (MOVED, a pushed sunsubscribe)."""
        self.refusals = 0
        """Subscribe commands Redis answered with an error (CLUSTERDOWN, ...)."""
        self._conn: Connection | None = None
        self._ready = False
        self._pending: dict[bytes, asyncio.Future[None]] = {}  # subscribe() callers
        self._to_sub: set[bytes] = set()
        self._to_unsub: set[bytes] = set()
        self._flush_scheduled = False
        self._inflight: collections.deque[_Command] = collections.deque()
        self._write_lock = asyncio.Lock()  # commands reach the wire in FIFO order
        self._unconfirmed: set[bytes] = set()  # resubscriptions not answered yet
        self._round_confirmed = False  # some resubscription of this round confirmed
        self._proven = False  # this connection's resubscriptions were all answered
        self._refused: set[bytes] = set()  # wanted channels to subscribe again
        self._retry: asyncio.TimerHandle | None = None
        self._retries = 0  # refused rounds in a row, for the retry backoff
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._wake = asyncio.Event()  # ends the wait before the next connect (reconnect())
        self._hurry = False  # reconnect() asked: no backoff, and no warning for the drop
        self._warn_lost = Throttled(warn_interval)
        self._warn_connect = Throttled(warn_interval)
        self._warn_refused = Throttled(warn_interval)
        self._warn_failed = Throttled(warn_interval)

    # -- subscriptions ------------------------------------------------------------

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe and wait for Redis to confirm it. Raises
        :class:`BrokerUnavailable` when disconnected, refused or not confirmed
        within ``confirm_timeout``; :class:`SlotMoved` when another node serves
        the channel's slot (the channel is no longer wanted here then)."""
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
        """Stop wanting ``channel``; while connected, tell Redis (no reply awaited)."""
        self.wanted.discard(channel)
        self.subscribed.discard(channel)
        self._to_sub.discard(channel)
        self._refused.discard(channel)
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

    def _commands(self, name: str, reply: bytes, channels: Iterable[bytes]) -> list[_Command]:
        """``name`` for ``channels``: one command, or when sharded one per cluster
        slot (Redis refuses a sharded (un)subscribe across slots: CROSSSLOT)."""
        if not self._sharded:
            group = sorted(channels)
            return [_Command(name, reply, group)] if group else []
        slots: dict[int, list[bytes]] = {}
        for channel in sorted(channels):
            slots.setdefault(key_slot(channel), []).append(channel)
        return [_Command(name, reply, group) for group in slots.values()]

    def _subscribes(self, channels: Iterable[bytes]) -> list[_Command]:
        return self._commands(self._sub_cmd, self._confirm_kinds[0], channels)

    async def _send(self, conn: Connection, commands: list[_Command]) -> None:
        """Write ``commands`` in order, each queued for its replies first (the
        reader may read them before this returns). Only on ``conn`` while it is
        this link's connection: one that dropped meanwhile is left alone."""
        async with self._write_lock:
            for command in commands:
                if conn is not self._conn:
                    return
                self._inflight.append(command)
                await conn.send_command(command.name, *command.channels, check_health=False)

    async def _flush(self) -> None:
        self._flush_scheduled = False
        to_sub, self._to_sub = self._to_sub, set()
        to_unsub, self._to_unsub = self._to_unsub, set()
        conn = self._conn
        if conn is None:
            return
        commands = self._commands(self._unsub_cmd, self._unsub_kind, to_unsub)
        commands += self._subscribes(to_sub)
        try:
            await self._send(conn, commands)
        except (RedisError, OSError) as exc:
            self._warn_failed("redis pub/sub command to %s failed: %s", self.name, exc)
            if conn is self._conn:
                await self._drop()
        except Exception:  # a bug: what this connection is subscribed to is unknown now
            if conn is self._conn:
                await self._drop()
            raise

    def _schedule_retry(self, channels: Iterable[bytes]) -> None:
        """Subscribe to ``channels`` again after a jittered backoff (Redis refused
        them: CLUSTERDOWN during a failover, TRYAGAIN, ...), while wanted."""
        self._refused.update(channels)
        if self._retry is not None or not self._refused:
            return
        self._retries += 1
        delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**self._retries))
        self._retry = asyncio.get_running_loop().call_later(delay, self._retry_refused)

    def _retry_refused(self) -> None:
        self._retry = None
        channels = (self._refused & self.wanted) - self.subscribed
        self._refused.clear()
        if not self._ready or not channels:
            return
        self._unconfirmed |= channels
        self._to_sub |= channels
        self._schedule_flush()

    # -- a dropped connection ---------------------------------------------------------

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
        self._inflight.clear()
        self.subscribed.clear()
        self._unconfirmed.clear()
        self._refused.clear()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
