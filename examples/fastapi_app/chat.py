"""The app's rooms and its say in them: which user may use which room
(``authenticate``), what a message must look like (``on_publish``), and the
Roomcast that serves them.

roomcast calls ``authenticate`` as a FastAPI dependency on every WebSocket
handshake, SSE stream and REST request under ``/rt``, so it reuses the app's
own session dependency. ``moderate`` runs for every message a browser publishes,
before anyone receives it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from roomcast import ErrorCode, Hooks, Principal, Refused, Roomcast

from .users import USERS, MaybeUser, User

LOBBY = "chat:lobby"
ROOMS = {LOBBY: "Lobby", "chat:staff": "Staff room"}
BANNED_WORDS = {"spam", "scam"}
MAX_TEXT = 500


def rooms_for(user: User) -> list[str]:
    """Everyone uses the lobby; staff also use the staff room."""
    return list(ROOMS) if user.is_staff else [LOBBY]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def authenticate(user: MaybeUser) -> Principal | None:
    """Who a connection is, and the rooms it may read and publish in.
    None refuses it (401); the mount's ``require_session`` already has."""
    if user is None:
        return None
    rooms = rooms_for(user)
    return Principal(user.id, user.name, subscribe=rooms, publish=rooms)


async def moderate(principal: Principal, room: str, data: Any) -> dict[str, Any]:
    """Every message is ``{"text": ...}``; the text is tidied and checked, and
    the server adds the sender's role and the time (``at``)."""
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise Refused('send {"text": "..."}', ErrorCode.BAD_REQUEST)
    text = " ".join(text.split())[:MAX_TEXT]
    if BANNED_WORDS & set(re.findall(r"\w+", text.lower())):
        raise Refused("message refused: mind your language")
    return {"text": text, "role": USERS[principal.user].role, "at": now()}


rc = Roomcast(authenticate=authenticate, hooks=Hooks(on_publish=moderate))
