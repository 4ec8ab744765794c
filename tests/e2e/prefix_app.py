"""A host FastAPI app that mounts roomcast under ``/rt``, as docs/client.md shows,
for the browser tests of test_web_prefix.py. Run it from the repository root::

    python -m uvicorn tests.e2e.prefix_app:app --port P

Settings come from ``ROOMCAST_*`` like ``roomcast serve``'s. The host has a page
of its own at ``/``, so a page of roomcast that linked to the root would land
there instead of on roomcast's index."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from roomcast.app import Roomcast
from roomcast.settings import Settings

PREFIX = "/rt"
HOST_PAGE = "<!doctype html><title>host</title><p data-testid='host'>the host app's own page</p>"

rc = Roomcast(Settings())
app = FastAPI(lifespan=rc.lifespan)
app.include_router(rc.router, prefix=PREFIX)


@app.get("/", response_class=HTMLResponse)
async def host_page() -> str:
    return HOST_PAGE
