"""The REST API's docs pages (api/docs.py) and what the OpenAPI document says, in
process. tests/e2e/test_docs_page.py renders /docs in Chromium with no network."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi import FastAPI

import roomcast
from roomcast.app import Roomcast, create_app
from roomcast.settings import Settings

pytestmark = pytest.mark.timeout(30)

REFERENCE = re.compile(r"""(?:href|src|url|spec-url)\s*[:=]\s*['"]([^'"]+)['"]""")
KINDS = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


def references(html: str) -> list[str]:
    """The URLs a docs page loads: its stylesheet, scripts, icon and document."""
    return REFERENCE.findall(html)


async def assert_loads_only_from_here(http: httpx.AsyncClient, page: str) -> list[str]:
    """Every URL of ``page`` is relative and answers 200 from this app with its type."""
    reply = await http.get(page)
    assert reply.status_code == 200, page
    found = references(reply.text)
    assert found
    assert "cdn" not in reply.text
    resolved = []
    for ref in found:
        assert not urlsplit(ref).netloc, ref  # relative
        assert not ref.startswith("/"), ref
        url = urljoin(str(reply.url), ref)
        asset = await http.get(url)
        assert asset.status_code == 200, url
        suffix = "." + urlsplit(url).path.rpartition(".")[2]
        assert asset.headers["content-type"].startswith(KINDS[suffix]), url
        resolved.append(urlsplit(url).path)
    return resolved


def client(app: FastAPI, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_docs_and_redoc_load_their_files_from_the_server_by_relative_urls() -> None:
    app = create_app(Settings())
    async with client(app) as http:
        swagger = await assert_loads_only_from_here(http, "/docs")
        redoc = await assert_loads_only_from_here(http, "/redoc")
        assert (await http.get("/docs-assets/core.py")).status_code == 404
        assert (await http.get("/docs-assets/..%2F__init__.py")).status_code == 404
    assert set(swagger) == {
        "/openapi.json",
        "/docs-assets/swagger-ui-bundle.js",
        "/docs-assets/swagger-ui.css",
        "/docs-assets/favicon.png",
    }
    assert set(redoc) == {
        "/openapi.json",
        "/docs-assets/redoc.standalone.js",
        "/docs-assets/favicon.png",
    }


async def test_a_host_app_gets_offline_docs_at_its_own_paths_under_a_root_path() -> None:
    rc = Roomcast(Settings())
    app = FastAPI(docs_url="/api/docs", redoc_url=None)
    roomcast.offline_docs(app)
    app.include_router(rc.router, prefix="/rt")
    async with client(app, root_path="/pre") as http:
        found = await assert_loads_only_from_here(http, "/pre/api/docs")
        assert "/pre/openapi.json" in found
        assert (await http.get("/pre/redoc")).status_code == 404  # the host turned it off
        document = (await http.get("/pre/openapi.json")).json()
    assert "/rt/events" in document["paths"]


async def test_the_sse_routes_are_tagged_and_the_tag_links_the_protocol() -> None:
    document = create_app(Settings()).openapi()
    for path in ("/events", "/rooms/{room}/events"):
        assert document["paths"][path]["get"]["tags"] == ["events (SSE)"]
    untagged = [
        f"{method} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if not operation.get("tags")
    ]
    assert untagged == []
    tags = {tag["name"]: tag["description"] for tag in document["tags"]}
    assert "(asyncapi)" in tags["events (SSE)"]  # a link, relative to /docs
    assert "[asyncapi](asyncapi)" in document["info"]["description"]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"not json"),
        ("application/json", b'{"data": 1'),
        ("text/plain", b"hello"),
        ("application/json", b"[1, 2]"),
    ],
)
async def test_a_publish_whose_body_is_not_a_json_object_is_a_422(
    content_type: str, body: bytes
) -> None:
    app = create_app(Settings())
    async with app.router.lifespan_context(app), client(app) as http:
        reply = await http.post(
            "/rooms/r/messages", content=body, headers={"content-type": content_type}
        )
    assert reply.status_code == 422
    assert isinstance(reply.json()["detail"], list)


async def test_the_only_400_for_a_body_is_json_that_is_not_utf8_as_the_document_says() -> None:
    app = create_app(Settings())
    async with app.router.lifespan_context(app), client(app) as http:
        reply = await http.post(
            "/rooms/r/messages",
            content=b'{"data": "\xff"}',
            headers={"content-type": "application/json"},
        )
    assert reply.status_code == 400
    operation = app.openapi()["paths"]["/rooms/{room}/messages"]["post"]
    assert "UTF-8" in operation["responses"]["400"]["description"]
    assert "not valid JSON" not in operation["responses"]["400"]["description"]
