"""Free loopback ports for services a test starts."""

from __future__ import annotations

import socket

__all__ = ["free_port", "port_open"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at this moment.

    The port is only reserved while this function holds it: another process may
    take it before the caller binds. Use it for child processes that must be told
    their port (redis-server, PostgreSQL); a server in this process should bind
    port 0 itself, as :class:`~roomcast.testing.LiveServer` does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port`` now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        return sock.connect_ex((host, port)) == 0
