"""BatchedWriter: group commit of persisted rooms' events, off the fan-out path.

Publishers call :meth:`BatchedWriter.submit`, which never waits: it queues
the event and returns a future. One task takes everything queued (up to
``max_batch`` events), inserts it in one transaction and commits, then
resolves the futures of that batch. While a commit runs, new events pile up
and become the next batch, so the number of transactions per second stays
about constant as load grows. ``max_delay`` lets a lone event wait that long
for company before its batch starts (0: start at once).

The caller's obligations and guarantees:

* ``submit`` raises :class:`WriterOverloaded` when ``max_pending`` events are
  queued, and :class:`~roomcast.db.store.DatabaseUnavailable` at once while
  the writer knows the database is down (:attr:`healthy` is False): the
  client is told ``unavailable``, the event is never dropped silently;
* the future resolves (to None) only after the event's batch is committed,
  so a durable ack may wait on it; it fails with ``DatabaseUnavailable`` when
  the commit fails. A caller that does not await it need not retrieve the
  error: the writer logs each failed batch once;
* a failed commit fails its batch and everything queued behind it (nothing
  waits on a dead database) and marks the writer unhealthy; the task then
  pings the database with capped exponential backoff and becomes healthy
  again when a ping (or a later commit) succeeds;
* an error that is not an outage (a bug, an event the database refuses)
  fails only the events it concerns: that batch is retried one event at a
  time, and the writer stays healthy;
* ``stop`` refuses new events, writes what is queued, then ends; with a
  ``timeout`` it fails whatever is left after that long;
* the task is supervised (hub/supervise.py): an unexpected error (a bug) fails
  the batch being written, is logged with its traceback, and the task runs
  again after a pause, with what is still queued; while stopping it ends.

Inserts are idempotent on ``(room, epoch, offset)``, so an event submitted
twice (say, after a reconnect) is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque

from ..hub.supervise import supervised
from ..protocol.events import Event
from .store import DatabaseUnavailable, MessageStore

__all__ = ["BatchedWriter", "WriterClosed", "WriterOverloaded"]

logger = logging.getLogger("roomcast.db.writer")


class WriterOverloaded(DatabaseUnavailable):
    """The write queue is full: the database is not keeping up."""


class WriterClosed(DatabaseUnavailable):
    """The writer is not running (not started, stopping or stopped)."""


_Item = tuple[Event, "asyncio.Future[None]"]


class BatchedWriter:
    """Group commit of events into a :class:`~roomcast.db.store.MessageStore`."""

    def __init__(
        self,
        store: MessageStore,
        *,
        max_pending: int,
        max_batch: int,
        max_delay: float,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
    ) -> None:
        if max_pending < 1 or max_batch < 1:
            raise ValueError("max_pending and max_batch must be at least 1")
        if max_delay < 0 or retry_initial <= 0 or retry_max < retry_initial:
            raise ValueError("max_delay >= 0 and 0 < retry_initial <= retry_max are required")
        self.store = store
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._queue: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._accepting = False
        self._healthy = True
        #: Committed transactions (one per batch); tests and metrics read it.
        self.batches = 0
        #: Events in committed batches (duplicates that were skipped included).
        self.committed = 0
        #: Events whose futures failed.
        self.failed = 0

    # -- state -------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False from a failed commit until a later ping or commit succeeds."""
        return self._healthy

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def pending(self) -> int:
        """Events queued and not yet taken into a batch."""
        return len(self._queue)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Start the writer task (again, after :meth:`stop`: a lifespan may rerun)."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("writer already started")
        self._accepting = True
        self._task = supervised("roomcast-db-writer", self._run, stopping=self._stopping)
        self._task.add_done_callback(self._on_task_done)

    def _stopping(self) -> bool:
        return not self._accepting

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        """However the task ended, nothing may wait on it any more."""
        self._accepting = False
        if not task.cancelled() and task.exception() is not None:
            logger.error("database writer failed", exc_info=task.exception())
        self._fail_queued(WriterClosed("writer stopped"))

    async def stop(self, timeout: float | None = None) -> None:
        """Refuse new events, write what is queued, end the task.

        With ``timeout``, whatever is not written after that many seconds fails
        with :class:`WriterClosed`. Safe to call more than once.
        """
        self._accepting = False
        task = self._task
        if task is not None and not task.done():
            self._wakeup.set()
            try:
                done, _ = await asyncio.wait({task}, timeout=timeout)
                if not done:
                    task.cancel()
                    await asyncio.wait({task})
            except asyncio.CancelledError:
                task.cancel()  # stop itself was cancelled: the task fails what it holds
                raise
        self._fail_queued(WriterClosed("writer stopped"))

    # -- submit ------------------------------------------------------------

    def submit(self, event: Event) -> asyncio.Future[None]:
        """Queue ``event``; the future resolves after its batch commits.

        Raises at once (never blocks): :class:`WriterClosed` when the writer
        is not running, ``DatabaseUnavailable`` while it is unhealthy,
        :class:`WriterOverloaded` when ``max_pending`` events are queued.
        """
        if not self._accepting:
            raise WriterClosed("writer is not running")
        if not self._healthy:
            raise DatabaseUnavailable("database unavailable")
        if len(self._queue) >= self.max_pending:
            raise WriterOverloaded(f"write queue full ({self.max_pending} events)")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((event, future))
        self._wakeup.set()
        return future

    # -- the task ----------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if not self._accepting:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                await self._linger()
                batch = self._take()
                try:
                    written = await self._write(batch)
                except Exception:  # a bug: nothing may wait on this batch; the supervisor logs it
                    self._settle(batch, WriterClosed("the writer failed"))
                    raise
                if not written:
                    self._fail_queued(DatabaseUnavailable("database unavailable"))
                    await self._recover()
        except asyncio.CancelledError:
            self._fail_queued(WriterClosed("writer stopped"))
            raise

    async def _linger(self) -> None:
        """Wait up to ``max_delay`` for a full batch (not when stopping)."""
        if self.max_delay <= 0 or len(self._queue) >= self.max_batch or not self._accepting:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay
        while len(self._queue) < self.max_batch and self._accepting:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _take(self) -> list[_Item]:
        queue = self._queue
        return [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]

    async def _write(self, batch: list[_Item]) -> bool:
        """Insert and commit one batch; resolve or fail its futures. False on an outage."""
        events = [event for event, _ in batch]
        try:
            await self.store.insert_many(events)
        except asyncio.CancelledError:
            self._settle(batch, WriterClosed("writer stopped"))
            raise
        except DatabaseUnavailable as error:
            self._healthy = False
            logger.warning("%d events not persisted: %s", len(batch), error)
            self._settle(batch, error)
            return False
        except Exception as error:
            if len(batch) > 1:  # a bad event (a bug): do not let it sink the others
                logger.exception("batch of %d events failed; writing them one by one", len(batch))
                for i, item in enumerate(batch):
                    if not await self._write([item]):
                        self._settle(batch[i + 1 :], DatabaseUnavailable("database unavailable"))
                        return False
                return True
            logger.exception("event %r not persisted", batch[0][0])
            self._settle(batch, error)
            return True
        self.batches += 1
        self.committed += len(batch)
        self._healthy = True
        self._settle(batch, None)
        return True

    async def _recover(self) -> None:
        """Ping with capped exponential backoff (jittered) until the database answers.

        Ends early when the writer is stopping: nothing is queued then (submit
        refuses events while unhealthy), so there is nothing left to write.
        """
        delay = self.retry_initial
        while not self._healthy:
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay * random.uniform(0.8, 1.2))
            if not self._accepting:
                return
            if await self._ping():
                self._healthy = True
                logger.info("database reachable again")
                return
            delay = min(delay * 2, self.retry_max)

    async def _ping(self) -> bool:
        try:
            return await self.store.ping()
        except Exception:
            logger.exception("database ping failed")
            return False

    # -- futures -----------------------------------------------------------

    def _settle(self, batch: list[_Item], error: BaseException | None) -> None:
        for _, future in batch:
            if future.done():  # cancelled by its caller
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(_own_copy(error))
                future.exception()  # retrieved: the writer has logged it
        if error is not None:
            self.failed += len(batch)

    def _fail_queued(self, error: DatabaseUnavailable) -> None:
        if not self._queue:
            return
        batch = list(self._queue)
        self._queue.clear()
        logger.warning("%d queued events not persisted: %s", len(batch), error)
        self._settle(batch, error)


def _own_copy(error: BaseException) -> BaseException:
    """A fresh DatabaseUnavailable per future, so that awaiting callers do not all
    grow one shared traceback; the original stays reachable as ``__cause__``."""
    if isinstance(error, DatabaseUnavailable):
        copy = type(error)(*error.args)
        copy.__cause__ = error.__cause__ or error
        return copy
    return error
