"""Where a local client finds the server, and the page URLs ``roomcast serve`` prints.

:func:`local_url` turns the address the server binds (``ROOMCAST_HOST``,
``ROOMCAST_PORT``) into the base URL a client on the same machine uses: the default
of ``roomcast demo-feed`` and ``roomcast bench``, so every command follows the same
setting. :func:`announce_pages` makes ``roomcast serve`` log one short block of
page URLs once it listens: once per server (the process that binds the socket, the
supervisor of several workers), just before uvicorn's own "running on" line, from
which it takes the port actually bound.
"""

from __future__ import annotations

import logging

from .settings import Settings

__all__ = ["admin_served", "announce_pages", "local_url", "page_urls", "server_url"]

log = logging.getLogger("roomcast.serve")

WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}
"""Bind-all addresses, and the loopback address a local client reaches them on."""


def local_url(host: str, port: int, scheme: str = "http") -> str:
    """``http://host:port`` for a client on this machine (a bind-all address becomes
    loopback; an IPv6 address gets brackets)."""
    host = WILDCARDS.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def server_url(settings: Settings | None = None) -> str:
    """The base URL of the server ``settings`` (default: ``ROOMCAST_*``) describe, for a
    client on this machine."""
    settings = settings or Settings()
    return local_url(settings.host, settings.port)


def page_urls(settings: Settings, base: str) -> list[tuple[str, str]]:
    """(what, URL) of each page the standalone server (app.create_app) serves."""
    pages: list[tuple[str, str]] = []
    if settings.web:
        pages += [("chat", "/chat"), ("dashboard", "/dashboard")]
    pages += [("REST API", "/docs"), ("protocol", "/asyncapi")]
    if settings.web and admin_served(settings):  # the page; without web only its API
        pages.append(("admin", "/admin"))
    return [(what, base + path) for what, path in pages]


def admin_served(settings: Settings) -> bool:
    """Whether ``roomcast serve`` serves the admin page: api/admin.py's ``available()``
    for a server that authenticates by itself (setting ``admin``; with ``auth=off``
    only on a loopback ``host``)."""
    from .api.admin import is_loopback  # FastAPI: only when serving

    return settings.admin and (settings.auth == "jwt" or is_loopback(settings.host))


class _Announce(logging.Filter):
    """On uvicorn's "Uvicorn running on %s://%s:%d" record, logs the page block (once)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.done = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.done and str(record.msg).startswith("Uvicorn running on "):
            self.done = True
            args = record.args
            if isinstance(args, tuple) and len(args) == 3 and isinstance(args[2], int):
                scheme, host, port = str(args[0]), str(args[1]), args[2]
            else:  # another uvicorn: what the settings say
                scheme, host, port = "http", self.settings.host, self.settings.port
            base = local_url(host, port, scheme)
            pages = page_urls(self.settings, base)
            width = max(len(what) for what, _ in pages) + 1
            lines = [f"roomcast is serving {base}"]
            if host in WILDCARDS:
                lines[0] += f" (bound to {host or 'every address'}: every interface)"
            lines += [f"  {what + ':':<{width}} {url}" for what, url in pages]
            log.info("\n".join(lines))
        return True


def announce_pages(settings: Settings) -> None:
    """Log the page URLs when uvicorn starts listening (call before ``uvicorn.run``;
    uvicorn's logging setup keeps a logger's filters)."""
    logging.getLogger("uvicorn.error").addFilter(_Announce(settings))
