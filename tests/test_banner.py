"""What `roomcast serve` prints once it listens, and where local clients look for it.
(tests/test_readme.py sees the block in a real server's output.)"""

from __future__ import annotations

import logging

import pytest

from roomcast.api import admin
from roomcast.auth.authority import Authority
from roomcast.banner import _Announce, admin_served, local_url, page_urls, server_url
from roomcast.settings import Settings


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("", "http://127.0.0.1:8000"),
        ("::", "http://[::1]:8000"),
        ("::1", "http://[::1]:8000"),
        ("rooms.internal", "http://rooms.internal:8000"),
    ],
)
def test_a_local_client_reaches_a_bind_all_address_on_loopback(host: str, url: str) -> None:
    assert local_url(host, 8000) == url


def test_the_server_url_follows_roomcast_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROOMCAST_HOST", raising=False)
    monkeypatch.setenv("ROOMCAST_PORT", "8123")
    assert server_url() == "http://127.0.0.1:8123"
    monkeypatch.setenv("ROOMCAST_HOST", "0.0.0.0")
    assert server_url() == "http://127.0.0.1:8123"
    assert server_url(Settings(host="10.1.2.3", port=9)) == "http://10.1.2.3:9"


def test_the_pages_listed_are_the_ones_served() -> None:
    base = "http://127.0.0.1:8000"
    listed = dict(page_urls(Settings(), base))
    assert listed["chat"] == f"{base}/chat"
    assert listed["dashboard"] == f"{base}/dashboard"
    assert listed["REST API"] == f"{base}/docs"
    assert listed["protocol"] == f"{base}/asyncapi"
    assert "admin" in listed
    without_web = dict(page_urls(Settings(web=False), base))
    assert "chat" not in without_web
    assert "dashboard" not in without_web
    assert "admin" not in without_web  # its API stays; the page is one of the web files
    assert "REST API" in without_web


def test_the_admin_page_is_listed_where_it_is_served() -> None:
    secret = "x" * 32
    cases = [
        Settings(host="127.0.0.1"),
        Settings(host="0.0.0.0"),  # auth off, not loopback: no admin page
        Settings(host="localhost"),
        Settings(admin=False),
        Settings(host="0.0.0.0", auth="jwt", jwt_secret=secret),
    ]
    listed = [admin_served(settings) for settings in cases]
    assert listed == [True, False, True, False, True]
    assert listed == [admin.available(s, Authority(s)) for s in cases]  # what is routed


def running_record(host: str, port: int) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1,
        "Uvicorn running on %s://%s:%d (Press CTRL+C to quit)", ("http", host, port), None,
    )  # fmt: skip


def test_the_block_is_logged_once_with_the_port_actually_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    announce = _Announce(Settings(host="0.0.0.0", port=0))
    with caplog.at_level(logging.INFO, logger="roomcast.serve"):
        assert announce.filter(running_record("0.0.0.0", 43210))
        assert announce.filter(running_record("0.0.0.0", 43210))
    blocks = [r.getMessage() for r in caplog.records if r.name == "roomcast.serve"]
    assert len(blocks) == 1
    lines = blocks[0].splitlines()
    assert lines[0].startswith("roomcast is serving http://127.0.0.1:43210 (bound to 0.0.0.0")
    assert "  chat:      http://127.0.0.1:43210/chat" in lines
    assert not any("admin" in line for line in lines)
