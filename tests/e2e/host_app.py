"""A host FastAPI app that mounts roomcast the way an application would: its own
users and session cookie, roomcast under ``/rt`` behind the host's own
``require_session``, ``authenticate`` from its user table, hooks, and
handlers that use the server-side API. Started for real by the tests
(``python -m tests.e2e.host_app``), configured by environment variables:

* ``HOST_APP_PORT``, ``HOST_APP_WORKERS`` (several need ``ROOMCAST_REDIS_URL``);
* ``HOST_APP_SERVER``: ``roomcast`` (``roomcast.run``, the default) or
  ``uvicorn`` (plain ``uvicorn.run`` with uvicorn's own WebSocket protocol);
* ``HOST_APP_LOG``: a file each process appends its hook calls to.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Response, status
from starlette.requests import HTTPConnection

from roomcast import Hooks, Principal, Refused, Roomcast, Settings

USERS: dict[str, dict[str, Any]] = {
    "ann": {"name": "Ann", "rooms": ["chat:*", "feed:*"], "publish": ["chat:*"]},
    "bob": {"name": "Bob", "rooms": ["chat:*", "feed:*"], "publish": ["chat:*"]},
    "ro": {"name": "Reader", "rooms": ["chat:*"], "publish": []},
    "eve": {"name": "Eve", "rooms": ["chat:*"], "publish": ["chat:*"]},  # on_connect says no
    "boss": {"name": "Boss", "rooms": ["*"], "publish": ["*"], "admin": True},
}
SESSIONS: dict[str, str] = {}
"""Session id -> user. Sessions are made at start-up from HOST_APP_SESSIONS, so every
worker knows them (a real app keeps them in its database)."""
for pair in os.environ.get("HOST_APP_SESSIONS", "").split(","):
    if "=" in pair:
        sid, user = pair.split("=", 1)
        SESSIONS[sid] = user

LOG = os.environ.get("HOST_APP_LOG")


def record(line: str) -> None:
    if LOG:
        with open(LOG, "a") as file:
            file.write(f"{os.getpid()} {line}\n")


def current_user(conn: HTTPConnection) -> str | None:
    return SESSIONS.get(conn.cookies.get("session", ""))


def require_session(user: Annotated[str | None, Depends(current_user)]) -> str:
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in first")
    return user


async def authenticate(
    conn: HTTPConnection, user: Annotated[str | None, Depends(current_user)]
) -> Principal | None:
    if user is None:
        return None
    info = USERS[user]
    return Principal(
        user,
        info["name"],
        subscribe=info["rooms"],
        publish=info["publish"],
        admin=info.get("admin", False),
    )


async def on_connect(principal: Principal) -> None:
    record(f"connect {principal.user}")
    if principal.user == "eve":
        raise Refused("eve is banned")


async def on_subscribe(principal: Principal, room: str) -> None:
    record(f"subscribe {principal.user} {room}")
    if room == "chat:secret" and not principal.admin:
        raise Refused("members only")


async def on_publish(principal: Principal, room: str, data: Any) -> Any:
    text = data.get("text", "") if isinstance(data, dict) else ""
    if "badword" in text:
        raise Refused("mind your language")
    if text == "boom":
        raise RuntimeError("a bug in the host's hook")
    if text == "slow":
        await asyncio.sleep(1.5)
    if text == "too slow":
        await asyncio.sleep(30)
    if isinstance(data, dict):
        return {**data, "by": principal.user, "moderated": True}
    return None


async def on_disconnect(principal: Principal) -> None:
    record(f"disconnect {principal.user}")


settings = Settings(hook_timeout=float(os.environ.get("HOST_APP_HOOK_TIMEOUT", "3")))
rc = Roomcast(
    settings,
    authenticate=authenticate,
    hooks=Hooks(on_connect, on_subscribe, on_publish, on_disconnect),
)
app = FastAPI(lifespan=rc.lifespan)
app.include_router(rc.router, prefix="/rt", dependencies=[Depends(require_session)])
Session = Annotated[str, Depends(require_session)]


@app.post("/login/{user}")
async def login(user: str, response: Response) -> dict[str, str]:
    if user not in USERS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
    sid = secrets.token_urlsafe(8)
    SESSIONS[sid] = user
    response.set_cookie("session", sid)
    return {"user": user}


@app.post("/announce")
async def announce(body: dict[str, Any], user: Session) -> dict[str, Any]:
    published = await rc.publish(body["room"], {"text": body["text"]}, sender=user)
    return {"room": published.room, "offset": published.offset}


@app.post("/kick/{target}")
async def kick(target: str, user: Session) -> dict[str, str]:
    await rc.disconnect(target)
    return {"kicked": target}


@app.post("/remove/{target}/{room}")
async def remove(target: str, room: str, user: Session) -> dict[str, str]:
    await rc.unsubscribe(target, room)
    return {"removed": target}


@app.get("/whoami")
async def whoami(user: Session) -> dict[str, Any]:
    stats = rc.stats()
    return {"user": user, "pid": os.getpid(), "connections": stats.connections}


def main() -> None:
    import roomcast

    port = int(os.environ["HOST_APP_PORT"])
    workers = int(os.environ.get("HOST_APP_WORKERS", "1"))
    target = "tests.e2e.host_app:app"
    # A worker answers uvicorn's health check only once it has imported this module
    # (its __main__): on a loaded machine that may take longer than uvicorn's 5 s,
    # and the supervisor would kill the starting worker and start another.
    options: dict[str, Any] = {"workers": workers, "log_level": "info"}
    if workers > 1:
        options["timeout_worker_healthcheck"] = 30
    if os.environ.get("HOST_APP_SERVER", "roomcast") == "uvicorn":
        import uvicorn

        uvicorn.run(target, port=port, **options)
    else:
        roomcast.run(target, port=port, **options)


if __name__ == "__main__":
    main()
