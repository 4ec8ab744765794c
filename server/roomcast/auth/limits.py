"""Connection limits per user and per client address, on this process.

Each connection holds a :class:`ConnectionLease`; the limiter counts leases
by key. Counts are per process: with several workers the effective limit is
``workers`` times the setting (docs/security.md).
"""

from __future__ import annotations

from collections import Counter

from .errors import TooManyConnections

__all__ = ["ConnectionLease", "ConnectionLimiter"]


class ConnectionLimiter:
    def __init__(self, *, per_user: int, per_ip: int) -> None:
        self.per_user = per_user
        self.per_ip = per_ip
        self.users: Counter[str] = Counter()
        self.ips: Counter[str] = Counter()

    def lease(self, ip: str | None) -> ConnectionLease:
        """A lease for a new connection from ``ip``. Raises TooManyConnections."""
        if ip is not None and self.per_ip and self.ips[ip] >= self.per_ip:
            raise TooManyConnections(f"at most {self.per_ip} connections per address")
        if ip is not None:
            self.ips[ip] += 1
        return ConnectionLease(self, ip)


class ConnectionLease:
    """One connection's place in the counts; :meth:`release` is idempotent."""

    __slots__ = ("_limiter", "ip", "released", "user")

    def __init__(self, limiter: ConnectionLimiter, ip: str | None) -> None:
        self._limiter = limiter
        self.ip = ip
        self.user: str | None = None
        self.released = False

    def claim_user(self, user: str | None) -> None:
        """Count this connection for ``user`` (None: anonymous, not counted),
        moving it from the user it was counted for. Raises TooManyConnections."""
        limiter = self._limiter
        if user == self.user or self.released:
            return
        if user is not None and limiter.per_user and limiter.users[user] >= limiter.per_user:
            raise TooManyConnections(f"at most {limiter.per_user} connections per user")
        self._drop_user()
        if user is not None:
            limiter.users[user] += 1
        self.user = user

    def _drop_user(self) -> None:
        if self.user is not None:
            users = self._limiter.users
            users[self.user] -= 1
            if users[self.user] <= 0:
                del users[self.user]
            self.user = None

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self._drop_user()
        if self.ip is not None:
            ips = self._limiter.ips
            ips[self.ip] -= 1
            if ips[self.ip] <= 0:
                del ips[self.ip]
