"""LiveServer: an ASGI app under a real uvicorn, in a background thread of the test process.

::

    rc = Roomcast(Settings())
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router, prefix="/rt")

    with LiveServer(app) as server:
        assert httpx.get(f"{server.url}/rt/healthz").status_code == 200

    async with LiveServer(app) as server, connect(server.ws_url("/rt/ws")) as client:
        await client.subscribe("chat:lobby")
        await server.acall(rc.publish("chat:lobby", {"text": "hi"}))
        assert (await client.next_event("message"))["data"] == {"text": "hi"}

The server is the one production runs: uvicorn's HTTP and WebSocket protocols
on a real loopback socket, the app's lifespan, roomcast's WebSocket protocol
class. It runs on its own event loop in its own thread, so a test's loop (and
a synchronous test) can talk to it like any remote client. Objects the app
made on that loop (``rc``'s broker, hub, database engine) belong to it: run
coroutines that use them with :meth:`LiveServer.call` / :meth:`LiveServer.acall`,
not on the test's loop.

Off the main thread uvicorn installs no signal handlers, so the server never
touches the test process's SIGINT/SIGTERM. Stopping is uvicorn's own shutdown,
as on SIGTERM: with roomcast's WebSocket protocol (the default) roomcast drains
its connections, so clients see ``3000`` ("server shutdown: reconnect and
resume"), then the lifespan exits; with uvicorn's own protocols (``ws=``) uvicorn
closes WebSockets with ``1012``. A test can also drain without stopping:
``await server.acall(rc.drain())``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn

from ..runner import PROTOCOL_PATH, uvicorn_config_kwargs
from ..transports.handshake import HTTPProtocol
from .errors import LiveServerError

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["DEFAULT_OPTIONS", "LiveServer"]

T = TypeVar("T")


#: What LiveServer passes to ``uvicorn.Config`` unless told otherwise.
DEFAULT_OPTIONS: dict[str, Any] = {
    "lifespan": "on",
    "ws": PROTOCOL_PATH,  # roomcast's, as `roomcast serve` runs it
    "http": HTTPProtocol(),  # uvicorn's, with a deadline for request headers (10 s)
    # roomcast's default: compression would turn the direct write path off.
    "ws_per_message_deflate": False,
    # Leave the test process's logging as it is (uvicorn's records reach the root logger).
    "log_config": None,
    # An open HTTP stream must not hold the test's teardown for ever.
    "timeout_graceful_shutdown": 5.0,
}

# From Settings, with settings=: what `roomcast serve` would give uvicorn.
_FROM_SETTINGS = (
    "http",
    "ws_max_size",
    "ws_ping_interval",
    "ws_ping_timeout",
    "ws_per_message_deflate",
    "timeout_graceful_shutdown",
)

# LiveServer runs one server in this process on a socket it binds itself.
_REFUSED = ("fd", "uds", "workers", "reload")


class _State(enum.Enum):
    """NEW -> STARTING -> RUNNING -> STOPPING -> STOPPED (a failed start goes to STOPPED)."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class _Server(uvicorn.Server):
    """uvicorn's Server, telling another thread when its startup has ended."""

    def __init__(self, config: uvicorn.Config, startup_done: threading.Event) -> None:
        super().__init__(config)
        self.startup_done = startup_done

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:  # also when it fails: uvicorn exits with SystemExit
            self.startup_done.set()


