"""PublishBatcher: publishes sent to Redis in the order they were enqueued, many per
round trip, each answered within a deadline.

A publish is one Lua script call (redis_scripts.PUBLISH). Awaited one at a time,
a connection that publishes fast gets one publish per round trip, and the round
trip includes whatever the event loop does meanwhile (the fan-out of the previous
events). :meth:`PublishBatcher.enqueue` instead queues the call and returns a
future at once; a flusher task writes everything queued so far in one go
(``EVALSHA`` after ``EVALSHA``, no MULTI: each script is atomic on its own) on
one connection, where Redis runs the commands in the order they were written,
and resolves each future as its reply is read. So publishes enqueued one after
another get offsets in that order.

Shards. The batcher keeps one queue, one flusher and one connection pool per
Redis node: ``main`` for a single Redis; on a Redis Cluster one per master, the
owner of the slot of the room's hash tag (every key of a room shares it:
redis_scripts.py), from the cluster client's slot map. A dead or slow node
holds up only its own queue; the others flow at full rate. A room is one slot,
so its publishes stay in order. The batcher's pools are its own (never the
cluster client's, which redis-py closes under running commands on some errors),
hold no automatic retry (a publish that timed out may have run: it must not run
twice), and load the script on every new connection, so a node that restarted
empty costs no failed publish.

Routing on a cluster. A slot with publishes still pending on a node sticks to
that node while the node answers, so a slot map that changes meanwhile cannot
let a later publish overtake an earlier one; otherwise a publish goes to the
slot's owner in the map. Redis's redirections: ``MOVED`` (the script did not
run) updates the map and moves that publish, and the slot's other pending ones,
in order, to the new owner's queue; ``ASK`` (a slot being migrated, the room's
keys already gone) sends it again to the target, after ``ASKING`` on the same
connection; ``TRYAGAIN`` (the room's keys split mid-migration) and every other
error reply answer ``unavailable``.

Deadlines: every call is answered within ``timeout`` seconds of its enqueue;
past it, its future fails with :class:`BrokerUnavailable` and a late reply is
ignored (the script may still have run: the publisher was told ``unavailable``,
the known ambiguity of any timeout). A batch that fails (the node refused, a
timeout, a reply that never came) fails the calls not answered yet with
:class:`BrokerUnavailable` and keeps the replies already read; so does any other
exception (redis-py's own bugs included), which is logged, at most once every
:data:`LOG_EVERY` seconds. After a failure the node's next batch waits a
full-jitter backoff (up to 0.05 s, doubling per failure in a row, capped at
``backoff_cap``; ``retry_now(node)`` ends it, for a new server behind the node)
while its queue keeps taking calls (and answering them at their deadline); on a
cluster it also asks for the slot map to be read again, so a promoted replica
takes over. ``on_result(node, ok)`` hears of every batch, ``on_slot_map()`` of
every update of the slot map the batcher makes.

A flusher ends when its queue is empty; the next enqueue starts a new one. It is
supervised (supervise.py) all the same: should a bug escape it, the calls it
held are answered first.

PublishBatcher is built in two layers: redis_queues.py (the constructor; the
queues per node, their deadlines, failures and backoff, the slot map's refresh)
and this module (enqueueing, sending the batches, answering each call,
following ``MOVED`` and ``ASK``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, NoScriptError, RedisError, ResponseError

from .broker import BrokerUnavailable
from .redis_queues import LOG_EVERY, PublishQueuesBase, _Item, _Shard
from .supervise import supervised

__all__ = ["LOG_EVERY", "MAIN", "PublishBatcher", "node_url"]

T = TypeVar("T")

MAIN = "main"
"""The one shard of a single Redis."""


class PublishBatcher(PublishQueuesBase):
    """Queues script calls per Redis node and sends each node's queue in order,
    many calls per round trip (see the module docstring); constructed with
    :class:`~roomcast.hub.redis_queues.PublishQueuesBase`'s arguments."""

    # -- enqueue ----------------------------------------------------------------------

    def enqueue(
        self, keys: list[str], args: list[Any], make: Callable[[Any], T]
    ) -> asyncio.Future[T]:
        """Queue one script call; the future gets ``make(reply)``, or
        :class:`BrokerUnavailable` (at the latest ``timeout`` seconds from now)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        item = _Item(keys, args, future, make, loop.time() + self.timeout)
        if self._cluster is None:
            self._put(self._shard(MAIN), item)
            return future
        item.slot = key_slot(keys[0].encode())
        try:
            shard = self._route(item.slot)
        except BrokerUnavailable as exc:
            future.set_exception(exc)
            self._request_refresh()
            return future
        self._pin(item, shard)
        self._put(shard, item)
        return future

    def _put(self, shard: _Shard, item: _Item, *, first: bool = False) -> None:
        if first:
            shard.queue.appendleft(item)
        else:
            shard.queue.append(item)
        self._arm(shard, item.deadline)
        if shard.flusher is None:
            self._start(shard)

    # -- flushing ---------------------------------------------------------------------

    def _start(self, shard: _Shard) -> None:
        shard.flusher = supervised(
            f"roomcast-redis-publish-{shard.name}", lambda: self._flush(shard)
        )
        shard.flusher.add_done_callback(lambda task: self._flushed(shard, task))

    def _flushed(self, shard: _Shard, task: asyncio.Task[None]) -> None:
        shard.flusher = None
        if shard.queue and not task.cancelled():  # enqueued after it took the last batch
            self._start(shard)

    async def stop(self) -> None:
        """Wait for what is queued to be sent or answered (the caller stops taking
        publishes first), then close the batcher's connections."""
        for shard in list(self._shards.values()):
            if shard.flusher is not None:
                await asyncio.shield(shard.flusher)
        if self._refresh is not None:
            self._refresh.cancel()
        for shard in list(self._shards.values()):
            if shard.timer is not None:
                shard.timer.cancel()
            await shard.pool.aclose()

    def nodes(self) -> dict[str, bool]:
        """Each node publishes went to: whether its last batch went through."""
        return {name: shard.failures == 0 for name, shard in self._shards.items()}

    async def _flush(self, shard: _Shard) -> None:
        loop = asyncio.get_running_loop()
        try:
            while shard.queue:
                wait = shard.retry_at - loop.time()
                if wait > 0:  # backing off after a failure: calls wait (or expire)
                    shard.wake.clear()
                    with contextlib.suppress(TimeoutError):  # or retry_now() cuts it short
                        await asyncio.wait_for(shard.wake.wait(), wait)
                    continue
                batch: list[_Item] = []
                while shard.queue and len(batch) < self.max_batch:
                    item = shard.queue.popleft()
                    if item.future.done():  # expired (or cancelled) while queued
                        self._leave(item)
                    else:
                        batch.append(item)
                if batch:
                    shard.inflight = batch  # from now on, _expire and _fail_all see it
                    await self._run(shard, batch)
        except BaseException as exc:  # cancelled, or a bug: answer what it held
            self._fail_all(shard, f"redis: publishing stopped ({exc!r})")
            raise

    async def _run(self, shard: _Shard, batch: list[_Item]) -> None:
        """Send one batch; answer each call; then handle the redirected ones."""
        if len(batch) > 1:
            self.batches += 1
        redirected: list[tuple[_Item, AskError]] = []
        ok = True
        try:
            redirected, ok = await self._send(shard, batch)
        except (RedisError, OSError) as exc:  # the node: refused, timed out, dropped
            ok = False
            self._failed(shard, exc)
        except Exception as exc:  # not Redis's word: redis-py's or ours
            ok = False
            self._unexpected(exc)(
                "publishing to redis node %s failed unexpectedly; its unanswered "
                "publishes were answered unavailable",
                shard.name,
                exc_info=exc,
            )
            self._failed(shard, exc)
        else:
            self._succeeded(shard)
        # (cancelled: the batch stays in flight for _flush to answer)
        shard.inflight = []
        moved = {id(item) for item, _ in redirected}
        for item in batch:
            if id(item) in moved:
                continue
            self._leave(item)
            if not item.future.done():  # its reply never came
                ok = False
                error = f"redis: node {shard.name}: the publish got no reply"
                item.future.set_exception(BrokerUnavailable(error))
        if self._on_result is not None:
            self._on_result(shard.name, ok)
        if redirected:
            await self._redirect(shard, redirected)

    async def _send(
        self, shard: _Shard, batch: list[_Item]
    ) -> tuple[list[tuple[_Item, AskError]], bool]:
        """Write the batch, then read a reply per call and answer it at once.

        Returns the calls Redis redirected (``MOVED``, ``ASK``: not run) and
        whether every other call succeeded. Raises when the connection fails;
        the calls answered so far keep their replies.
        """
        conn = await self._connection(shard)
        try:
            sha = self._script.sha
            commands = [("EVALSHA", sha, len(i.keys), *i.keys, *i.args) for i in batch]
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            redirected: list[tuple[_Item, AskError]] = []
            ok = True
            for item in batch:
                try:
                    reply = await self._read(conn)
                except AskError as exc:  # MOVED too
                    redirected.append((item, exc))
                    continue
                except NoScriptError as exc:  # SCRIPT FLUSH: load again on a new connection
                    conn.mark_for_reconnect()  # type: ignore[no-untyped-call,unused-ignore]
                    reply = exc
                except ResponseError as exc:
                    reply = exc
                ok = self._answer(item, reply) and ok
        except BaseException:
            await conn.disconnect(nowait=True)  # replies may still be on their way
            raise
        finally:
            await shard.pool.release(conn)
        return redirected, ok

    async def _connection(self, shard: _Shard) -> AbstractConnection:
        """A connected connection to the node, made again if Redis closed it."""
        conn = await shard.pool.get_connection()  # type: ignore[no-untyped-call,unused-ignore]
        assert isinstance(conn, AbstractConnection)
        return conn

    async def _read(self, conn: AbstractConnection) -> Any:
        """One reply (a seam for tests)."""
        return await conn.read_response()

    def _answer(self, item: _Item, reply: Any) -> bool:
        """Resolve ``item``'s future with ``reply`` (unless its deadline passed);
        whether it succeeded."""
        if isinstance(reply, Exception):
            if not item.future.done():
                item.future.set_exception(BrokerUnavailable(f"redis: {reply}"))
            return False
        if not item.future.done():
            try:
                item.future.set_result(item.make(reply))
            except Exception as exc:  # a reply of an unexpected shape
                self._bad_reply("unexpected reply %r from redis", reply, exc_info=exc)
                item.future.set_exception(BrokerUnavailable(f"redis: unexpected reply {reply!r}"))
                return False
        return True

    # -- redirections (cluster) ---------------------------------------------------------

    async def _redirect(self, shard: _Shard, redirected: list[tuple[_Item, AskError]]) -> None:
        """Calls Redis did not run: ``MOVED`` ones go, with the rest of their slot's
        calls queued here, to the new owner's queue; ``ASK`` ones run on the
        migration's target now, in order."""
        asked: list[tuple[_Item, AskError]] = []
        moved: dict[int, tuple[MovedError, list[_Item]]] = {}
        for item, exc in redirected:
            if isinstance(exc, MovedError):
                moved.setdefault(item.slot, (exc, []))[1].append(item)
            else:
                asked.append((item, exc))
        for slot, (exc, items) in moved.items():
            await self._move(shard, slot, exc, items)
        if asked:  # in flight here until answered, so their deadlines hold
            shard.inflight = [item for item, _ in asked]
            self._arm(shard, min(item.deadline for item in shard.inflight))
            await self._ask(asked)  # (cancelled: _flush answers them)
            shard.inflight = []

    async def _move(self, shard: _Shard, slot: int, exc: MovedError, items: list[_Item]) -> None:
        assert self._cluster is not None
        try:
            await self._cluster.nodes_manager.move_slot(exc)
        except Exception:  # a slot the map does not know: read it all again
            self._request_refresh()
        else:
            self._slot_map_changed()
        target = self._shard(f"{exc.host}:{exc.port}")
        rest = [i for i in shard.queue if i.slot == slot]
        if rest:
            shard.queue = collections.deque(i for i in shard.queue if i.slot != slot)
        for item in [*items, *rest]:
            self._leave(item)
        alive = [i for i in [*items, *rest] if not i.future.done()]
        if target is shard:  # a MOVED to itself: answer rather than loop
            for item in alive:
                item.future.set_exception(BrokerUnavailable(f"redis: {exc}"))
            return
        for item in alive:
            self._pin(item, target)
        for item in reversed(alive):  # older than what the target has queued
            self._put(target, item, first=True)

    async def _ask(self, asked: list[tuple[_Item, AskError]]) -> None:
        """``ASKING`` then the script, per call, on the target's connection."""
        for item, exc in asked:
            if item.future.done():
                self._leave(item)
                continue
            target = self._shard(f"{exc.host}:{exc.port}")
            try:
                conn = await self._connection(target)
                try:
                    args = ("EVALSHA", self._script.sha, len(item.keys), *item.keys, *item.args)
                    packed = conn.pack_commands([("ASKING",), args])
                    await conn.send_packed_command(packed, check_health=False)
                    await self._read(conn)
                    try:
                        reply = await self._read(conn)
                    except ResponseError as error:
                        reply = error
                except BaseException:
                    await conn.disconnect(nowait=True)
                    raise
                finally:
                    await target.pool.release(conn)
            except (RedisError, OSError) as error:
                reply = error
            except Exception as error:  # as in _run: answered, logged, not raised
                self._unexpected(error)(
                    "publishing to redis node %s after ASK failed unexpectedly",
                    target.name,
                    exc_info=error,
                )
                reply = error
            self._leave(item)
            self._answer(item, reply)


def node_url(url: str, node: str) -> str:
    """``url`` (scheme, credentials, options) pointed at cluster node ``host:port``."""
    host, _, port = node.rpartition(":")
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urllib.parse.urlunsplit(
        parts._replace(netloc=f"{userinfo}@{address}" if userinfo else address)
    )
