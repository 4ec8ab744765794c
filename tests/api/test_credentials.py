"""Every credential a request presents must hold (docs/security.md): a header that
is there but unusable is refused 401, never taken for absent. REST and the refusals
of SSE, in process (nothing here streams)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.requests import HTTPConnection

from roomcast import Principal, Roomcast
from roomcast.app import create_app
from roomcast.settings import Settings

from ..auth.keys import hs256
from .test_bodylimit import _host_included

pytestmark = pytest.mark.timeout(60)

API_KEY = "credentials-key"
SECRET = "c" * 32


@contextlib.asynccontextmanager
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def strict() -> Settings:
    return Settings(auth="jwt", jwt_secret=SECRET, api_keys=[API_KEY])  # type: ignore[arg-type]


def token(**claims: Any) -> str:
    return hs256(secret=SECRET, exp=int(time.time()) + 300, **claims)


@pytest.mark.parametrize(
    "headers",
    [
        [("X-API-Key", API_KEY), ("Authorization", "Basic dXNlcjpwYXNz")],
        [("X-API-Key", API_KEY), ("Authorization", "")],
        [("X-API-Key", API_KEY), ("Authorization", "Bearer")],
        [("X-API-Key", API_KEY), ("Authorization", "Bearer   ")],
        [("X-API-Key", API_KEY), ("Authorization", "Bearer two tokens")],
        [("Authorization", f"Bearer {API_KEY}"), ("X-API-Key", "")],
        [("Authorization", f"Bearer {API_KEY}"), ("X-API-Key", "   ")],
        [("X-API-Key", API_KEY), ("X-API-Key", "another")],
        [("X-API-Key", API_KEY), ("X-API-Key", API_KEY)],
        [("Authorization", f"Bearer {API_KEY}"), ("Authorization", f"Bearer {API_KEY}")],
    ],
)
async def test_an_unusable_credential_next_to_a_valid_one_is_refused_401(
    headers: list[tuple[str, str]],
) -> None:
    async with client(create_app(strict())) as http:
        assert (await http.get("/stats", headers={"X-API-Key": API_KEY})).status_code == 200
        reply = await http.get("/stats", headers=headers)
        assert reply.status_code == 401
        assert 'error="invalid_token"' in reply.headers["www-authenticate"]


async def test_either_valid_credential_alone_still_passes() -> None:
    async with client(create_app(strict())) as http:
        for headers in ({"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"},
                        {"Authorization": f"bearer  {API_KEY} "}):  # fmt: skip
            assert (await http.get("/stats", headers=headers)).status_code == 200
        reader = {"Authorization": f"Bearer {token(rooms=['chat:*'])}"}
        assert (await http.get("/rooms/chat:a/messages", headers=reader)).status_code == 200


async def test_with_auth_off_a_non_bearer_authorization_is_refused_too() -> None:
    async with client(create_app(Settings())) as http:
        assert (await http.get("/stats")).status_code == 200
        basic = {"Authorization": "Basic dXNlcjpwYXNz"}
        assert (await http.get("/stats", headers=basic)).status_code == 401


async def test_with_the_applications_authenticate_a_non_bearer_authorization_is_its_business() -> (
    None
):
    async def authenticate(conn: HTTPConnection) -> Principal | None:
        header = conn.headers.get("authorization", "")
        return Principal("ann", admin=True) if header.startswith("Basic ") else None

    rc = Roomcast(Settings(api_keys=[API_KEY]), authenticate=authenticate)  # type: ignore[list-item]
    async with client(_host_included(rc)) as http:
        basic = {"Authorization": "Basic YW5uOnB3"}
        assert (await http.get("/rt/stats", headers=basic)).status_code == 200
        # X-API-Key is roomcast's: an empty one is a wrong one.
        empty_key = {**basic, "X-API-Key": ""}
        assert (await http.get("/rt/stats", headers=empty_key)).status_code == 401


# -- SSE: the explicit token (header or ?token=) must be usable -----------------------


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Authorization": "Basic dXNlcjpwYXNz"}, {"token": "VALID"}),
        ({"Authorization": ""}, {"token": "VALID"}),
        ({"Authorization": "Bearer "}, {"token": "VALID"}),
        ({}, {"token": ""}),
        ({"Authorization": "Bearer VALID"}, {"token": ""}),
        ({"Authorization": "Bearer VALID"}, {"token": "another-token"}),
    ],
)
async def test_an_sse_request_with_an_unusable_explicit_token_is_refused_401(
    headers: dict[str, str], params: dict[str, str]
) -> None:
    valid = token(rooms=["chat:*"])
    headers = {k: v.replace("VALID", valid) for k, v in headers.items()}
    params = {k: v.replace("VALID", valid) for k, v in params.items()}
    async with client(create_app(strict())) as http:
        # The valid token alone is taken: a room it may not read is 403, not 401.
        control = await http.get("/rooms/dm:x/events", params={"token": valid})
        assert control.status_code == 403
        reply = await http.get("/rooms/dm:x/events", headers=headers, params=params)
        assert reply.status_code == 401
        assert 'error="invalid_token"' in reply.headers["www-authenticate"]
