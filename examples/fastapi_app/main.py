"""The FastAPI app: its pages, login and logout, an announcement endpoint, and
roomcast mounted under ``/rt`` behind the app's own session.

Run it with ``python -m examples.fastapi_app`` (README.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from .chat import LOBBY, ROOMS, now, rc, rooms_for
from .users import (
    LoggedIn,
    MaybeUser,
    check_password,
    end_session,
    has_session,
    require_session,
    start_session,
)

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
}

app = FastAPI(title="roomcast example", lifespan=rc.lifespan)
# Every roomcast route (/rt/ws, /rt/events, /rt/rooms/..., /rt/roomcast.js) needs a session.
app.include_router(rc.router, prefix="/rt", dependencies=[Depends(require_session)])
app.mount("/static", StaticFiles(directory=STATIC), name="static")


class Credentials(BaseModel):
    name: str
    password: str


async def login_form(request: Request) -> Credentials:
    """The login form's fields. (``Form()`` would need python-multipart; a
    urlencoded body is simple enough for the standard library.)"""
    fields = dict(parse_qsl((await request.body()).decode()))
    return Credentials(name=fields.get("name", ""), password=fields.get("password", ""))


class Announcement(BaseModel):
    text: str = Field(min_length=1, max_length=500)


@app.get("/", include_in_schema=False)
async def home(user: MaybeUser) -> FileResponse:
    page = "chat.html" if user else "login.html"
    return FileResponse(STATIC / page, headers=PAGE_HEADERS)


@app.post("/login")
async def login(form: Annotated[Credentials, Depends(login_form)]) -> RedirectResponse:
    user = check_password(form.name, form.password)
    response = RedirectResponse("/" if user else "/?failed", status.HTTP_303_SEE_OTHER)
    if user:
        start_session(response, user)
    return response


@app.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    user = end_session(request, response)
    if user and not has_session(user):
        await rc.disconnect(user.id)  # close their live connections (code 3503)
    return response


@app.get("/me")
async def me(user: LoggedIn) -> dict[str, Any]:
    """Who is logged in and the rooms the page offers them."""
    rooms = [{"id": room, "title": ROOMS[room]} for room in rooms_for(user)]
    return {"id": user.id, "name": user.name, "role": user.role, "rooms": rooms}


@app.post("/announce", status_code=status.HTTP_201_CREATED)
async def announce(body: Announcement, user: LoggedIn) -> dict[str, Any]:
    """Staff post an announcement into the lobby, from the server's side."""
    if not user.is_staff:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "staff only")
    data = {"text": body.text, "announcement": True, "by": user.name, "at": now()}
    published = await rc.publish(LOBBY, data, sender="Announcement")
    return {"room": published.room, "offset": published.offset}
