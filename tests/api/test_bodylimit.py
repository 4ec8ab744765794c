"""Request bodies (api/bodylimit.py), in process through raw ASGI calls, so each test
sees exactly how much of a body the app asked for: refused by Content-Length or by
credentials before any is read, counted while read, timed out when it stalls;
standalone and mounted. The same against real servers: tests/e2e/test_http_limits.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import Depends, FastAPI, HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive

from roomcast import Principal, Roomcast
from roomcast.api.bodylimit import BODY_ENVELOPE
from roomcast.app import create_app
from roomcast.settings import Settings

pytestmark = pytest.mark.timeout(60)

API_KEY = "body-limit-key"
SECRET = "s" * 32
PUBLISH = "/rooms/chat:body/messages"
LIMIT = 64 * 1024 + BODY_ENVELOPE  # the default: max_payload_bytes + 16 KiB


class Body:
    """A ``receive`` that hands out ``chunk`` bytes per message (``total`` in all,
    or for ever), or waits for ever once ``stall_after`` bytes are out; it counts
    what the app asked for."""

    def __init__(
        self, data: bytes = b"", *, chunk: int = 16 * 1024, total: int | None = None,
        stall_after: int | None = None,
    ) -> None:  # fmt: skip
        self.data = data
        self.chunk = chunk
        self.total = len(data) if total is None and data else total
        self.stall_after = stall_after
        self.sent = 0
        self.calls = 0

    async def __call__(self) -> Message:
        self.calls += 1
        if self.stall_after is not None and self.sent >= self.stall_after:
            await asyncio.Event().wait()
        if self.data:
            part = self.data[self.sent : self.sent + self.chunk]
        else:
            size = self.chunk if self.total is None else min(self.chunk, self.total - self.sent)
            part = b"x" * size
        self.sent += len(part)
        more = self.total is None or self.sent < self.total
        return {"type": "http.request", "body": part, "more_body": more}


async def call(
    app: ASGIApp, path: str, receive: Receive, headers: dict[str, str], method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request straight into ``app``: (status, headers, body)."""
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


def json_headers(length: int | None, **extra: str) -> dict[str, str]:
    headers = {"content-type": "application/json", **extra}
    if length is None:
        headers["transfer-encoding"] = "chunked"
    else:
        headers["content-length"] = str(length)
    return headers


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with app.router.lifespan_context(app):
        yield app


def strict(**settings: Any) -> Settings:
    return Settings(auth="jwt", jwt_secret=SECRET, api_keys=[API_KEY], **settings)


# -- the size limit -------------------------------------------------------------------


async def test_a_content_length_over_the_limit_is_refused_413_before_any_byte_is_read() -> None:
    async with running(create_app(Settings())) as app:
        for declared in (LIMIT + 1, 100 * 1024 * 1024, 2**40):
            body = Body(total=declared)
            status, _, reply = await call(app, PUBLISH, body, json_headers(declared))
            assert status == 413
            assert b"limit" in reply
            assert body.calls == 0
        body = Body(b'{"data": "fits"}')
        status, _, _ = await call(app, PUBLISH, body, json_headers(len(body.data)))
        assert status == 201


async def test_a_chunked_body_is_cut_at_the_limit_with_413() -> None:
    async with running(create_app(Settings())) as app:
        body = Body(chunk=16 * 1024, total=8 * 1024 * 1024)
        status, headers, _ = await call(app, PUBLISH, body, json_headers(None))
        assert status == 413
        # No Connection: close: the server drops the rest as it comes (lingers), so a
        # client still sending reads the 413 (tests/e2e/test_body_limit_live.py).
        assert "connection" not in headers
        assert LIMIT < body.sent <= LIMIT + 16 * 1024


async def test_max_body_bytes_sets_the_limit() -> None:
    async with running(create_app(Settings(max_body_bytes=1000))) as app:
        status, _, _ = await call(app, PUBLISH, Body(total=1001), json_headers(1001))
        assert status == 413
        small = Body(b'{"data": "' + b"x" * 900 + b'"}')
        status, _, _ = await call(app, PUBLISH, small, json_headers(len(small.data)))
        assert status == 201


async def test_a_body_that_stalls_for_body_timeout_gets_408_and_connection_close() -> None:
    async with running(create_app(Settings(body_timeout=0.3))) as app:
        body = Body(b'{"data": "' + b"x" * 100 + b'"}', chunk=5, stall_after=5)
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):  # without the limit: waits for ever
            status, headers, _ = await call(app, PUBLISH, body, json_headers(len(body.data)))
        assert status == 408
        assert headers["connection"] == "close"
        assert asyncio.get_running_loop().time() - started > 0.29  # not before body_timeout


