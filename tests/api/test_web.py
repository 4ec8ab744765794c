"""The browser pages and roomcast.js as the server sends them (in process)."""

from __future__ import annotations

import fnmatch
import logging
import re
import tomllib
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from roomcast.api.web import default_web_dir
from roomcast.app import Roomcast, create_app
from roomcast.settings import Settings

pytestmark = pytest.mark.timeout(20)

ROOT = Path(__file__).resolve().parents[2]


def client(settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize(
    ("path", "media_type", "marker"),
    [
        ("/", "text/html", 'href="chat"'),
        ("/chat", "text/html", 'data-testid="messages"'),
        ("/dashboard", "text/html", 'data-testid="feeds"'),
        ("/roomcast.js", "text/javascript", "export class Roomcast"),
        ("/web/chat.js", "text/javascript", 'from "../roomcast.js"'),
        ("/web/dashboard.js", "text/javascript", "FeedStream"),
        ("/web/style.css", "text/css", ":root"),
    ],
)
async def test_pages_and_scripts_are_served_with_their_types(
    path: str, media_type: str, marker: str
) -> None:
    async with client(Settings()) as http:
        reply = await http.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith(media_type)
    assert marker in reply.text
    assert reply.headers["x-content-type-options"] == "nosniff"
    if media_type == "text/html":
        policy = reply.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "connect-src 'self'" in policy
        assert "unsafe-inline" not in policy


def mounted(prefix: str) -> httpx.AsyncClient:
    """A host app that includes roomcast's router under ``prefix`` (docs/client.md)."""
    app = FastAPI()
    app.include_router(Roomcast(Settings()).router, prefix=prefix)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize(
    ("path", "marker"),
    [
        ("/rt/", 'href="chat"'),
        ("/rt/chat", 'src="web/chat.js"'),
        ("/rt/dashboard", 'src="web/dashboard.js"'),
        ("/rt/roomcast.js", "export class Roomcast"),
        ("/rt/web/chat.js", 'from "../roomcast.js"'),
        ("/rt/web/style.css", ":root"),
    ],
)
async def test_under_a_prefix_every_page_and_file_is_served_below_it(
    path: str, marker: str
) -> None:
    async with mounted("/rt") as http:
        reply = await http.get(path)
    assert reply.status_code == 200
    assert marker in reply.text


async def test_the_prefix_without_its_slash_redirects_to_the_index() -> None:
    """Without the slash, the pages' relative links would resolve above the prefix."""
    async with mounted("/rt") as http:
        reply = await http.get("/rt")
        assert reply.status_code == 307
        assert reply.headers["location"] == "http://test/rt/"
        assert (await http.get("/rt", follow_redirects=True)).url.path == "/rt/"


ABSOLUTE = re.compile(r"""(?:href|src)="/(?!docs")|from\s+"/|["'`}]/(?:ws|events|web/)""")


def test_pages_and_scripts_refer_to_the_server_only_relatively() -> None:
    """So they work under any prefix: links, styles and imports are relative, and
    roomcast.js finds /ws and /events next to itself (only the host's /docs is
    absolute)."""
    web = ROOT / "server" / "roomcast" / "web"
    found = {
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(web.glob("*.htm*")) + sorted(web.glob("*.js"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if ABSOLUTE.search(line) and not line.lstrip().startswith(("//", "*", "/*"))
    }
    assert found == set()


@pytest.mark.parametrize(
    "path", ["/web/../pyproject.toml", "/web/chat.html", "/web/.hidden.js", "/web/nope.js"]
)
async def test_only_the_files_of_web_are_sent(path: str) -> None:
    async with client(Settings()) as http:
        assert (await http.get(path)).status_code == 404


async def test_web_false_leaves_the_pages_out() -> None:
    async with client(Settings(web=False)) as http:
        for path in ("/", "/chat", "/dashboard", "/roomcast.js"):
            assert (await http.get(path)).status_code == 404
        assert (await http.get("/healthz")).status_code == 200


async def test_web_dir_names_the_folder_the_files_come_from(tmp_path: Path) -> None:
    (tmp_path / "roomcast.js").write_text("export const mine = 1;\n")
    (tmp_path / "chat.html").write_text("<p>my chat</p>\n")
    async with client(Settings(web_dir=tmp_path)) as http:
        assert (await http.get("/roomcast.js")).text == "export const mine = 1;\n"
        assert (await http.get("/chat")).text == "<p>my chat</p>\n"
        assert (await http.get("/dashboard")).status_code == 404


async def test_a_folder_without_the_client_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="roomcast.web"):
        async with client(Settings(web_dir=tmp_path / "missing")) as http:
            assert (await http.get("/chat")).status_code == 404
    assert "ROOMCAST_WEB_DIR" in caplog.text


def test_the_checkout_serves_its_own_web_folder() -> None:
    assert default_web_dir() == ROOT / "server" / "roomcast" / "web"


def test_every_file_of_web_is_installed_with_the_package() -> None:
    """``pip install .`` copies roomcast/web through pyproject's package-data: a new
    kind of file there must be listed, or an installed server would not have it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["roomcast"]
    package = ROOT / "server" / "roomcast"
    files = sorted(p.relative_to(package).as_posix() for p in (package / "web").iterdir())
    assert files
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []
