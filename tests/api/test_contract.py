"""/asyncapi.json and /asyncapi as the server sends them (in process): the
document for the host and prefix asked on, and the page rendered from it.
The official parser's verdict is tests/protocol/test_asyncapi.py's; the page in
a real browser is test_web_prefix.py's."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from fastapi import FastAPI

from roomcast.app import Roomcast, create_app
from roomcast.protocol.codes import CloseCode, ErrorCode
from roomcast.protocol.frames import MODELS
from roomcast.protocol.replies import EVENTS
from roomcast.settings import Settings

pytestmark = pytest.mark.timeout(20)


def standalone() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(Settings()))
    return httpx.AsyncClient(transport=transport, base_url="http://test.example:8123")


def mounted(prefix: str) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(Roomcast(Settings()).router, prefix=prefix)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="https://host.example")


async def test_the_document_names_the_host_it_was_asked_on() -> None:
    async with standalone() as http:
        reply = await http.get("/asyncapi.json")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    doc = reply.json()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["servers"]["websocket"] == {
        "host": "test.example:8123",
        "protocol": "ws",
        "security": doc["servers"]["http"]["security"],
    }
    assert doc["servers"]["http"]["protocol"] == "http"
    assert doc["channels"]["websocket"]["address"] == "/ws"


async def test_under_a_prefix_the_servers_carry_it_and_tls_picks_wss() -> None:
    async with mounted("/rt") as http:
        doc = (await http.get("/rt/asyncapi.json")).json()
        missing = await http.get("/asyncapi.json")
    assert missing.status_code == 404
    assert doc["servers"]["websocket"]["pathname"] == "/rt"
    assert doc["servers"]["websocket"]["protocol"] == "wss"
    assert doc["servers"]["http"]["protocol"] == "https"


async def test_the_document_describes_every_op_event_and_code() -> None:
    async with standalone() as http:
        doc = (await http.get("/asyncapi.json")).json()
    messages = doc["components"]["messages"]
    for op in MODELS:
        assert op in messages
        assert f"{op}Reply" in messages
        reply = doc["operations"][f"receive{op.capitalize()}"]["reply"]["messages"]
        assert {r["$ref"].rsplit("/", 1)[1] for r in reply} == {f"{op}Reply", "errorReply"}
    for kind in EVENTS:
        assert f"{kind}Event" in messages
    schemas = doc["components"]["schemas"]
    assert [c["const"] for c in schemas["ErrorCode"]["oneOf"]] == [c.value for c in ErrorCode]
    assert [c["const"] for c in schemas["CloseCode"]["oneOf"]] == [int(c) for c in CloseCode]
    # A frame the contract does not describe is refused: server frames forbid extra fields.
    assert schemas["MessageEvent"]["additionalProperties"] is False


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
        for name in ("src", "srcset", "data"):
            if values.get(name):
                self.sources.append(str(values[name]))


async def page_of(http: httpx.AsyncClient, path: str) -> tuple[httpx.Response, _Page]:
    reply = await http.get(path)
    parsed = _Page()
    parsed.feed(reply.text)
    return reply, parsed


async def test_the_page_shows_the_document_with_no_script_and_nothing_from_elsewhere() -> None:
    async with standalone() as http:
        reply, page = await page_of(http, "/asyncapi")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    policy = reply.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script" not in policy
    assert "script" not in page.tags
    assert "link" not in page.tags
    assert page.sources == []
    assert not [href for href in page.links if re.match(r"[a-z]+:", href)]
    for href in page.links:  # every in-page link lands on something
        if href.startswith("#"):
            assert href[1:] in page.ids, href
    text = reply.text
    for op in MODELS:
        assert f'id="message-{op}"' in text
        assert f'id="message-{op}Reply"' in text
    for kind in EVENTS:
        assert f'id="message-{kind}Event"' in text
    for code in ErrorCode:
        assert f"<code>{code.value}</code>" in text
    for close in CloseCode:
        assert f"<td>{int(close)}</td><td>{close.name}</td>" in text
    assert "ws://test.example:8123/ws" in text
    assert "asyncapi.json" in page.links
    assert "/docs" in page.links


async def test_the_page_under_a_prefix_links_its_own_document() -> None:
    async with mounted("/rt") as http:
        reply, page = await page_of(http, "/rt/asyncapi")
        document = await http.get("/rt/" + "asyncapi.json")
    assert reply.status_code == 200
    assert document.status_code == 200
    assert "asyncapi.json" in page.links  # relative: /rt/asyncapi.json
    assert "wss://host.example/rt/ws" in reply.text
