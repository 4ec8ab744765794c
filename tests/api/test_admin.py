"""The admin page and ``GET /admin/overview`` in process: who may read it, where it
exists at all, and what it reports (docs/client.md, "Admin page")."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from starlette.requests import HTTPConnection

from roomcast import Principal, Roomcast
from roomcast.api.admin import available
from roomcast.app import create_app
from roomcast.auth import Authority
from roomcast.auth.errors import InvalidCredentials
from roomcast.cli import main
from roomcast.hub import incidents
from roomcast.hub.incidents import INCIDENTS, Incidents
from roomcast.hub.subscriber import Subscriber
from roomcast.settings import Settings

from ..auth.keys import hs256

pytestmark = pytest.mark.timeout(30)

API_KEY = "admin-page-key"
SECRET = "a" * 32
OVERVIEW = "/admin/overview"


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = ASGIWebSocketTransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def strict(**settings: Any) -> Settings:
    return Settings(auth="jwt", jwt_secret=SECRET, api_keys=[API_KEY], **settings)


def token(**claims: Any) -> str:
    return hs256(secret=SECRET, exp=int(time.time()) + 300, **claims)


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def test_under_jwt_only_an_api_key_or_a_token_with_the_admin_claim_may_read_it() -> None:
    async with running(create_app(strict())) as http:
        refused = await http.get(OVERVIEW)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert (await http.get(OVERVIEW, headers=bearer("wrong-key"))).status_code == 401
        user = token(sub="ann", rooms=["*"], publish=["*"])
        assert (await http.get(OVERVIEW, headers=bearer(user))).status_code == 403
        not_admin = token(sub="ann", admin=False)
        assert (await http.get(OVERVIEW, headers=bearer(not_admin))).status_code == 403

        assert (await http.get(OVERVIEW, headers=bearer(API_KEY))).status_code == 200
        assert (await http.get(OVERVIEW, headers={"X-API-Key": API_KEY})).status_code == 200
        admin = await http.get(OVERVIEW, headers=bearer(token(sub="ops", admin=True)))
        assert admin.status_code == 200
        assert admin.json()["health"]["ready"] is True
        page = await http.get("/admin")  # the page itself is static: it asks for the key
        assert page.status_code == 200
        assert 'data-testid="signin-form"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = await http.get("/web/admin.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert 'from "../roomcast.js"' in script.text  # built on the client library
        assert (await http.get("/web/admin.css")).headers["content-type"].startswith("text/css")


async def test_an_admin_claim_that_is_not_a_boolean_makes_the_token_invalid() -> None:
    authority = Authority(strict())
    with pytest.raises(InvalidCredentials, match="admin"):
        await authority.authenticate(token(sub="ops", admin="yes"))
    assert (await authority.authenticate(token(sub="ops", admin=True))).admin


def not_started(app: FastAPI) -> httpx.AsyncClient:
    """No lifespan: a route that exists answers 503 (not running), one that does not 404."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_roomcast_token_admin_signs_a_token_with_the_admin_claim(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "--sub", "ops", "--admin", "--secret", SECRET]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["admin"]) == ("ops", True)
    assert main(["token", "--sub", "ann", "--secret", SECRET]) == 0
    assert "admin" not in jwt.decode(capsys.readouterr().out.strip(), SECRET, ["HS256"])


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.5", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.7", False),
        ("example.org", False),
    ],
)
def test_with_auth_off_it_exists_only_on_a_loopback_address(host: str, loopback: bool) -> None:
    for settings in (Settings(host=host), Settings(host=host, api_keys=[API_KEY])):
        assert available(settings, Authority(settings)) is loopback  # keys do not turn it on
    jwt = strict(host=host)
    assert available(jwt, Authority(jwt))


async def test_where_it_does_not_exist_page_and_api_answer_404_and_the_other_pages_stay() -> None:
    for settings in (Settings(host="0.0.0.0"), Settings(admin=False), strict(admin=False)):
        async with not_started(create_app(settings)) as http:
            assert (await http.get(OVERVIEW, headers=bearer(API_KEY))).status_code == 404
            assert (await http.get("/admin")).status_code == 404
            assert (await http.get("/chat")).status_code == 200
    async with not_started(create_app(Settings(host="::1"))) as http:
        assert (await http.get(OVERVIEW)).status_code == 503  # there, but not running
        assert (await http.get("/admin")).status_code == 200


