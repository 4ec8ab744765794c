"""``python -m examples.fastapi_app [--host H] [--port P]``, from the repository root.

``roomcast.run`` serves the app with uvicorn and roomcast's own WebSocket
protocol (the fast path for fan-out). One worker: the sessions live in memory.
"""

from __future__ import annotations

import argparse
import os

import roomcast


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the roomcast example app.")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    options = parser.parse_args()
    roomcast.run("examples.fastapi_app.main:app", host=options.host, port=options.port, workers=1)


if __name__ == "__main__":
    main()