async def test_a_slow_body_that_keeps_coming_is_read_to_its_end() -> None:
    async with running(create_app(Settings(body_timeout=0.3))) as app:
        data = b'{"data": "slow but steady"}'

        async def trickle() -> Message:
            await asyncio.sleep(0.05)  # each gap well under body_timeout
            return await inner()

        inner = Body(data, chunk=2)
        status, _, _ = await call(app, PUBLISH, trickle, json_headers(len(data)))
        assert status == 201
        assert inner.calls == len(data) // 2 + 1


# -- credentials before the body ------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),  # anonymous: may write nowhere with auth=jwt
        ({"x-api-key": "wrong"}, 401),
        ({"x-api-key": ""}, 401),
        ({"authorization": "Bearer not-a-token"}, 401),
        ({"authorization": f"Basic {API_KEY}"}, 401),
        ({"x-api-key": API_KEY, "authorization": "Bearer "}, 401),
    ],
)
async def test_credentials_that_fail_are_refused_before_the_body_is_read(
    headers: dict[str, str], status: int
) -> None:
    async with running(create_app(strict())) as app:
        for length in (50_000, None):  # declared, and chunked
            body = Body(total=20 * 1024 * 1024)
            got, reply_headers, _ = await call(app, PUBLISH, body, json_headers(length, **headers))
            assert got == status
            assert reply_headers["www-authenticate"].startswith("Bearer")
            assert body.calls == 0


async def test_a_token_that_may_only_read_is_refused_403_before_the_body_is_read() -> None:
    from ..auth.keys import hs256

    token = hs256(secret=SECRET, rooms=["chat:*"])  # no publish claim
    async with running(create_app(strict())) as app:
        body = Body(total=50_000)
        headers = json_headers(50_000, authorization=f"Bearer {token}")
        assert (await call(app, PUBLISH, body, headers))[0] == 403
        assert body.calls == 0


async def test_valid_credentials_get_their_body_read_once_and_verified_once() -> None:
    async with running(create_app(strict())) as app:
        rc: Roomcast = app.state.roomcast
        verified = 0
        rest_principal = rc.authority.rest_principal

        async def counting(*args: Any) -> Principal:
            nonlocal verified
            verified += 1
            return await rest_principal(*args)

        rc.authority.rest_principal = counting  # type: ignore[method-assign, assignment]
        data = b'{"data": {"n": 1}}'
        headers = json_headers(len(data), **{"x-api-key": API_KEY})
        status, _, _ = await call(app, PUBLISH, Body(data), headers)
        assert status == 201
        assert verified == 1  # the guard's principal is the route's caller


# -- mounted in a host app ------------------------------------------------------------


def _host_included(rc: Roomcast) -> FastAPI:
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router, prefix="/rt")
    return app


def _host_api_router(rc: Roomcast) -> FastAPI:
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.api_router, prefix="/rt")
    return app


def _host_mounted(rc: Roomcast) -> FastAPI:
    app = FastAPI(lifespan=rc.lifespan)
    app.mount("/rt", rc.router)
    return app


def _host_guarded(rc: Roomcast) -> FastAPI:
    async def require_session() -> None:
        raise HTTPException(401, "log in first")

    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router, prefix="/rt", dependencies=[Depends(require_session)])
    return app


@pytest.mark.parametrize("host", [_host_included, _host_api_router, _host_mounted, _host_guarded])
async def test_the_limits_hold_when_a_host_app_mounts_roomcast(
    host: Callable[[Roomcast], FastAPI],
) -> None:
    async with running(host(Roomcast(Settings(body_timeout=0.3)))) as app:
        path = "/rt" + PUBLISH
        body = Body(total=100 * 1024 * 1024)
        assert (await call(app, path, body, json_headers(100 * 1024 * 1024)))[0] == 413
        assert body.calls == 0
        chunked = Body(total=8 * 1024 * 1024)
        assert (await call(app, path, chunked, json_headers(None)))[0] == 413
        assert chunked.sent <= LIMIT + 16 * 1024
        stalled = Body(b'{"data": 1}', chunk=1, stall_after=1)
        async with asyncio.timeout(5):
            assert (await call(app, path, stalled, json_headers(11)))[0] == 408


async def test_with_the_applications_authenticate_only_the_limits_apply_before_the_body() -> None:
    seen: list[str | None] = []

    async def authenticate(conn: HTTPConnection) -> Principal | None:
        seen.append(conn.headers.get("authorization"))
        return Principal("ann", publish=["chat:*"], subscribe=["chat:*"])

    rc = Roomcast(Settings(), authenticate=authenticate)
    async with running(_host_included(rc)) as app:
        path = "/rt" + PUBLISH
        big = Body(total=LIMIT + 1)
        assert (await call(app, path, big, json_headers(LIMIT + 1)))[0] == 413
        assert big.calls == 0
        assert seen == []  # refused before the host's dependencies ran
        data = b'{"data": "hi"}'  # a scheme of the application's own is its business
        headers = json_headers(len(data), authorization="Basic YW5uOnB3")
        assert (await call(app, path, Body(data), headers))[0] == 201
        assert seen == ["Basic YW5uOnB3"]
