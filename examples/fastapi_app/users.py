"""The app's own users and sessions: a user table, password checks, a random
session id in a cookie, kept server-side, and the dependencies that read it.

Everything is in memory to keep the example short: restart the app and everyone
logs in again, and only one worker process can know the sessions. A real app
keeps users and sessions in its database (and may sign its cookies).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, Response, status
from starlette.requests import HTTPConnection

COOKIE = "session"


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000)


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: Literal["staff", "member"]
    salt: bytes
    password_hash: bytes

    @property
    def is_staff(self) -> bool:
        return self.role == "staff"

    @classmethod
    def create(cls, id: str, name: str, role: Literal["staff", "member"], password: str) -> User:
        salt = secrets.token_bytes(16)
        return cls(id, name, role, salt, hash_password(password, salt))


# Demo accounts: the password is the user name (README.md).
USERS = {
    user.id: user
    for user in (
        User.create("ann", "Ann Staff", "staff", "ann"),
        User.create("bob", "Bob Member", "member", "bob"),
        User.create("cid", "Cid Member", "member", "cid"),
    )
}

SESSIONS: dict[str, str] = {}
"""Session id -> user id."""


def check_password(name: str, password: str) -> User | None:
    """The user whose name and password these are, or None."""
    user = USERS.get(name)
    if user is None:
        hash_password(password, b"no such user")  # take as long as for a real one
        return None
    if not hmac.compare_digest(hash_password(password, user.salt), user.password_hash):
        return None
    return user


def start_session(response: Response, user: User) -> None:
    session_id = secrets.token_urlsafe(32)
    SESSIONS[session_id] = user.id
    # SameSite=Lax keeps the cookie off other sites' POSTs and WebSocket handshakes.
    # Behind HTTPS, add secure=True.
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="lax")


def end_session(request: Request, response: Response) -> User | None:
    """Forget the request's session; the user it was, if any."""
    user_id = SESSIONS.pop(request.cookies.get(COOKIE, ""), None)
    response.delete_cookie(COOKIE, httponly=True, samesite="lax")
    return USERS.get(user_id) if user_id else None


def has_session(user: User) -> bool:
    """Whether ``user`` is still logged in somewhere (another browser)."""
    return user.id in SESSIONS.values()


def current_user(conn: HTTPConnection) -> User | None:
    """The logged-in user of a request or WebSocket handshake, or None."""
    user_id = SESSIONS.get(conn.cookies.get(COOKIE, ""))
    return USERS.get(user_id) if user_id else None


def require_session(user: Annotated[User | None, Depends(current_user)]) -> User:
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in first")
    return user


MaybeUser = Annotated[User | None, Depends(current_user)]
LoggedIn = Annotated[User, Depends(require_session)]
