"""connect() / ProtocolClient against a host app served by LiveServer, over /rt/ws."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from roomcast import Settings
from roomcast.testing import LiveServer, ReplyError, connect

from .conftest import Host, host_app

pytestmark = pytest.mark.timeout(30)

SECRET = "s" * 32


async def test_two_clients_see_each_others_messages(server: LiveServer) -> None:
    url = server.ws_url("/rt/ws")
    async with connect(url, name="ann") as ann, connect(url, name="bob") as bob:
        await ann.subscribe("chat:lobby")
        await bob.subscribe("chat:lobby")
        sent = await bob.publish("chat:lobby", {"text": "hi ann"})
        got = await ann.next_event("message", room="chat:lobby")
        assert got["data"] == {"text": "hi ann"}
        assert got["sender"] == "bob"
        assert (got["epoch"], got["offset"]) == (sent["epoch"], sent["offset"])
        await ann.publish("chat:lobby", {"text": "hi bob"})
        assert (await bob.next_event("message"))["data"] == {"text": "hi ann"}
        assert (await bob.next_event("message"))["data"] == {"text": "hi bob"}


async def test_the_connect_frame_is_sent_with_a_name_and_its_result_kept(
    server: LiveServer,
) -> None:
    async with connect(server.ws_url("/rt/ws"), name="ann") as ann:
        assert ann.session is not None
        assert ann.session["user"] == "ann"
        assert ann.session["user_id"].startswith("anon-")
    async with connect(server.ws_url("/rt/ws")) as anonymous:
        assert anonymous.session is None  # no connect frame sent


async def test_presence_lists_every_subscribed_connection(server: LiveServer) -> None:
    url = server.ws_url("/rt/ws")
    async with connect(url, name="ann") as ann, connect(url, name="bob") as bob:
        await ann.subscribe("chat:p")
        await bob.subscribe("chat:p")
        joined = [await ann.next_event("join", room="chat:p") for _ in range(2)]
        assert [e["user"] for e in joined] == ["ann", "bob"]
        members = await ann.presence("chat:p")
        assert sorted(m["user"] for m in members) == ["ann", "bob"]


async def test_history_pages_backwards_through_the_room(server: LiveServer) -> None:
    async with connect(server.ws_url("/rt/ws")) as client:
        for n in range(5):
            await client.publish("chat:h", n)
        page = await client.history("chat:h", limit=2)
        assert [e["data"] for e in page["events"]] == [3, 4]
        assert page["more"] is True
        older = await client.history("chat:h", limit=10, before=page["events"][0]["offset"])
        assert [e["data"] for e in older["events"]] == [0, 1, 2]
        assert older["more"] is False


async def test_subscribe_since_an_event_replays_what_came_after_it(server: LiveServer) -> None:
    async with connect(server.ws_url("/rt/ws")) as client:
        first = await client.publish("chat:r", "one")
        await client.publish("chat:r", "two")
        await client.publish("chat:r", "three")
        result = await client.subscribe("chat:r", since=first)
        assert result["recovered"] is True
        assert result["replayed"] == 2
        assert (await client.next_event("message"))["data"] == "two"
        assert (await client.next_event("message"))["data"] == "three"


async def test_events_that_arrive_while_a_reply_is_awaited_are_kept_in_order(
    server: LiveServer,
) -> None:
    async with connect(server.ws_url("/rt/ws"), name="ann") as ann:
        await ann.subscribe("chat:o")
        for n in range(3):
            await ann.publish("chat:o", n)
        await ann.request("ping")  # the last event may follow its reply: not this one's
        assert [(e["type"], e.get("data")) for e in ann.events] == [
            ("join", None),
            ("message", 0),
            ("message", 1),
            ("message", 2),
        ]


async def test_next_event_takes_the_first_match_and_keeps_the_others(server: LiveServer) -> None:
    async with connect(server.ws_url("/rt/ws"), name="ann") as ann:
        await ann.subscribe("chat:a")
        await ann.subscribe("chat:b")
        await ann.publish("chat:a", "a1")
        await ann.publish("chat:b", "b1")
        await ann.publish("chat:a", "a2")
        assert (await ann.next_event("message", room="chat:b"))["data"] == "b1"
        assert (await ann.next_event("message"))["data"] == "a1"
        assert (await ann.next_event())["type"] == "join"  # not dropped on the way
        assert (await ann.next_event())["type"] == "join"
        assert (await ann.next_event())["data"] == "a2"
        assert ann.events == []


async def test_a_wait_that_times_out_says_what_it_waited_for(server: LiveServer) -> None:
    async with connect(server.ws_url("/rt/ws")) as client:
        await client.subscribe("chat:quiet")
        with pytest.raises(TimeoutError, match=r"no 'message' event in 'chat:quiet' within 0\.2 s"):
            await client.next_event("message", room="chat:quiet", timeout=0.2)
        await client.publish("chat:quiet", "late")  # the client still works
        assert (await client.next_event("message"))["data"] == "late"


async def test_an_invalid_room_name_raises_reply_error_room_invalid(server: LiveServer) -> None:
    async with connect(server.ws_url("/rt/ws")) as client:
        with pytest.raises(ReplyError) as caught:
            await client.subscribe("bad room")
        assert caught.value.code == "room_invalid"
        assert "letters, digits" in caught.value.message
        assert caught.value.reply["ok"] is False
        with pytest.raises(ReplyError, match="not_subscribed"):
            await client.unsubscribe("chat:never")


async def test_request_returns_the_raw_reply_error_or_not(server: LiveServer) -> None:
    async with connect(server.ws_url("/rt/ws")) as client:
        reply = await client.request("nope")
        assert reply["ok"] is False
        assert reply["error"]["code"] == "unknown_op"
        pong = await client.request("ping")
        assert pong["ok"] is True
        assert isinstance(pong["result"]["ts"], float)


async def test_a_frame_sent_by_hand_gets_its_reply_from_next_reply(server: LiveServer) -> None:
    async with connect(server.ws_url("/rt/ws")) as client:
        await client.send("not json")
        reply = await client.next_reply()
        assert reply["id"] is None
        assert reply["error"]["code"] == "bad_request"


async def test_concurrent_requests_on_one_client_each_get_their_reply(
    server: LiveServer,
) -> None:
    async with connect(server.ws_url("/rt/ws")) as client:
        results = await asyncio.gather(*(client.publish("chat:c", n) for n in range(10)))
        assert sorted(r["offset"] for r in results) == list(range(1, 11))


async def test_a_client_may_be_awaited_instead_of_entered(server: LiveServer) -> None:
    client = await connect(server.ws_url("/rt/ws"), name="ann")
    try:
        assert (await client.subscribe("chat:w"))["room"] == "chat:w"
    finally:
        await client.close()


async def test_closed_returns_3000_when_roomcast_drains(host: Host, server: LiveServer) -> None:
    async with connect(server.ws_url("/rt/ws")) as client:
        await client.subscribe("chat:d")
        await server.acall(host.rc.drain())
        assert await client.closed() == 3000
        assert client.close_reason == "server shutdown"


async def test_closed_returns_3000_when_the_live_server_stops(host: Host) -> None:
    """uvicorn's shutdown lets roomcast drain its WebSockets (docs/shutdown.md)."""
    server = LiveServer(host.app)
    async with server, connect(server.ws_url("/rt/ws")) as client:
        await client.subscribe("chat:s")
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        assert await client.closed() == 3000
        await stopping


