"""Which web pages may open connections: the Origin check against
cross-site WebSocket hijacking.

A browser sends ``Origin`` with every WebSocket handshake (and with
cross-origin EventSource requests); a page on another site could otherwise
open a socket that carries the victim's cookies. Allowed: requests with no
Origin (non-browser clients), the server's own origin (the Origin's host is
the Host header's), the configured origins, or any origin with ``*``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["OriginPolicy"]


def _host_port(netloc: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(f"//{netloc}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", None


class OriginPolicy:
    def __init__(self, allowed: list[str]) -> None:
        self.any = "*" in allowed
        self.allowed = frozenset(origin.rstrip("/").lower() for origin in allowed)

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether a request with these ``Origin`` and ``Host`` headers may connect."""
        if origin is None or self.any:
            return True
        origin = origin.strip().lower()
        if origin in self.allowed:
            return True
        if not host or origin == "null":
            return False
        try:
            netloc = urlsplit(origin).netloc
        except ValueError:
            return False
        origin_host, origin_port = _host_port(netloc)
        host_host, host_port = _host_port(host)
        if not origin_host or origin_host != host_host:
            return False
        # A proxy may pass Host without the port; the host names still agree.
        return host_port is None or origin_port is None or origin_port == host_port
