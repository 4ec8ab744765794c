"""PublishBatcher: publishes sent to Redis in the order they were enqueued, many per
round trip.

A publish is one Lua script call (redis_scripts.PUBLISH). Awaited one at a time,
a connection that publishes fast gets one publish per round trip, and the round
trip includes whatever the event loop does meanwhile (the fan-out of the previous
events). :meth:`PublishBatcher.enqueue` instead queues the call and returns a
future at once; one flusher task sends everything queued so far as one pipeline
(``transaction=False``: no MULTI, each script is atomic on its own) on one
connection, where Redis runs the commands in the order they were written, then
resolves the futures in that order and goes on with what was queued meanwhile.
So publishes enqueued one after another get offsets in that order, whichever
rooms they are in.

On a Redis Cluster the commands of one batch may belong to different nodes, and
a cluster pipeline does not keep their order across nodes; there the flusher
sends them one at a time, still in order (no round trips saved, but the
callers no longer wait for each other's replies before enqueueing).

A failed batch fails every future in it with :class:`BrokerUnavailable`; the
next batch starts afresh. At most ``max_batch`` commands go in one pipeline.
Anything else that goes wrong with a batch (a bug) fails its futures with that
error and escapes to the supervisor (supervise.py), which logs it and, after a
pause, runs the flusher again for what is still queued. The flusher ends when
the queue is empty; the next enqueue starts a new one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from .broker import BrokerUnavailable
from .supervise import supervised

__all__ = ["PublishBatcher"]

log = logging.getLogger("roomcast.redis")

T = TypeVar("T")

_Item = tuple[list[str], list[Any], "asyncio.Future[Any]", "Callable[[Any], Any]"]


class PublishBatcher:
    def __init__(
        self,
        client: Callable[[], aioredis.Redis | aioredis.RedisCluster],
        script: AsyncScript,
        *,
        pipelined: bool,
        max_batch: int = 256,
    ) -> None:
        self._client = client
        self._script = script
        self._pipelined = pipelined
        self.max_batch = max_batch
        self._queue: collections.deque[_Item] = collections.deque()
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # pipelines sent (for tests and the curious)

    def enqueue(
        self, keys: list[str], args: list[Any], make: Callable[[Any], T]
    ) -> asyncio.Future[T]:
        """Queue one script call; the future gets ``make(reply)`` (or BrokerUnavailable)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future, make))
        if self._flusher is None:
            self._start()
        return future

    def _start(self) -> None:
        self._flusher = supervised("roomcast-redis-publish", self._flush)
        self._flusher.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flusher = None
        if self._queue and not task.cancelled():  # enqueued after it took the last batch
            self._start()

    async def stop(self) -> None:
        """Wait for what is queued to be sent (the caller stops taking publishes first)."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            try:
                replies = await self._send(batch)
                for (_, _, future, make), reply in zip(batch, replies, strict=True):
                    if future.done():
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(BrokerUnavailable(f"redis: {reply}"))
                    else:
                        future.set_result(make(reply))
            except (RedisError, OSError) as exc:
                _fail(batch, BrokerUnavailable(f"redis: {exc}"))
            except asyncio.CancelledError:
                for _, _, future, _ in batch:
                    future.cancel()
                raise
            except Exception as exc:  # a bug: answer the batch, then the supervisor logs it
                _fail(batch, exc)
                raise

    async def _send(self, batch: list[_Item]) -> list[Any]:
        client = self._client()
        if not self._pipelined or len(batch) == 1:
            replies: list[Any] = []
            for keys, args, _, _ in batch:
                try:
                    replies.append(await self._script(keys=keys, args=args))
                except RedisError as exc:
                    replies.append(exc)
            return replies
        assert isinstance(client, aioredis.Redis)  # pipelined only off a cluster
        self.batches += 1
        async with client.pipeline(transaction=False) as pipe:
            for keys, args, _, _ in batch:
                await self._script(keys=keys, args=args, client=pipe)
            result: list[Any] = await pipe.execute(raise_on_error=False)
            return result


def _fail(batch: list[_Item], error: Exception) -> None:
    for _, _, future, _ in batch:
        if not future.done():
            future.set_exception(error)