async def test_with_uvicorns_own_websocket_protocol_stopping_closes_with_1012(
    host: Host,
) -> None:
    server = LiveServer(host.app, ws="websockets-sansio")
    async with server, connect(server.ws_url("/rt/ws")) as client:
        await client.subscribe("chat:s")
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        assert await client.closed() == 1012
        await stopping


async def test_the_host_publishes_on_the_servers_loop_with_acall(
    host: Host, server: LiveServer
) -> None:
    async with connect(server.ws_url("/rt/ws")) as client:
        await client.subscribe("chat:news")
        published = await server.acall(host.rc.publish("chat:news", {"headline": "hi"}))
        event = await client.next_event("message", room="chat:news")
        assert event["data"] == {"headline": "hi"}
        assert event["offset"] == published.offset


async def test_closed_times_out_while_the_server_keeps_the_connection(
    server: LiveServer,
) -> None:
    async with connect(server.ws_url("/rt/ws")) as client:
        with pytest.raises(
            TimeoutError, match=r"the server did not close the connection within 0\.2 s"
        ):
            await client.closed(timeout=0.2)


async def test_a_handshake_refused_with_a_status_raises_invalid_status(
    server: LiveServer,
) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(server.ws_url("/rt/ws"), origin="https://elsewhere.example")
    assert caught.value.response.status_code == 403


async def test_a_refused_token_closes_the_connection_before_any_reply() -> None:
    settings = Settings(auth="jwt", jwt_secret=SECRET)
    async with LiveServer(host_app(settings).app) as server:
        with pytest.raises(ConnectionClosed) as caught:
            await connect(server.ws_url("/rt/ws"), token="not-a-token")
        assert caught.value.rcvd is not None
        assert caught.value.rcvd.code == 3500


async def test_a_room_the_token_may_not_read_raises_reply_error_forbidden() -> None:
    from roomcast.auth.tokens import issue_token

    settings = Settings(auth="jwt", jwt_secret=SECRET)
    token = issue_token(SECRET, "ann", ttl=60, rooms=["chat:*"], publish=["chat:*"])
    async with (
        LiveServer(host_app(settings).app) as server,
        connect(server.ws_url("/rt/ws"), token=token) as ann,
    ):
        assert ann.session is not None
        assert ann.session["user_id"] == "ann"
        await ann.subscribe("chat:ok")
        with pytest.raises(ReplyError) as caught:
            await ann.subscribe("dm:bob")
        assert caught.value.code == "forbidden"
