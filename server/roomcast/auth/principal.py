"""Who is on the other end of a connection, and the room patterns they hold.

A :class:`Principal` comes from a verified token, an API key, or nobody
(anonymous). Room patterns are shell-style: ``chat:*`` matches every room of
the ``chat`` namespace, ``*`` every room, ``dm:alice`` one room.

Most tokens carry patterns of their own user (``dm:u42:*``), so a process sees
new patterns as long as new users come. A plain name or a ``prefix*`` is
matched with string operations and compiles nothing; only the other patterns
(``?``, ``[...]``, ``*`` inside) become a regular expression, kept in a cache of
:data:`MAX_COMPILED` sets (and in :mod:`re`'s own, of 512 expressions).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Patterns", "PatternsLike", "Principal", "as_patterns"]


MAX_COMPILED = 4096
"""Sets of glob patterns (other than names and ``prefix*``) kept compiled."""

_GLOB = frozenset("*?[")


class Patterns:
    """A set of room patterns: names, ``prefix*`` patterns, and the rest compiled
    into one regular expression."""

    __slots__ = ("_names", "_prefixes", "_regex", "sources")

    def __init__(self, sources: Iterable[str]) -> None:
        self.sources = tuple(dict.fromkeys(sources))
        names, prefixes, globs = [], [], []
        for pattern in self.sources:
            if _GLOB.isdisjoint(pattern):
                names.append(pattern)
            elif pattern.endswith("*") and _GLOB.isdisjoint(pattern[:-1]):
                prefixes.append(pattern[:-1])
            else:
                globs.append(pattern)
        self._names = frozenset(names)
        self._prefixes = tuple(prefixes)
        self._regex = _compile(tuple(globs))

    def matches(self, room: str) -> bool:
        return (
            room in self._names
            or room.startswith(self._prefixes)
            or (self._regex is not None and self._regex.fullmatch(room) is not None)
        )

    def __bool__(self) -> bool:
        return bool(self.sources)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Patterns) and other.sources == self.sources

    def __hash__(self) -> int:
        return hash(self.sources)

    def __repr__(self) -> str:
        return f"Patterns({list(self.sources)!r})"


@functools.lru_cache(maxsize=MAX_COMPILED)
def _compile(sources: tuple[str, ...]) -> re.Pattern[str] | None:
    if not sources:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in sources))


ALL = Patterns(["*"])
NONE = Patterns([])


PatternsLike = Patterns | Iterable[str] | str
"""Room patterns as a :class:`Patterns`, a list of patterns, or one pattern."""


def as_patterns(value: PatternsLike) -> Patterns:
    if isinstance(value, Patterns):
        return value
    if isinstance(value, str):
        return Patterns([value])
    return Patterns(value)


@dataclass(frozen=True, slots=True, init=False)
class Principal:
    """The identity and permissions one connection or request acts with.

    roomcast makes them from tokens and API keys; an application's own
    ``authenticate`` returns one::

        Principal("u42", "Ann", subscribe=["chat:*"], publish=["chat:*"])

    Room patterns are shell-style (``chat:*``, ``dm:u42``, ``*``); a plain list,
    one string or a :class:`Patterns` will do.
    """

    user: str
    """The user's stable id (a token's ``sub``); for anonymous clients, a generated id.
    What ``rc.disconnect(user)`` and the per-user connection limit count by."""
    name: str
    """Shown to others (presence, message sender): a token's ``name`` or ``sub``."""
    subscribe: Patterns
    """Rooms it may subscribe to and read (history, presence)."""
    publish: Patterns
    """Rooms it may publish to."""
    expires: float | None
    """Unix time the credentials expire at (the connection is closed 3003 then);
    None: never."""
    anonymous: bool
    admin: bool
    """May do anything: publish anywhere and administer rooms over REST (API keys)."""

    @property
    def idempotency_scope(self) -> str:
        """Whose idempotency keys a publish of this principal looks up: its user's;
        every anonymous client shares one scope, ``"\\x00anon"``, which no user id
        can be mistaken for in practice (an anonymous user id is new on each
        connection, so a retry after a reconnect would never find its key; keys are
        random, so anonymous clients do not meet each other's)."""
        return "\x00anon" if self.anonymous else self.user

    def __init__(
        self,
        user: str,
        name: str | None = None,
        subscribe: PatternsLike = NONE,
        publish: PatternsLike = NONE,
        expires: float | None = None,
        anonymous: bool = False,
        admin: bool = False,
    ) -> None:
        if not isinstance(user, str) or not user:
            raise ValueError("a principal's user must be a non-empty string")
        set_ = object.__setattr__
        set_(self, "user", user)
        set_(self, "name", name or user)
        set_(self, "subscribe", as_patterns(subscribe))
        set_(self, "publish", as_patterns(publish))
        set_(self, "expires", expires)
        set_(self, "anonymous", anonymous)
        set_(self, "admin", admin)
