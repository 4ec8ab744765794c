"""Authentication and permissions: tokens, API keys, room patterns, namespaces,
origins and connection limits. :class:`Authority` is the one place that
answers "may this principal do this in this room"."""

from .authority import Authority
from .errors import AuthUnavailable, InvalidCredentials, TokenExpiredError, TooManyConnections
from .limits import ConnectionLease, ConnectionLimiter
from .principal import Patterns, Principal

__all__ = [
    "AuthUnavailable",
    "Authority",
    "ConnectionLease",
    "ConnectionLimiter",
    "InvalidCredentials",
    "Patterns",
    "Principal",
    "TokenExpiredError",
    "TooManyConnections",
]
