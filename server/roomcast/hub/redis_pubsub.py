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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from redis.asyncio.connection import Connection
from redis.crc import key_slot
from redis.exceptions import MovedError, RedisError, ResponseError

from .broker import BrokerUnavailable
from .supervise import supervised

__all__ = ["PubSubLink", "SlotMoved", "Throttled"]

log = logging.getLogger("roomcast.redis")

OnMessage = Callable[[bytes, bytes], None]
OnEvicted = Callable[[bytes, MovedError | None], None]


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


class Throttled:
    """A log line written at most once per ``interval`` seconds: the ones in
    between are counted, and the next one written says how many were left out.
    One per kind of trouble and per link, so a fault that repeats fast (a
    reconnect loop, a refused subscription) never floods the log."""

    def __init__(
        self, interval: float = 5.0, level: int = logging.WARNING, logger: logging.Logger = log
    ) -> None:
        self.interval = interval
        self.level = level
        self.logger = logger
        self.skipped = 0
        self._next = 0.0

    def __call__(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self.skipped += 1
            return
        self._next = now + self.interval
        if self.skipped:
            msg += " (and %d more like it in the last %.0f s)"
            args = (*args, self.skipped, self.interval)
            self.skipped = 0
        self.logger.log(self.level, msg, *args)


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
        await conn.connect()  # type: ignore[no-untyped-call]
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
