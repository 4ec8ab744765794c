"""Graceful drain: close every connection with 3000 before the server stops.

uvicorn's own shutdown closes WebSockets with 1012 the moment it starts. To
send roomcast's 3000 ("server shutdown: reconnect and resume") first, the
lifespan wraps the process's SIGTERM/SIGINT handlers (installed by uvicorn
before the lifespan starts, in every worker process): the first signal starts
the hub's drain on the event loop, and uvicorn's handler gets that signal when
the drain is done (bounded by ``drain_timeout``). A second signal during the
drain is passed on at once, so uvicorn starts its own shutdown without waiting
(the drain's end then passes nothing more); later signals go straight to
uvicorn, whose second SIGINT forces quit.

Only installed from the main thread (signals cannot be set elsewhere); an app
mounted in a server that runs it off the main thread falls back to the
server's own close (1012, which clients also treat as "reconnect").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["drain_on_signals"]

log = logging.getLogger("roomcast.drain")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@contextlib.contextmanager
def drain_on_signals(drain: Callable[[], Awaitable[object]]) -> Iterator[None]:
    """While in this context, run ``drain()`` before the server's signal handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Handler] = {int(sig): signal.getsignal(sig) for sig in _SIGNALS}
    started = False
    forwarded = False
    tasks: set[asyncio.Task[None]] = set()

    def forward(sig: int, frame: FrameType | None) -> None:
        nonlocal forwarded
        forwarded = True
        handler = previous[sig]
        if callable(handler):
            handler(sig, frame)
        else:  # no Python handler: restore the default and re-raise it
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            signal.raise_signal(sig)

    def on_signal(sig: int, frame: FrameType | None) -> None:
        nonlocal started
        if started:
            forward(sig, frame)
            return
        started = True
        log.info("draining connections before shutdown")

        async def run() -> None:
            try:
                await drain()
            except Exception:
                log.exception("drain failed")
            finally:
                if not forwarded:
                    forward(sig, None)

        def spawn() -> None:
            task = loop.create_task(run())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.call_soon_threadsafe(spawn)

    for sig in _SIGNALS:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is on_signal:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
