"""Running an app that serves roomcast under uvicorn with roomcast's WebSocket
protocol (the fast path): ``roomcast serve`` and :func:`run`.

Fan-out is fast when uvicorn runs roomcast's own WebSocket protocol
(transports/uvicorn_ws.py): each event is written to each socket as one
pre-built frame, with no task switch per connection. uvicorn's stock protocol
works too, through ASGI sends, at roughly a third of the rate. Three ways to get
the fast path for a host app::

    roomcast.run(app, port=8000)            # or "main:app" with workers=2
    uvicorn.run(app, ws=roomcast.WebSocketProtocol, ws_per_message_deflate=False)
    uvicorn main:app --ws roomcast:WebSocketProtocol --ws-per-message-deflate false

Per-message compression (uvicorn's default, which roomcast.run turns off) makes
every connection's frames its own, so it takes the ASGI path too.

Both also run uvicorn's HTTP protocol with a deadline for each request's line and
headers (``handshake_timeout``, transports/uvicorn_http.py): plain uvicorn waits
for slow headers for ever.
:func:`serving_config` tells, at start-up, what the server runs (the lifespan
logs it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE, Config

from .logs import log_config
from .settings import Settings, SettingsError
from .transports.handshake import HTTPProtocol

__all__ = ["PROTOCOL_PATH", "run", "run_uvicorn", "serving_config", "uvicorn_config_kwargs"]

PROTOCOL_PATH = "roomcast:WebSocketProtocol"
"""roomcast's uvicorn WebSocket protocol (``roomcast.WebSocketProtocol``), as
uvicorn's ``ws`` takes it; resolved by uvicorn only when it loads its config (in
each worker), to uvicorn's own protocol, with one warning, where roomcast's
cannot be used (transports/fastpath.py)."""


def uvicorn_config_kwargs(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings roomcast runs with: the websockets-sansio engine (it has
    write backpressure) with roomcast's direct writer (transports/uvicorn_ws.py),
    our frame size limit, pings and shutdown timeout, and uvicorn's HTTP protocol
    with a deadline for request headers (``handshake_timeout``,
    transports/handshake.py)."""
    return {
        "log_config": log_config(settings),
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "log_level": settings.log_level,
        "lifespan": "on",
        "http": HTTPProtocol(settings.handshake_timeout),
        "ws": PROTOCOL_PATH,
        "ws_max_size": settings.ws_max_size,
        "ws_ping_interval": settings.ws_ping_interval,
        "ws_ping_timeout": settings.ws_ping_timeout,
        "ws_per_message_deflate": settings.ws_per_message_deflate,
        "timeout_graceful_shutdown": settings.graceful_shutdown_timeout,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }


def run(app: Any, *, settings: Settings | None = None, **uvicorn_options: Any) -> None:
    """Serve ``app`` (an ASGI app, or ``"module:attr"``, which ``workers`` above 1
    needs) with uvicorn and roomcast's WebSocket protocol.

    Defaults come from ``settings`` (``ROOMCAST_*``: host, port, workers, log
    format with token redaction, WebSocket limits and pings, graceful shutdown);
    ``uvicorn_options`` override any of them. Signals stay uvicorn's: on SIGTERM
    uvicorn's shutdown starts roomcast's drain, so WebSocket clients get 3000
    and SSE streams a ``close`` event (docs/embedding.md).

    Several workers need the Redis broker: pass the settings the app's Roomcast
    uses (or set ``ROOMCAST_REDIS_URL``); without, SettingsError.
    """
    settings = settings or Settings()
    options = uvicorn_config_kwargs(settings)
    options.update(uvicorn_options)
    workers = options.get("workers") or 1
    if workers > 1 and not settings.redis_url:
        raise SettingsError(
            f"{workers} workers need the Redis broker (ROOMCAST_REDIS_URL, or settings= "
            "with redis_url): with the memory broker each worker would keep its own rooms"
        )
    run_uvicorn(app, options)


class _WorkerConfig(Config):
    """uvicorn's ``Config`` for several workers, except that an app that fails to load
    in a worker ends that worker with uvicorn's start-up failure code whatever it
    raised. uvicorn exits so for an import error or a factory's ``TypeError`` only;
    anything else a host's factory raises killed the worker with 1, and the
    supervisor started it again for ever (four times a second, a traceback each).
    Made in the parent and unpickled in each worker: module-level on purpose."""

    def load(self) -> None:
        try:
            super().load()
        except Exception:
            logging.getLogger("uvicorn.error").exception("roomcast: the app could not be loaded")
            sys.exit(STARTUP_FAILURE)


def run_uvicorn(app: Any, options: dict[str, Any]) -> None:
    """``uvicorn.run(app, **options)``, except that with several workers a worker that
    fails to start (its lifespan raised: a service gone since the checks) ends the process
    with exit code 3, as one worker's failure does.

    uvicorn's supervisor stops the other workers when one exits with its start-up
    failure code, then returns normally, so ``uvicorn.run`` would end the process
    with 0 and a process manager (systemd, Docker, Kubernetes) would see a clean stop.
    An app factory that raises counts as such a failure too (:class:`_WorkerConfig`).
    """
    if (options.get("workers") or 1) <= 1 or not isinstance(app, str):
        uvicorn.run(app, **options)  # exits 3 itself when its one server did not start
        return
    from uvicorn.supervisors import Multiprocess  # (it imports the reloaders too)

    config = _WorkerConfig(app, **options)
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    try:
        supervisor.run()
    finally:
        if config.uds and os.path.exists(config.uds):
            with contextlib.suppress(OSError):
                os.remove(config.uds)
    processes = getattr(supervisor, "processes", [])  # uvicorn's supervisor, read defensively
    failed = [p.pid for p in processes if getattr(p, "exitcode", None) == STARTUP_FAILURE]
    if failed:
        logging.getLogger("uvicorn.error").error(
            "roomcast: a worker failed to start (process %s; the error is above); exiting with %d",
            ", ".join(map(str, failed)),
            STARTUP_FAILURE,
        )
        sys.exit(STARTUP_FAILURE)


def serving_config() -> Any | None:
    """The ``uvicorn.Config`` of the server running this process, when that can be
    told (uvicorn serving from the main thread: its SIGTERM handler is a method of
    its ``Server``, as sse-starlette also finds it); else None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    config = getattr(server, "config", None)
    return config if hasattr(config, "ws_protocol_class") else None