async def test_with_auth_off_on_loopback_it_needs_no_key_unless_api_keys_are_set() -> None:
    async with running(create_app(Settings())) as http:
        assert (await http.get(OVERVIEW)).status_code == 200
    async with running(create_app(Settings(api_keys=[API_KEY]))) as http:
        assert (await http.get(OVERVIEW)).status_code == 401
        assert (await http.get(OVERVIEW, headers=bearer(API_KEY))).status_code == 200


async def test_without_a_key_a_request_that_came_through_a_proxy_is_refused() -> None:
    proxied = [{"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}]
    async with running(create_app(Settings())) as http:
        for headers in proxied:
            reply = await http.get(OVERVIEW, headers=headers)
            assert reply.status_code == 403
            assert "ROOMCAST_API_KEYS" in reply.json()["detail"]
    async with running(create_app(Settings(api_keys=[API_KEY]))) as http:
        for headers in proxied:
            reply = await http.get(OVERVIEW, headers=headers | bearer(API_KEY))
            assert reply.status_code == 200


async def test_when_the_application_authenticates_its_admin_principals_may_read_it() -> None:
    def authenticate(conn: HTTPConnection) -> Principal | None:
        user = conn.headers.get("x-user")
        return Principal(user, admin=user == "boss") if user else None

    rc = Roomcast(Settings(), authenticate=authenticate)
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router, prefix="/rt")
    async with running(app) as http:
        assert (await http.get(f"/rt{OVERVIEW}")).status_code == 401
        assert (await http.get(f"/rt{OVERVIEW}", headers={"x-user": "ann"})).status_code == 403
        assert (await http.get(f"/rt{OVERVIEW}", headers={"x-user": "boss"})).status_code == 200
        assert (await http.get("/rt/admin")).status_code == 200


async def test_an_api_key_as_a_websocket_token_connects_as_an_administrator() -> None:
    """What the page's own roomcast.js connection does: publish anywhere."""
    async with running(create_app(strict())) as http, aconnect_ws("/ws", http) as ws:
        await ws.send_text(json.dumps({"op": "connect", "id": 1, "token": API_KEY, "name": "ops"}))
        connected = json.loads(await ws.receive_text(timeout=5))
        assert connected["ok"]
        assert connected["result"]["user_id"] == "api"
        await ws.send_text(json.dumps({"op": "publish", "id": 2, "room": "any:room", "data": 1}))
        assert json.loads(await ws.receive_text(timeout=5))["ok"]


async def subscribe(ws: Any, name: str, *rooms: str) -> None:
    await ws.send_text(json.dumps({"op": "connect", "id": 1, "name": name}))
    assert json.loads(await ws.receive_text(timeout=5))["ok"]
    for n, room in enumerate(rooms, 2):
        await ws.send_text(json.dumps({"op": "subscribe", "id": n, "room": room}))
        while json.loads(await ws.receive_text(timeout=5)).get("id") != n:
            pass  # join notices of others


async def test_the_overview_lists_rooms_busiest_first_with_subscribers_offset_and_presence() -> (
    None
):
    app = create_app(Settings())
    async with (
        running(app) as http,
        aconnect_ws("/ws", http) as ann,
        aconnect_ws("/ws", http) as bob,
    ):
        await subscribe(ann, "ann", "chat:a", "chat:b")
        await subscribe(bob, "bob", "chat:a")
        rc: Roomcast = app.state.roomcast
        for n in range(3):
            await rc.publish("chat:a", {"n": n})
        body = (await http.get(OVERVIEW)).json()
        rooms = {row["room"]: row for row in body["rooms"]}
        assert [row["room"] for row in body["rooms"]] == ["chat:a", "chat:b"]
        assert body["rooms_total"] == 2
        a = rooms["chat:a"]
        assert (a["subscribers"], a["websockets"], a["sse_streams"], a["offset"]) == (2, 2, 0, 3)
        assert a["presence"] == {
            "connections": 2,
            "members": [{"user": "ann", "connections": 1}, {"user": "bob", "connections": 1}],
        }
        assert rooms["chat:b"]["subscribers"] == 1
        assert rooms["chat:b"]["offset"] in (0, None)  # nothing published there yet
        totals = body["totals"]
        assert (totals["connections"], totals["subscriptions"], totals["rooms"]) == (2, 3, 2)
        assert totals["published"] >= 3
        assert body["health"] | {"degraded": []} == {
            "ready": True,
            "broker": True,
            "broker_kind": "memory",
            "degraded": [],
            "broker_reconnects": 0,
            "database": True,
            "database_kind": "sqlite",
            "draining": False,
            "presence": True,
        }

        busiest = (await http.get(OVERVIEW, params={"limit": 1})).json()
        assert ([r["room"] for r in busiest["rooms"]], busiest["rooms_total"]) == (["chat:a"], 2)
        matched = (await http.get(OVERVIEW, params={"match": "B"})).json()
        assert ([r["room"] for r in matched["rooms"]], matched["rooms_total"]) == (["chat:b"], 1)


async def test_evictions_and_logged_warnings_are_reported_newest_first_secrets_redacted() -> None:
    app = create_app(Settings())
    async with running(app) as http:
        sub = Subscriber("conn-slow", "Slow Sam", max_messages=1, max_bytes=100, user_id="sam")
        sub.rooms.update({"feed:a", "feed:b"})
        sub.evict("outbox_full")
        logging.getLogger("roomcast.hub").warning(
            "lost redis://:hunter2@redis:6379/0 while serving /ws?token=eyJsecret"
        )
        body = (await http.get(OVERVIEW)).json()
    eviction = body["evictions"][0]
    assert {k: eviction[k] for k in ("reason", "conn", "user", "name", "transport", "rooms")} == {
        "reason": "outbox_full",
        "conn": "conn-slow",
        "user": "sam",
        "name": "Slow Sam",
        "transport": "websocket",
        "rooms": ["feed:a", "feed:b"],
    }
    error = body["errors"][0]
    assert (error["level"], error["logger"]) == ("WARNING", "roomcast.hub")
    assert (
        error["message"]
        == "lost redis://:[redacted]@redis:6379/0 while serving /ws?token=[redacted]"
    )
    assert "hunter2" not in json.dumps(body)
    assert "eyJsecret" not in json.dumps(body)


def test_the_log_handler_is_taken_off_when_the_last_runtime_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(Alone: another runtime of this test process may be running, e.g. the one
    schemathesis starts to read the OpenAPI schema, and keep its handler on.)"""
    monkeypatch.setattr(incidents, "_attached", [])
    logger = logging.getLogger("roomcast")
    before = list(logger.handlers)
    with incidents.capture_logs(str), incidents.capture_logs(str):
        added = [h for h in logger.handlers if h not in before]
        assert len(added) == 1  # one handler however many runtimes
        logging.getLogger("roomcast.hub").warning("during the lifespan")
        assert INCIDENTS.recent_errors(1)[0].message == "during the lifespan"
    assert [h for h in logger.handlers if h not in before] == []


def test_the_incident_rings_are_bounded_and_cut_long_messages() -> None:
    incidents = Incidents(kept=3)
    for n in range(5):
        incidents.logged("ERROR", "roomcast", f"error {n}")
        incidents.evicted(
            "send_timeout", f"c{n}", "u", "U", sse=True, rooms=[f"r{i}" for i in range(20)]
        )
    assert [e.message for e in incidents.recent_errors()] == ["error 4", "error 3", "error 2"]
    newest = incidents.recent_evictions()[0]
    assert (newest.conn, newest.transport, newest.room_count, len(newest.rooms)) == (
        "c4",
        "sse",
        20,
        10,
    )
    incidents.logged("ERROR", "roomcast", "x" * 10_000)
    assert len(incidents.recent_errors(1)[0].message) == 500