class _ErrorLog(logging.Handler):
    """Keeps what uvicorn logs at ERROR from one thread (the server's)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.thread_id: int | None = None
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread_id:
            self.lines.append(self.format(record))


class LiveServer:
    """Runs ``app`` under a real uvicorn on ``host:port`` in a background thread.

    ``app`` is an ASGI app or an import string (``"myapp.main:app"``; pass
    ``factory=True`` for a factory). ``port=0`` (the default) takes a free port:
    the socket is bound here, before uvicorn starts, so no other process can
    take it meanwhile; :attr:`port` tells which. ``uvicorn_options`` go to
    ``uvicorn.Config`` over :data:`DEFAULT_OPTIONS` (lifespan on, roomcast's
    WebSocket protocol, uvicorn's HTTP protocol with roomcast's 10 s deadline for
    request headers, no per-message deflate, logging left alone, 5 s graceful
    shutdown); ``ws=`` picks another WebSocket protocol, ``http=`` another HTTP
    one. With ``settings=`` the WebSocket limits, the headers deadline and the
    shutdown timeout are those ``roomcast serve`` derives from them
    (``ws_max_size``, pings, deflate, ``handshake_timeout``).
    ``fd``, ``uds``, ``workers`` and ``reload`` are refused.

    :meth:`start` (or entering ``with`` / ``async with``) returns once uvicorn
    reports started, which is after the app's lifespan startup completed; if
    startup fails (the lifespan raises, the import string does not import) it
    raises :class:`~roomcast.testing.LiveServerError` with uvicorn's error log,
    and if it takes longer than ``start_timeout`` seconds, :class:`TimeoutError`.
    A LiveServer starts once: to start again (on the same port, say), make a
    new one with ``port=old.port``.

    :meth:`stop` (or leaving the block) asks uvicorn to exit, joins the thread
    for up to ``stop_timeout`` seconds, then forces the exit; it raises
    :class:`TimeoutError` if the thread still runs after that. When it returns,
    the lifespan has exited and the port is closed. ``async with`` runs these
    blocking waits in a worker thread, so the caller's event loop keeps running.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: Settings | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
        **uvicorn_options: Any,
    ) -> None:
        refused = [name for name in _REFUSED if name in uvicorn_options]
        if refused:
            raise TypeError(f"LiveServer runs one server on its own socket: {refused} not allowed")
        self.app = app
        self.host = host
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.options: dict[str, Any] = dict(DEFAULT_OPTIONS)
        if settings is not None:
            served = uvicorn_config_kwargs(settings)
            self.options.update({name: served[name] for name in _FROM_SETTINGS})
        self.options.update(uvicorn_options)
        self._port = port
        self._state = _State.NEW
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._startup_done = threading.Event()
        self._errors = _ErrorLog()
        self._exit: BaseException | None = None

    # -- addresses ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port served; with ``port=0``, known once :meth:`start` has bound it."""
        if self._port == 0:
            raise RuntimeError("the port is chosen when the LiveServer starts")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, no trailing slash."""
        return f"http://{self._netloc()}"

    def ws_url(self, path: str = "/ws") -> str:
        """``ws://HOST:PORT`` + ``path`` as given (a host app passes its prefix: ``"/rt/ws"``)."""
        if not path.startswith("/"):
            path = "/" + path
        return f"ws://{self._netloc()}{path}"

    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Started and not yet stopping."""
        return self._state is _State.RUNNING

    @property
    def uvicorn_server(self) -> uvicorn.Server:
        """The ``uvicorn.Server`` (its ``server_state`` lists open connections)."""
        if self._server is None:
            raise RuntimeError("the LiveServer has not started")
        return self._server

    def __repr__(self) -> str:
        where = self.url if self._port else f"http://{self.host}:?"
        return f"<LiveServer {where} {self._state.value}>"

    # -- start and stop -----------------------------------------------------------------

    def start(self) -> LiveServer:
        """Bind, start uvicorn in a thread, wait for its startup; ``self``."""
        if self._state is not _State.NEW:
            raise RuntimeError("a LiveServer starts once; make a new one to start again")
        self._state = _State.STARTING
        self._socket = self._bind()
        config = uvicorn.Config(self.app, host=self.host, port=self._port, **self.options)
        self._server = _Server(config, self._startup_done)
        self._thread = threading.Thread(
            target=self._run, args=(config,), name=f"LiveServer:{self._port}", daemon=True
        )
        log = logging.getLogger("uvicorn.error")
        log.addHandler(self._errors)
        try:
            self._thread.start()
            if not self._startup_done.wait(self.start_timeout):
                self._end_thread(cancel_first=True)
                raise TimeoutError(
                    f"{self.url}: the app did not start within {self.start_timeout} s"
                )
            if not self._server.started:
                self._thread.join(self.stop_timeout)
                raise LiveServerError(self._startup_failure())
        except BaseException:
            self._state = _State.STOPPED
            self._socket.close()
            raise
        finally:
            log.removeHandler(self._errors)
        self._state = _State.RUNNING
        return self

    def stop(self) -> None:
        """Stop uvicorn (the lifespan exits) and join its thread. Safe to call twice."""
        if self._state in (_State.NEW, _State.STOPPED):
            self._state = _State.STOPPED
            return
        self._state = _State.STOPPING
        try:
            self._end_thread()
        finally:
            if self._socket is not None:
                self._socket.close()
            self._state = _State.STOPPED

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._port))
        except BaseException:
            sock.close()
            raise
        self._port = int(sock.getsockname()[1])
        return sock

    def _run(self, config: uvicorn.Config) -> None:
        """The server thread: a new event loop (uvicorn's choice, uvloop if present)."""
        self._errors.thread_id = threading.get_ident()
        try:
            with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                runner.run(self._serve())
        except BaseException as exc:  # SystemExit when uvicorn's startup fails
            self._exit = exc
        finally:
            self._startup_done.set()

    async def _serve(self) -> None:
        assert self._server is not None
        assert self._socket is not None
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        await self._server.serve(sockets=[self._socket])

    def _end_thread(self, *, cancel_first: bool = False) -> None:
        """should_exit, then force_exit, then cancel the serving task, joining the
        thread between steps; ``cancel_first`` (a startup that hangs) cancels at once."""
        assert self._server is not None
        assert self._thread is not None
        steps = [self._cancel] if cancel_first else []
        steps += [self._ask_exit, self._force_exit, self._cancel]
        for step in steps:
            if not self._thread.is_alive():
                return
            step()
            self._thread.join(self.stop_timeout if step == self._ask_exit else 5)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.url}: the server thread did not end")

    def _ask_exit(self) -> None:
        assert self._server is not None
        self._server.should_exit = True

    def _force_exit(self) -> None:
        assert self._server is not None
        self._server.force_exit = True

    def _cancel(self) -> None:
        loop, main = self._loop, self._main
        if loop is not None and main is not None:
            loop.call_soon_threadsafe(main.cancel)

    def _startup_failure(self) -> str:
        lines = [line for line in self._errors.lines if line.strip()]
        if not lines:
            exit_ = self._exit
            code = exit_.code if isinstance(exit_, SystemExit) else None
            lines = [f"uvicorn exited ({code!r})" if code is not None else repr(exit_)]
        return f"{self.url}: the app did not start:\n" + "\n".join(lines)

    # -- running code on the server's loop ----------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T], *, timeout: float = 10.0) -> T:
        """Run ``coro`` on the server's event loop and wait for its result.

        For objects the app made on that loop: ``server.call(rc.publish("r", 1))``.
        Must not be called from the server's own thread (it would wait on itself).
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LiveServer.call from the server's own thread would deadlock")
        future = self._submit(coro)
        try:
            return future.result(timeout)
        except TimeoutError:
            if not future.done():
                future.cancel()
                raise TimeoutError(f"{self.url}: no result within {timeout} s") from None
            raise

    async def acall(self, coro: Coroutine[Any, Any, T], *, timeout: float = 10.0) -> T:
        """:meth:`call` for a test's event loop: awaits without blocking it."""
        future = asyncio.wrap_future(self._submit(coro))
        timer = asyncio.timeout(timeout)
        try:
            async with timer:
                return await future
        except TimeoutError:
            if timer.expired():
                raise TimeoutError(f"{self.url}: no result within {timeout} s") from None
            raise

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if self._state is not _State.RUNNING or self._loop is None:
            coro.close()
            raise RuntimeError(f"{self!r} is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    # -- context managers ---------------------------------------------------------------

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> LiveServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
