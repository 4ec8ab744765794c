"""Acceptance: tokens, permissions, origins and limits against a real server.

One server runs with ``auth=jwt`` for most tests: a public ``feed`` namespace
whose clients may not publish, an API key for the backend, one allowed origin.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from ..auth.keys import SECRET, ec_key, hs256, signed, unsigned
from ..conftest import ServerProcess, start_server
from .client import Client
from .sse_client import open_stream

pytestmark = pytest.mark.e2e

ServerFactory = Callable[..., ServerProcess]

API_KEY = "backend-key-0123456789"
APP_ORIGIN = "https://app.example"
NAMESPACES = {"feed": {"public": True, "client_publish": False}}
JWT = {
    "auth": "jwt",
    "jwt_secret": SECRET,
    "jwt_audience": "roomcast",
    "api_keys": API_KEY,
    "allowed_origins": APP_ORIGIN,
    "namespaces": json.dumps(NAMESPACES),
    "max_connections_per_user": 3,
}


def token(sub: str = "alice", *, ttl: float = 300, **claims: Any) -> str:
    claims.setdefault("aud", "roomcast")
    return hs256(sub=sub, exp=int(time.time() + ttl), **claims)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("auth"), **JWT)
    yield process
    process.stop()


async def connect(
    server: ServerProcess, tok: str | None, **kwargs: Any
) -> tuple[Client, dict[str, Any]]:
    client = await Client.open(server.ws, **kwargs)
    fields = {"token": tok} if tok is not None else {}
    return client, await client.request("connect", **fields)


# -- who gets in ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda: hs256(secret="another-secret-of-at-least-32-bytes!!", aud="roomcast"), 3500),
        (lambda: unsigned(aud="roomcast"), 3500),  # alg: none
        (lambda: signed(ec_key(), "ES256", aud="roomcast"), 3500),  # an algorithm not allowed
        (lambda: token(aud="another-service"), 3500),
        (lambda: "not-a-token", 3500),
        (lambda: token(ttl=-10), 3003),  # expired: fetch a new token and reconnect
    ],
    ids=["bad-signature", "alg-none", "alg-not-allowed", "wrong-audience", "garbage", "expired"],
)
async def test_bad_tokens_close_with_their_documented_code_and_nothing_leaks(
    server: ServerProcess, make_token: Callable[[], str], code: int
) -> None:
    publisher, _ = await connect(server, token("backend", rooms=["chat:*"], publish=["chat:*"]))
    client = await Client.open(server.ws)
    await client.send({"op": "connect", "id": 1, "token": make_token()})
    # Pipelined behind the refused connect: must never be carried out.
    await client.send({"op": "subscribe", "id": 2, "room": "chat:secret"})
    await client.send({"op": "history", "id": 3, "room": "chat:secret"})
    await publisher.request("publish", room="chat:secret", data="private")
    assert await client.closed() == code
    assert client.events == []  # nothing of any room reached it
    assert not any(reply.get("ok") for reply in client.replies)
    await publisher.close()


async def test_no_token_where_every_room_needs_one_closes_3500(
    server_factory: ServerFactory,
) -> None:
    strict = server_factory(auth="jwt", jwt_secret=SECRET, auth_timeout=1)
    client = await Client.open(strict.ws)
    await client.send({"op": "subscribe", "id": 1, "room": "chat:x"})
    assert await client.closed() == 3500
    silent = await Client.open(strict.ws)  # never sends connect
    assert await silent.closed(timeout=5) == 3500
    # A frame the session refuses before any auth check still needs credentials first.
    dodger = await Client.open(strict.ws)
    await dodger.send({"op": "unsubscribe", "id": 1, "room": "chat:x"})
    assert await dodger.closed() == 3500
    assert dodger.replies == []


async def test_tokens_from_the_query_or_a_cookie_are_accepted(server: ServerProcess) -> None:
    tok = token("carol", rooms=["chat:*"])
    by_query = await Client.open(f"{server.ws}?token={tok}")
    assert (await by_query.request("subscribe", room="chat:q"))["ok"]
    by_cookie = await Client.open(server.ws, additional_headers={"Cookie": f"roomcast_token={tok}"})
    reply = await by_cookie.request("connect")
    assert reply["result"]["user_id"] == "carol"
    assert reply["result"]["expires"] > time.time()
    for client in (by_query, by_cookie):
        await client.close()


async def test_the_display_name_comes_from_the_token_not_the_client(server: ServerProcess) -> None:
    client, reply = await connect(server, token("dave", name="Dave D", rooms=["chat:*"]))
    assert reply["result"]["user"] == "Dave D"
    await client.close()
    other = await Client.open(server.ws)
    await other.send({"op": "connect", "id": 1, "token": token("erin"), "name": "Dave D"})
    assert (await other.reply(1))["result"]["user"] == "erin"
    await other.close()


# -- what a principal may do ------------------------------------------------------------


async def test_subscribe_and_publish_outside_the_tokens_patterns_are_forbidden(
    server: ServerProcess,
) -> None:
    client, _ = await connect(server, token("frank", rooms=["chat:*"], publish=["chat:open"]))
    denied = await client.request("subscribe", room="dm:bob")
    assert denied["error"]["code"] == "forbidden"
    denied = await client.request("publish", room="chat:readonly", data=1)
    assert denied["error"]["code"] == "forbidden"
    denied = await client.request("history", room="dm:bob")
    assert denied["error"]["code"] == "forbidden"
    # The connection stays, and what the token allows works.
    assert (await client.request("subscribe", room="chat:readonly"))["ok"]
    assert (await client.request("publish", room="chat:open", data=1))["ok"]
    await client.close()


async def test_public_namespaces_are_readable_without_a_token_but_not_publishable(
    server: ServerProcess,
) -> None:
    viewer, reply = await connect(server, None)
    assert reply["ok"]
    assert reply["result"]["user"].startswith("anon-")
    assert (await viewer.request("subscribe", room="feed:prices"))["ok"]
    assert (await viewer.request("subscribe", room="chat:lobby"))["error"]["code"] == "forbidden"
    assert (await viewer.request("publish", room="feed:prices", data=1))["error"]["code"] == (
        "forbidden"
    )
    # client_publish=false: even a token that names the room may not publish there...
    writer, _ = await connect(server, token("gina", publish=["*"]))
    assert (await writer.request("publish", room="feed:prices", data=1))["error"]["code"] == (
        "forbidden"
    )
    # ...only the backend, over REST with an API key.
    async with httpx.AsyncClient(base_url=server.http) as http:
        reply_ = await http.post(
            "/rooms/feed:prices/messages", json={"data": 42}, headers={"X-API-Key": API_KEY}
        )
        assert reply_.status_code == 201
    assert (await viewer.event())["data"] == 42
    for client in (viewer, writer):
        await client.close()


async def test_too_many_forbidden_requests_close_3502(server: ServerProcess) -> None:
    client, _ = await connect(server, token("henry", rooms=["chat:*"]))
    for n in range(25):
        await client.send({"op": "subscribe", "id": n, "room": f"dm:{n}"})
    assert await client.closed() == 3502


# -- origins ----------------------------------------------------------------------------


async def test_a_page_of_another_origin_is_refused_at_the_handshake(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as info:
        await Client.open(server.ws, origin="https://evil.example")  # type: ignore[arg-type]
    assert info.value.response.status_code == 403
    for origin in (APP_ORIGIN, server.http):  # configured, and same-origin
        client = await Client.open(server.ws, origin=origin)  # type: ignore[arg-type]
        assert (await client.request("ping"))["ok"]
        await client.close()


async def test_the_servers_host_without_its_port_or_with_another_scheme_is_another_origin(
    server: ServerProcess,
) -> None:
    host = f"127.0.0.1:{server.port}"
    for origin in ("http://127.0.0.1", "http://127.0.0.1:80", f"https://{host}"):
        with pytest.raises(InvalidStatus) as info:
            await Client.open(server.ws, origin=origin)
        assert info.value.response.status_code == 403, origin
    cookie = {"Cookie": f"roomcast_token={token('ivy', rooms=['chat:*'])}"}
    async with httpx.AsyncClient(timeout=5) as http:
        refused = await http.get(
            f"{server.http}/rooms/chat:c/events", headers={**cookie, "Origin": "http://127.0.0.1"}
        )
        assert refused.status_code == 403
    client = await Client.open(server.ws, origin=f"http://{host}")
    assert (await client.request("ping"))["ok"]  # the same scheme, host and port
    await client.close()


async def test_sse_with_a_cookie_from_another_origin_is_refused(server: ServerProcess) -> None:
    cookie = {"Cookie": f"roomcast_token={token('ivy', rooms=['chat:*'])}"}
    url = f"{server.http}/rooms/chat:c/events"
    async with httpx.AsyncClient(timeout=5) as http:
        refused = await http.get(url, headers={**cookie, "Origin": "https://evil.example"})
        assert refused.status_code == 403
    async with open_stream(url, headers={**cookie, "Origin": APP_ORIGIN}) as stream:
        assert (await stream.next()).event == "subscribed"


# -- SSE and REST -------------------------------------------------------------------------


async def test_sse_needs_a_token_for_rooms_that_are_not_public(server: ServerProcess) -> None:
    url = f"{server.http}/rooms/chat:s/events"
    async with httpx.AsyncClient(timeout=5) as http:
        missing = await http.get(url)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"  # RFC 6750: no error code
        invalid = await http.get(url, params={"token": "garbage"})
        assert invalid.status_code == 401
        assert 'error="invalid_token"' in invalid.headers["www-authenticate"]
        expired = await http.get(url, params={"token": token(ttl=-10)})
        assert expired.status_code == 401
        assert "token expired" in expired.headers["www-authenticate"]
        outside = await http.get(url, params={"token": token(rooms=["feed:*"])})
        assert outside.status_code == 403
        several = await http.get(
            f"{server.http}/events",
            params={"room": ["feed:a", "chat:s"], "token": token(rooms=["feed:*"])},
        )
        assert several.status_code == 403
    bearer = {"Authorization": f"Bearer {token(rooms=['chat:*'])}"}
    async with open_stream(url, headers=bearer) as stream:
        assert (await stream.next()).event == "subscribed"
    async with open_stream(f"{server.http}/rooms/feed:s/events") as stream:  # public
        assert (await stream.next()).event == "subscribed"


async def test_rest_publish_needs_an_api_key_or_a_token_that_allows_it(
    server: ServerProcess,
) -> None:
    url = "/rooms/chat:rest/messages"
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        assert (await http.post(url, json={"data": 1})).status_code == 401
        wrong = await http.post(url, json={"data": 1}, headers={"X-API-Key": "guess"})
        assert wrong.status_code == 401
        wrong = await http.post(url, json={"data": 1}, headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401
        readonly = {"Authorization": f"Bearer {token(rooms=['chat:*'])}"}
        assert (await http.post(url, json={"data": 1}, headers=readonly)).status_code == 403
        writer = {"Authorization": f"Bearer {token(name='Alice A', publish=['chat:*'])}"}
        assert (await http.post(url, json={"data": 1}, headers=writer)).status_code == 201
        backend = {"Authorization": f"Bearer {API_KEY}"}
        assert (await http.post(url, json={"data": 2}, headers=backend)).status_code == 201
        # Room administration is for API keys only.
        room = {"name": "chat:admin"}
        assert (await http.post("/rooms", json=room, headers=writer)).status_code == 403
        assert (await http.post("/rooms", json=room)).status_code == 401
        assert (await http.post("/rooms", json=room, headers=backend)).status_code == 201
        assert (await http.get(url)).status_code == 401  # history of a private room
        events = (await http.get(url, headers=readonly)).json()["events"]
        # A token publishes as its user; an API key as "api".
        assert [(e["data"], e["sender"]) for e in events] == [(1, "Alice A"), (2, "api")]


# -- token expiry and refresh ------------------------------------------------------------


async def test_refresh_keeps_a_connection_alive_across_its_first_tokens_expiry(
    server: ServerProcess,
) -> None:
    # 5 s: a loaded CI machine must still connect, subscribe and refresh before expiry
    client, reply = await connect(server, token("jack", ttl=5, rooms=["chat:*"]))
    first_expiry = reply["result"]["expires"]
    assert (await client.request("subscribe", room="chat:refresh"))["ok"]
    refreshed = await client.request("refresh", token=token("jack", ttl=60, rooms=["chat:*"]))
    assert refreshed["result"]["expires"] > first_expiry + 30
    assert refreshed["result"]["revoked"] == []
    await asyncio.sleep(max(0.0, first_expiry - time.time()) + 1.5)
    publisher, _ = await connect(server, token("kate", publish=["chat:*"]))
    await publisher.request("publish", room="chat:refresh", data="after expiry")
    assert (await client.event())["data"] == "after expiry"
    for c in (client, publisher):
        await c.close()


async def test_without_refresh_the_connection_closes_3003_at_expiry(server: ServerProcess) -> None:
    client, reply = await connect(server, token("liam", ttl=4, rooms=["chat:*"]))
    started = time.time()
    assert await client.closed(timeout=15) == 3003
    assert time.time() >= reply["result"]["expires"] - 0.1
    assert time.time() - started < 8  # at expiry (within 4 s), not at some later sweep


async def test_a_refresh_for_another_user_or_an_invalid_token_is_refused(
    server: ServerProcess,
) -> None:
    client, _ = await connect(server, token("mia", rooms=["chat:*"]))
    other = await client.request("refresh", token=token("noah"))
    assert other["error"]["code"] == "forbidden"
    bad = await client.request("refresh", token="garbage")
    assert bad["error"]["code"] == "unauthorized"
    expired = await client.request("refresh", token=token("mia", ttl=-5))
    assert expired["error"]["code"] == "token_expired"
    assert (await client.request("ping"))["ok"]  # still connected
    await client.close()


async def test_a_refresh_with_fewer_rooms_unsubscribes_the_rest(server: ServerProcess) -> None:
    client, _ = await connect(server, token("olga", rooms=["chat:*"]))
    for room in ("chat:keep", "chat:drop"):
        assert (await client.request("subscribe", room=room))["ok"]
    reply = await client.request("refresh", token=token("olga", rooms=["chat:keep"]))
    assert reply["result"]["revoked"] == ["chat:drop"]
    assert (await client.request("unsubscribe", room="chat:drop"))["error"]["code"] == (
        "not_subscribed"
    )
    await client.close()


async def test_an_sse_stream_ends_with_a_close_event_at_token_expiry(
    server: ServerProcess,
) -> None:
    tok = token("pia", ttl=4, rooms=["chat:*"])  # still valid when a loaded machine opens it
    async with open_stream(f"{server.http}/rooms/chat:sse-exp/events", token=tok) as stream:
        closing = await stream.until("close", timeout=15)
    assert closing.data["code"] == 3003


# -- limits under a flood --------------------------------------------------------------------


async def test_a_flooding_client_is_limited_while_another_in_the_room_gets_everything(
    server_factory: ServerFactory,
) -> None:
    limited = server_factory(
        **{**JWT, "publish_rate": 50, "publish_burst": 20, "max_rate_breaches": 100}
    )
    room = "chat:flood"
    everyone = {"rooms": ["chat:*"], "publish": ["chat:*"]}
    listener, _ = await connect(limited, token("quinn", **everyone))
    assert (await listener.request("subscribe", room=room))["ok"]
    flooder, _ = await connect(limited, token("rex", **everyone))
    friend, _ = await connect(limited, token("sam", **everyone))

    # The flood: 2,000 publishes as fast as the socket takes them, without waiting.
    for n in range(2000):
        await flooder.send({"op": "publish", "id": n + 1, "room": room, "data": {"f": n}})
    # Meanwhile another member of the room publishes at a polite pace.
    friend_offsets = []
    for n in range(20):
        reply = await friend.request("publish", room=room, data={"friend": n})
        assert reply["ok"], reply
        friend_offsets.append(reply["result"]["offset"])
        await asyncio.sleep(0.02)

    acked, limited_replies = [], 0
    code = None
    try:
        while True:
            frame = await flooder.recv(timeout=10)
            if frame.get("ok"):
                acked.append(frame["result"]["offset"])
            elif frame.get("error", {}).get("code") == "rate_limited":
                limited_replies += 1
    except Exception:  # the server closed the flooder
        code = flooder.conn.close_code
    assert code == 3004
    assert limited_replies > 0
    assert 20 <= len(acked) < 2000

    # The listener got every accepted message, in order, once: the flooder's and the friend's.
    expected = sorted(acked + friend_offsets)
    got = [event["offset"] for event in await listener.messages(len(expected))]
    assert got == expected == list(range(1, len(expected) + 1))
    for client in (listener, friend):
        await client.close()


async def test_connections_beyond_the_per_user_limit_close_3004_and_others_are_unaffected(
    server: ServerProcess,
) -> None:
    tok = token("tess", rooms=["chat:*"])
    kept = [(await connect(server, tok))[0] for _ in range(3)]
    extra = await Client.open(server.ws)
    await extra.send({"op": "connect", "id": 1, "token": tok})
    assert await extra.closed() == 3004
    other, reply = await connect(server, token("uma"))
    assert reply["ok"]
    await kept[0].close()
    await asyncio.sleep(0.2)
    again, reply = await connect(server, tok)  # a place is free again
    assert reply["ok"]
    for client in (*kept[1:], other, again):
        await client.close()


async def test_connections_beyond_the_per_address_limit_close_3004(
    server_factory: ServerFactory,
) -> None:
    limited = server_factory(max_connections_per_ip=2)
    kept = [await Client.open(limited.ws) for _ in range(2)]
    extra = await Client.open(limited.ws)
    assert await extra.closed() == 3004
    async with httpx.AsyncClient(timeout=5) as http:  # SSE counts too
        refused = await http.get(f"{limited.http}/rooms/r/events")
        assert refused.status_code == 429
        assert refused.headers["retry-after"].isdigit()
    await kept[0].close()
    await asyncio.sleep(0.2)
    assert (await (await Client.open(limited.ws)).request("ping"))["ok"]


async def test_a_refused_stream_is_told_to_retry_after_the_retry_after_setting(
    server_factory: ServerFactory,
) -> None:
    limited = server_factory(max_connections_per_ip=1, retry_after=17)
    kept = await Client.open(limited.ws)
    async with httpx.AsyncClient(timeout=5) as http:
        refused = await http.get(f"{limited.http}/rooms/r/events")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "17"
    await kept.close()


def test_roomcast_token_prints_a_token_the_server_accepts(
    server: ServerProcess, tmp_path: Path
) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "roomcast",
            "token",
            "--sub",
            "vic",
            "--rooms",
            "chat:*",
            "--ttl",
            "1h",
        ],
        env={"ROOMCAST_JWT_SECRET": SECRET, "ROOMCAST_JWT_AUDIENCE": "roomcast", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()

    async def use() -> dict[str, Any]:
        client, reply = await connect(server, out)
        await client.close()
        return reply

    reply = asyncio.run(use())
    assert reply["result"]["user_id"] == "vic"
    assert 3500 < reply["result"]["expires"] - time.time() <= 3600


def test_the_zero_setup_default_warns_loudly_that_anyone_may_do_anything(
    server_factory: ServerFactory,
) -> None:
    open_server = server_factory()
    open_server.stop()
    assert "ROOMCAST_AUTH=off: anyone who can reach this server" in open_server.log()
    strict = server_factory(**JWT)
    strict.stop()
    assert "ROOMCAST_AUTH=off" not in strict.log()
