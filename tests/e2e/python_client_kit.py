"""Helpers of the roomcast.client tests (test_python_client*.py): tokens, per-test
Redis prefixes, the admin REST calls, and waiting for a condition."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from ..auth.keys import SECRET, hs256
from ..conftest import ServerProcess
from ..redis_server import RedisServer

JWT = {"auth": "jwt", "jwt_secret": SECRET}
API_KEY = "python-client-key-0123456789"


def token(sub: str, ttl: float = 600, rooms: list[str] | None = None) -> str:
    return hs256(sub=sub, exp=int(time.time() + ttl), rooms=rooms or ["*"], publish=["*"])


def redis_settings(redis: RedisServer) -> dict[str, str]:
    return {"redis_url": redis.url, "redis_prefix": f"pyc{uuid.uuid4().hex[:8]}"}


async def wait_for(condition: Callable[[], object], what: str, timeout: float = 20) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


async def admin(server: ServerProcess, method: str, path: str, **kwargs: Any) -> None:
    """A call to the server's REST API with the API key (disconnect, unsubscribe)."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.request(
            method, f"{server.http}{path}", headers={"X-API-Key": API_KEY}, **kwargs
        )
    response.raise_for_status()
