"""Background tasks that come back: :func:`supervised`.

A task that runs for the life of a server (the send watchdog, the memory
broker's sweeper, Redis presence upkeep and the pub/sub reader, the publish
batcher, the SQL writer) must not die quietly on a bug: a dead reader means no
more events for this process, a dead writer no more durable acks, and nobody
would know until clients complain. :func:`supervised` runs such a task and

* when ``factory()`` returns, ends: the task has done its job (a flush that
  emptied its queue, a reader told to stop) and is not run again;
* when it is cancelled, ends: cancellation is how its owner stops it;
* when it raises anything else, logs the error once, with its traceback (it is
  a bug, or a fault the task itself should have handled), then calls
  ``factory()`` again after a pause: ``RESTART_DELAY`` seconds, doubling with
  each failure in a row up to ``RESTART_DELAY_CAP``, back to the start after a
  run that lasted longer than the cap;
* unless ``stopping()`` says its owner is shutting it down: then the failure is
  logged and the task ends.

The caller's obligations: ``factory`` makes a fresh coroutine on each call, and
whatever state a failed run leaves behind (a half-open connection, a batch
taken off a queue) is the task's to tidy up, either in its own ``except`` /
``finally`` or at the start of the next run. A failure is logged by the
supervisor only: the task re-raises rather than logging it too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["RESTART_DELAY", "RESTART_DELAY_CAP", "stop_tasks", "supervised"]

log = logging.getLogger("roomcast.supervise")

RESTART_DELAY = 0.1
"""Seconds before the first restart of a task that failed."""

RESTART_DELAY_CAP = 5.0
"""The longest pause between restarts; a run that lasted longer resets the pause."""

Factory = Callable[[], Coroutine[Any, Any, None]]


def supervised(
    name: str,
    factory: Factory,
    *,
    stopping: Callable[[], bool] | None = None,
    delay: float = RESTART_DELAY,
    cap: float = RESTART_DELAY_CAP,
) -> asyncio.Task[None]:
    """Run ``factory()`` in a task named ``name``, restarted on failure (see the
    module docstring). Cancel the returned task to stop it; it never ends with
    an exception other than :class:`asyncio.CancelledError`."""
    return asyncio.get_running_loop().create_task(
        _supervise(name, factory, stopping, delay, cap), name=name
    )


async def _supervise(
    name: str, factory: Factory, stopping: Callable[[], bool] | None, first: float, cap: float
) -> None:
    loop = asyncio.get_running_loop()
    pause = first
    while True:
        started = loop.time()
        try:
            await factory()
            return
        except Exception:
            if stopping is not None and stopping():
                log.exception("background task %s failed while stopping", name)
                return
            if loop.time() - started > cap:
                pause = first  # it had been running well: this is a new failure
            log.exception("background task %s failed; restarting in %.2f s", name, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, cap)


async def stop_tasks(*tasks: asyncio.Task[Any] | None, every: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until each has ended, cancelling again every
    ``every`` seconds those still running: on Python 3.11, ``asyncio.wait_for``
    and ``asyncio.timeout`` can swallow a cancellation that arrives as their
    timeout expires (a link waiting out its backoff, a read with a deadline),
    and the task then goes on as if nobody had asked. Their outcomes are
    collected (an exception here is the task's to have logged)."""
    running = {task for task in tasks if task is not None}
    everything = set(running)
    while running:
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(running, timeout=every)
    for task in everything:
        if not task.cancelled():
            task.exception()
