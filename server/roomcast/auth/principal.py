"""Who is on the other end of a connection, and the room patterns they hold.

A :class:`Principal` comes from a verified token, an API key, or nobody
(anonymous). Room patterns are shell-style: ``chat:*`` matches every room of
the ``chat`` namespace, ``*`` every room, ``dm:alice`` one room.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Patterns", "Principal"]


class Patterns:
    """A set of room patterns, compiled once into one regular expression."""

    __slots__ = ("_regex", "sources")

    def __init__(self, sources: Iterable[str]) -> None:
        self.sources = tuple(dict.fromkeys(sources))
        self._regex = _compile(self.sources)

    def matches(self, room: str) -> bool:
        return self._regex is not None and self._regex.fullmatch(room) is not None

    def __bool__(self) -> bool:
        return bool(self.sources)

    def __repr__(self) -> str:
        return f"Patterns({list(self.sources)!r})"


@functools.lru_cache(maxsize=4096)
def _compile(sources: tuple[str, ...]) -> re.Pattern[str] | None:
    if not sources:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in sources))


ALL = Patterns(["*"])
NONE = Patterns([])


@dataclass(frozen=True, slots=True)
class Principal:
    """The identity and permissions one connection or request acts with."""

    user: str
    """The token's ``sub``; for anonymous clients, a generated id."""
    name: str
    """Shown to others (presence, message sender): the token's ``name`` or ``sub``."""
    subscribe: Patterns = NONE
    """Rooms it may subscribe to and read (history, presence)."""
    publish: Patterns = NONE
    """Rooms it may publish to."""
    expires: float | None = None
    """Unix time the token expires at; None: never (anonymous, API key)."""
    anonymous: bool = False
    admin: bool = False
    """An API key: publishes anywhere and administers rooms over REST."""
