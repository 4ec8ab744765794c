"""RedisBroker.check(), the startup check (startup.py): one connection as start() would
make it, no retry, nothing left open; BrokerUnavailable says what failed. Real
redis-servers and a real sentinel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from roomcast.hub.broker import BrokerUnavailable
from roomcast.hub.redis import RedisBroker
from roomcast.testing import RedisServer, free_port, redis_available
from roomcast.testing.redis_sentinel import RedisSentinels

from ..conftest import require


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinels]:
    require(redis_available(), "redis-server (apt-get install redis-server)")
    with RedisSentinels(tmp_path_factory.mktemp("sentinels")) as redis:
        yield redis


async def test_a_redis_that_answers_passes_and_nothing_is_left_open(
    redis_server: RedisServer,
) -> None:
    before = clients(redis_server)
    await RedisBroker(redis_server.url, timeout=2).check()
    deadline = time.monotonic() + 5  # Redis notices a closed socket in its next loop
    while clients(redis_server) != before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert clients(redis_server) == before


def clients(redis: RedisServer) -> int:
    """Clients connected to ``redis`` (redis-cli's own included)."""
    return int(redis.cli("INFO", "clients").split("connected_clients:")[1].split()[0])


async def test_a_refused_port_is_unavailable_at_once_with_redis_py_s_reason() -> None:
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}", timeout=30)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"Error 111 connecting to 127\.0\.0\.1"):
        await broker.check()
    assert time.monotonic() - started < 5  # not the 30 s timeout: no wait, no retry


async def test_sentinels_that_name_a_master_that_answers_pass(sentinels: RedisSentinels) -> None:
    addresses = [("127.0.0.1", sentinel.port) for sentinel in sentinels.sentinels]
    broker = RedisBroker("redis://", sentinels=addresses, sentinel_service=sentinels.service)
    await broker.check()


async def test_sentinels_that_know_no_such_master_say_so(sentinels: RedisSentinels) -> None:
    addresses = [("127.0.0.1", free_port()), *(("127.0.0.1", s.port) for s in sentinels.sentinels)]
    broker = RedisBroker("redis://", sentinels=addresses, sentinel_service="nosuch")
    with pytest.raises(BrokerUnavailable, match="knows no master named 'nosuch'"):
        await broker.check()


async def test_a_url_redis_py_refuses_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError, match=r"^Invalid value for 'db' in connection URL$"):
        RedisBroker("redis://:hunter2@127.0.0.1/0?db=x")
    assert RedisBroker.url_problem("redis://:hunter2@127.0.0.1/0") is None
