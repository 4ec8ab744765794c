"""The browser pages and roomcast.js as the server sends them (in process)."""

from __future__ import annotations

import fnmatch
import logging
import tomllib
from pathlib import Path

import httpx
import pytest

from roomcast.api.web import default_web_dir
from roomcast.app import create_app
from roomcast.settings import Settings

pytestmark = pytest.mark.timeout(20)

ROOT = Path(__file__).resolve().parents[2]


def client(settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize(
    ("path", "media_type", "marker"),
    [
        ("/", "text/html", 'href="/chat"'),
        ("/chat", "text/html", 'data-testid="messages"'),
        ("/dashboard", "text/html", 'data-testid="feeds"'),
        ("/roomcast.js", "text/javascript", "export class Roomcast"),
        ("/web/chat.js", "text/javascript", 'from "/roomcast.js"'),
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
    assert default_web_dir() == ROOT / "web"


def test_every_file_of_web_is_installed_with_the_package() -> None:
    """``pip install .`` copies web/ through pyproject's data-files: a new kind of
    file there must be listed, or an installed server would not have it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["data-files"]["share/roomcast/web"]
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "web").iterdir())
    assert files
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []
