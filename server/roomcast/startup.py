"""Starting with services that cannot be reached: :class:`StartupError`.

A process that starts with a typo in ``ROOMCAST_REDIS_URL`` or a database that is not
there should say so at once, in one line naming the setting, rather than serve and
retry for ever (docs/operations.md, "Startup checks"). So the lifespan
(:func:`check_services`) connects once to the database and, with the setting
``startup_check`` (the default), to the broker, before it starts anything; and
``roomcast serve`` runs the same checks in its own process before uvicorn starts or
spawns workers (:func:`preflight`), where cli.py turns the error into one line on
stderr and exit status 2.

A library never exits the process: a host app's lifespan gets the exception::

    RoomcastError
     +-- StartupError      a service a setting names cannot be used at startup
                           (``setting``: e.g. ``ROOMCAST_REDIS_URL``; ``reason``)

The reason comes from the driver (``Connection refused``, ``Name or service not
known``, ``unable to open database file``), on one line, with any password of the
setting's URL blanked out. An outage after startup is not a StartupError: the broker
reconnects for ever and the database writer retries (docs/redis.md,
docs/persistence.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .hub.broker import Unavailable
from .protocol.errors import RoomcastError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .hub.broker import Broker
    from .settings import Settings

__all__ = [
    "DATABASE",
    "STARTUP_CHECK_HINT",
    "StartupError",
    "broker_setting",
    "check_broker",
    "check_database",
    "check_services",
    "needs",
    "one_line",
    "preflight",
]

DATABASE = "ROOMCAST_DATABASE_URL"
STARTUP_CHECK_HINT = " (ROOMCAST_STARTUP_CHECK=false starts without it and connects when it can)"


class StartupError(RoomcastError):
    """A service that ``setting`` names cannot be used, so the server does not start.

    ``str()`` is ``"<setting>: <reason>"``, one line, no secret."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


def broker_setting(settings: Settings) -> str:
    """The setting that names the broker's Redis (the sentinels when they are set)."""
    return "ROOMCAST_REDIS_SENTINELS" if settings.redis_sentinels else "ROOMCAST_REDIS_URL"


def one_line(error: BaseException, secret: str | None = None) -> str:
    """What went wrong, from the innermost cause of ``error`` (the driver's own
    message): one line, ``(ExceptionType)`` after it unless it names an error
    already, the password of the URL ``secret`` (if any) blanked out."""
    root = error
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    text = " ".join(str(root).split()) or type(root).__name__
    text = text.split(" (Background on this error at:")[0]
    if "Error" not in text and not isinstance(root, RoomcastError):  # redis-py: "Error 111 ..."
        module = type(root).__module__.split(".")[0]
        name = type(root).__name__ if module == "builtins" else f"{module}.{type(root).__name__}"
        text = f"{text} ({name})"
    return _blank_password(text, secret)


def _blank_password(text: str, url: str | None) -> str:
    if not url:
        return text
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        for form in (password, unquote(password)):
            text = text.replace(form, "***")
    return text


@contextlib.contextmanager
def needs(
    setting: str,
    what: str,
    *,
    secret: str | None = None,
    hint: str = "",
    errors: tuple[type[Exception], ...] = (Unavailable,),
) -> Iterator[None]:
    """Within it, an outage (:class:`~roomcast.hub.broker.Unavailable`: the broker,
    the database; or any of ``errors``) becomes ``StartupError(setting, "<what>
    cannot be reached: <one_line>")``."""
    try:
        yield
    except errors as error:
        reason = f"{what} cannot be reached: {one_line(error, secret)}"
        raise StartupError(setting, reason + hint) from None


async def check_services(settings: Settings, engine: AsyncEngine, broker: Broker) -> None:
    """Raise :class:`StartupError` unless the database answers (it is read at startup:
    schema, persisted rooms) and, with the setting ``startup_check``, the broker does."""
    await check_database(settings, engine)
    if settings.startup_check:
        await check_broker(settings, broker)


async def check_database(settings: Settings, engine: AsyncEngine) -> None:
    """StartupError naming ROOMCAST_DATABASE_URL unless a trivial query answers now
    (within ``database_timeout``). Any error counts: a driver's own (a host name it
    cannot encode, say) too. A SQLite file is opened with the standard library: an
    aiosqlite connection that fails to open leaves its thread to finish on its own,
    and that thread raises "Event loop is closed" if the loop has ended by then (a
    host whose startup fails, a test)."""
    from .db.engine import check_connection

    if check_sqlite(settings):
        return
    url = settings.database_url.get_secret_value()
    with needs(DATABASE, "the database", secret=url, errors=(Exception,)):
        await check_connection(engine)


async def check_broker(settings: Settings, broker: Broker) -> None:
    """StartupError naming the broker's setting unless it can be reached now
    (:meth:`~roomcast.hub.broker.Broker.check`: within ``redis_timeout``)."""
    url = settings.redis_url.get_secret_value() if settings.redis_url else None
    what = f"Redis at {address}" if url and (address := redis_address(url)) else "Redis"
    with needs(broker_setting(settings), what, secret=url, hint=STARTUP_CHECK_HINT):
        await broker.check()


def redis_address(url: str) -> str | None:
    """Where a Redis URL points, ``host:port`` (6379 unless it says) or a unix socket's
    path, never its password: the error names it whatever the driver's own message says
    (redis-py 8.2 stopped naming the address in a refused connection's)."""
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        return None
    if parts.scheme == "unix":
        return parts.path or None
    host = parts.hostname
    if not host:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def preflight(settings: Settings) -> None:
    """What ``roomcast serve`` checks in its own process before uvicorn starts, and
    before it spawns ``--workers``: the broker's and the database's URLs (SettingsError),
    then :func:`check_services` (StartupError), the broker first, before SQLAlchemy and
    the web stack are imported (a refused Redis is told in about a second). Leaves
    nothing open. Call with no event loop running."""
    import asyncio

    from .backends import make_broker, make_engine

    broker = make_broker(settings)

    async def check() -> None:
        if settings.startup_check:
            await check_broker(settings, broker)
        engine = make_engine(settings)  # a malformed URL is told here (SettingsError)
        try:
            await check_database(settings, engine)  # a SQLite file: without aiosqlite
        finally:
            await engine.dispose()

    asyncio.run(check())


def check_sqlite(settings: Settings) -> bool:
    """StartupError naming ROOMCAST_DATABASE_URL unless its SQLite file opens; True
    when the URL is such a file (checked), False for any other database."""
    from .db.engine import check_sqlite_file

    url = settings.database_url.get_secret_value()
    with needs(DATABASE, "the database", secret=url, errors=(Exception,)):
        return check_sqlite_file(url)
