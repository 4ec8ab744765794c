"""Which web pages may open connections: the Origin check against
cross-site WebSocket hijacking.

A browser sends ``Origin`` with every WebSocket handshake (and with
cross-origin EventSource requests); a page on another site could otherwise
open a socket that carries the victim's cookies. Allowed: requests with no
Origin (non-browser clients), the server's own origin, the configured
origins, or any origin with ``*``.

An origin is (scheme, host, port) (RFC 6454), the port being the scheme's
default (80 for http, 443 for https) when none is written: ``http://127.0.0.1``
is not the origin of a server on port 47829, nor ``http://chat.example`` that
of ``https://chat.example``. The server's own origin is the request's scheme
(``http``/``ws`` or ``https``/``wss``: the connection's, or ``X-Forwarded-Proto``
from a trusted proxy, as the ASGI server puts it in the scope) with the
``Host`` header, whose port, when it has none, is the scheme's default too. So
a proxy in front of a non-default port must pass the client's ``Host`` as it
came (nginx: ``proxy_set_header Host $http_host``, not ``$host``, which drops
the port), or the public origin must be in ``allowed_origins``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["OriginPolicy"]

DEFAULT_PORTS = {"http": 80, "https": 443}
WEB_SCHEMES = {"http": "http", "ws": "http", "https": "https", "wss": "https"}
"""A request's scope scheme as the scheme of a page of the same origin."""

Origin = tuple[str, str, int]


def _host_port(netloc: str) -> tuple[str, int | None] | None:
    """``host[:port]`` as (lower-case host, port or None); None if malformed."""
    if not netloc or any(c in netloc for c in "/?#@\\ "):
        return None
    try:
        parts = urlsplit(f"//{netloc}")
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port that is not a number of 0-65535
        return None
    return (host, port) if host else None


def parse_origin(value: str) -> Origin | None:
    """An ``Origin`` header (or a configured origin) as (scheme, host, port), with
    the scheme's default port filled in; None for ``null``, a scheme other than
    http and https, or anything that is not ``scheme://host[:port]``."""
    scheme, sep, rest = value.strip().lower().rstrip("/").partition("://")
    if not sep or scheme not in DEFAULT_PORTS:
        return None
    address = _host_port(rest)
    if address is None:
        return None
    host, port = address
    return scheme, host, DEFAULT_PORTS[scheme] if port is None else port


def server_origin(scheme: str, host: str | None) -> Origin | None:
    """The origin of a server reached with ``scheme`` (the scope's: http, https, ws
    or wss) and this ``Host`` header; None without a usable Host."""
    web = WEB_SCHEMES.get(scheme.lower())
    address = _host_port(host.strip()) if host and web else None
    if address is None or web is None:
        return None
    name, port = address
    return web, name, DEFAULT_PORTS[web] if port is None else port


class OriginPolicy:
    def __init__(self, allowed: list[str]) -> None:
        self.any = "*" in allowed
        self.allowed = frozenset(origin.rstrip("/").lower() for origin in allowed)
        self.allowed_origins = frozenset(
            parsed for parsed in map(parse_origin, allowed) if parsed is not None
        )

    def allows(self, origin: str | None, host: str | None, *, scheme: str) -> bool:
        """Whether a request with these ``Origin`` and ``Host`` headers, made with
        the scope's ``scheme`` (``request.url.scheme``), may connect."""
        if origin is None or self.any:
            return True
        if origin.strip().rstrip("/").lower() in self.allowed:
            return True
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        return parsed in self.allowed_origins or parsed == server_origin(scheme, host)
