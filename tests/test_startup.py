"""Roomcast as a library at startup (startup.py): a service its settings name that
cannot be reached makes the lifespan raise :class:`roomcast.StartupError` naming the
setting, never exit the process; ``startup_check=False`` starts without Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

import roomcast
from roomcast import Roomcast, Settings, SettingsError, StartupError
from roomcast.startup import one_line, redis_address

REFUSED_REDIS = "redis://:s3cretpass@127.0.0.1:1/0"  # nothing listens on port 1


def sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/startup.db"


async def start(rc: Roomcast) -> None:
    """Enter and leave the lifespan as a host app's would."""
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router)
    async with rc.lifespan(app):
        pass


async def test_a_lifespan_whose_redis_refuses_raises_startup_error_naming_the_setting(
    tmp_path: Path,
) -> None:
    rc = Roomcast(Settings(redis_url=REFUSED_REDIS, database_url=sqlite(tmp_path)))
    with pytest.raises(StartupError) as caught:  # a SystemExit would not be caught here
        await start(rc)
    error = caught.value
    assert error.setting == "ROOMCAST_REDIS_URL"
    assert str(error).startswith("ROOMCAST_REDIS_URL: Redis at 127.0.0.1:1 cannot be reached: ")
    assert "s3cretpass" not in str(error)
    assert "\n" not in str(error)
    assert isinstance(error, roomcast.RoomcastError)
    assert not rc.running


@pytest.mark.parametrize("startup_check", [True, False])
async def test_a_database_that_cannot_be_opened_stops_the_startup_either_way(
    tmp_path: Path, startup_check: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = aiosqlite_threads(monkeypatch)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/no-such-folder/x.db",
        startup_check=startup_check,
    )
    with pytest.raises(StartupError) as caught:
        await start(Roomcast(settings))
    assert caught.value.setting == "ROOMCAST_DATABASE_URL"
    assert "unable to open database file" in caught.value.reason
    # Checked without aiosqlite: its thread for a file that does not open would finish
    # after the failure, and raise "Event loop is closed" once this test's loop is gone.
    assert threads == []


async def test_a_sqlite_file_that_opens_is_used_through_aiosqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = aiosqlite_threads(monkeypatch)  # the spy sees them when there are any
    await start(Roomcast(Settings(database_url=sqlite(tmp_path))))
    assert threads
    assert (tmp_path / "startup.db").exists()


def aiosqlite_threads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """A list that gets an item for each aiosqlite connection thread started from now."""
    import aiosqlite.core

    started: list[object] = []
    worker = aiosqlite.core._connection_worker_thread

    def counted(tx: object) -> None:
        started.append(tx)
        worker(tx)

    monkeypatch.setattr(aiosqlite.core, "_connection_worker_thread", counted)
    return started


async def test_without_the_check_the_lifespan_starts_and_the_broker_is_not_ready(
    tmp_path: Path,
) -> None:
    settings = Settings(
        redis_url=REFUSED_REDIS,
        database_url=sqlite(tmp_path),
        startup_check=False,
        redis_timeout=0.2,
    )
    rc = Roomcast(settings)
    app = FastAPI(lifespan=rc.lifespan)
    async with rc.lifespan(app):
        assert rc.running
        assert not rc.hub.broker.ready  # /readyz answers 503 meanwhile
    assert not rc.running


def test_a_redis_url_redis_py_cannot_parse_is_a_settings_error_at_construction() -> None:
    with pytest.raises(SettingsError, match=r"^ROOMCAST_REDIS_URL: Invalid value for 'db'"):
        Roomcast(Settings(redis_url="redis://127.0.0.1:6379/0?db=x"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+asyncpg://app@127.0.0.1:99999/db", "the port must be a number, 1 to 65535"),
        ("postgresql+asyncpg://app@127.0.0.1:x/db", "the port must be a number, 1 to 65535"),
    ],
)
def test_a_database_port_out_of_range_is_a_settings_error_at_construction(
    url: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=rf"^ROOMCAST_DATABASE_URL: {message}$"):
        Roomcast(Settings(database_url=url))


def test_a_redis_url_that_is_no_url_names_its_setting() -> None:
    with pytest.raises(SettingsError, match=r"^ROOMCAST_REDIS_URL: not a URL$"):
        Settings(redis_url="redis://[::1")


def test_the_reason_is_the_innermost_cause_on_one_line_without_the_password() -> None:
    try:
        try:
            raise OSError("connect to app:p%40ss@db failed\n  (p@ss rejected)")
        except OSError as cause:
            raise RuntimeError("outer") from cause
    except RuntimeError as error:
        text = one_line(error, "postgresql://app:p%40ss@db/x")
    assert text == "connect to app:***@db failed (*** rejected) (OSError)"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://:s3cretpass@127.0.0.1:1/0", "127.0.0.1:1"),
        ("redis://cache", "cache:6379"),
        ("rediss://user:pw@redis.example.com:6380/2", "redis.example.com:6380"),
        ("redis://[::1]:7000", "[::1]:7000"),
        ("unix:///run/redis.sock?db=1", "/run/redis.sock"),
        ("redis://127.0.0.1:99999", None),
        ("redis://", None),
    ],
)
def test_a_redis_error_names_the_address_the_url_points_at_never_its_password(
    url: str, address: str | None
) -> None:
    assert redis_address(url) == address
