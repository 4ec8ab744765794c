"""Server processes forked from a warm interpreter, for the tests.

A fresh ``python -m roomcast serve`` spends about 1.5 s of CPU importing FastAPI,
SQLAlchemy, alembic, pydantic and the rest before it serves anything, and the suite
starts a few hundred servers on two cores. So each pytest process runs one fork
server (this file, run as a script): it imports that stack once, then forks every
server the tests ask for. The child is a real server process like any other: its
own pid and session (``killpg`` ends it), environment, working directory and output
file; it runs the module as ``python -m`` does (``runpy``, ``sys.argv``, the path),
reads its settings then, and exits through the interpreter's normal shutdown, or by
the signal uvicorn re-raises. The only thing it skips is the import (and so what
``ps`` shows: /proc/PID/cmdline and environ are the fork server's, fixed at exec).

``conftest.launch`` (and test_peer_noise's ``run_serve``) forks every ``python -m
<module> ...`` command this way (roomcast serve, uvicorn with a test app, the host and
example apps); other commands (``python -c`` that patches the import system first,
say), and every command when ``ROOMCAST_TEST_FORKSERVER=0``, are started afresh.

Protocol, JSON lines: the test process writes ``{"id", "args", "env", "cwd", "log"}``;
the fork server answers ``{"id", "pid"}`` (or ``{"id", "error"}``) and, when a child
ends, ``{"exit": pid, "code": returncode}`` (``-N`` for signal N, like Popen).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["ForkedProcess", "popen"]

PRELOAD = (
    "roomcast.cli",
    "roomcast.app",
    "roomcast.hub.redis",
    "roomcast.db.migrate",
    "uvicorn",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvicorn.loops.auto",
    "uvloop",
    "aiosqlite",
    "asyncpg",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "sqlalchemy.dialects.postgresql.asyncpg",
)
"""What a serving process imports; a missing optional one is skipped."""


# -- the fork server (this file run as a script) ---------------------------------------


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        # A module that fails here fails the same way in the child, which imports it
        # again: the test sees the error then, as it would in a fresh process.
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _become_server(request: dict[str, Any], inherited: list[int]) -> None:
    """In the forked child: become ``python -m <args>`` with the request's environment,
    directory and output; raises SystemExit when the server ends, which unwinds to
    the interpreter's own exit (atexit handlers, non-daemon threads, flushed output)."""
    os.setsid()  # a session of its own, as Popen(start_new_session=True)
    for fd in inherited:
        os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # What `python -m` puts first on the path: the folder it runs in, then PYTHONPATH.
    extra = [path for path in request["env"].get("PYTHONPATH", "").split(os.pathsep) if path]
    sys.path[0:0] = [os.getcwd(), *extra]
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = _text(1, "strict")
    sys.stderr = _text(2, "backslashreplace")
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr  # type: ignore[misc]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["-m", *request["args"][1:]]
    import runpy

    runpy.run_module(request["args"][0], run_name="__main__", alter_sys=True)
    raise SystemExit(0)


def _text(fd: int, errors: str) -> io.TextIOWrapper:
    raw = open(fd, "wb", buffering=0, closefd=False)  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", errors=errors, write_through=True)


def _send(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _serve_forever() -> None:
    """Read requests on stdin until it closes; fork a server for each; report exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for pytest to handle
    del sys.path[0]  # this folder: not on a server's path (nor is PYTHONPATH: see ForkServer)
    _preload()
    _send({"ready": os.getpid()})
    children: dict[int, int] = {}  # pidfd -> pid
    pending = b""
    while True:
        readable, _, _ = select.select([0, *children], [], [])
        for fd in readable:
            if fd in children:
                pid = children.pop(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                _send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
                continue
            chunk = os.read(0, 65536)
            if not chunk:
                return  # the tests are done
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as exc:
                    _send({"id": request["id"], "error": str(exc)})
                    continue
                if pid == 0:
                    _become_server(request, list(children))  # never returns
                children[os.pidfd_open(pid)] = pid
                _send({"id": request["id"], "pid": pid})


# -- the test process's side -----------------------------------------------------------


class ForkServer:
    """The test process's link to its fork server."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
        env.pop("PYTHONPATH", None)  # each child gets its own (_become_server)
        self.process = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=Path(__file__).parent,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._stdin = self.process.stdin
        self._stdout = self.process.stdout
        self._lock = threading.Lock()  # one request written at a time
        self._changed = threading.Condition()
        self._pids: dict[int, int | str] = {}  # request id -> pid, or an error
        self._codes: dict[int, int] = {}  # pid -> returncode
        self._next_id = 0
        self.alive = True
        ready = self._stdout.readline()
        if not ready.startswith(b'{"ready"'):
            self.alive = False
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"the fork server did not start: {ready!r}")
        threading.Thread(target=self._read, name="forkserver-reader", daemon=True).start()

    def _read(self) -> None:
        for line in self._stdout:
            message = json.loads(line)
            with self._changed:
                if "exit" in message:
                    self._codes[message["exit"]] = message["code"]
                else:
                    self._pids[message["id"]] = message.get("pid") or message["error"]
                self._changed.notify_all()
        with self._changed:
            self.alive = False
            self._changed.notify_all()

    def start(self, args: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> int:
        """Fork ``python -m <args>``; its pid."""
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            request = {"id": request_id, "args": list(args), "env": env, "cwd": str(cwd)}
            request["log"] = str(log)
            self._stdin.write(json.dumps(request).encode() + b"\n")
            self._stdin.flush()
        with self._changed:
            self._changed.wait_for(lambda: request_id in self._pids or not self.alive, 30)
            answer = self._pids.pop(request_id, "the fork server stopped")
        if isinstance(answer, str):
            raise RuntimeError(f"fork server: {answer}")
        return answer

    def returncode(self, pid: int, timeout: float | None) -> int | None:
        """``pid``'s exit status once it ended, waiting up to ``timeout`` (0: no wait)."""
        with self._changed:
            self._changed.wait_for(lambda: pid in self._codes or not self.alive, timeout)
            if pid not in self._codes and not self.alive:
                raise RuntimeError(f"the fork server stopped: the exit of {pid} is unknown")
            return self._codes.get(pid)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


class ForkedProcess(subprocess.Popen[bytes]):
    """A forked server as a Popen (what ``ServerProcess`` and the tests use of it:
    ``pid``, ``poll``, ``wait``, ``send_signal``, ``terminate``, ``kill``,
    ``returncode``). ``Popen.__init__`` is not called: there is nothing to spawn."""

    def __init__(self, server: ForkServer, pid: int, args: list[str]) -> None:
        self._server = server
        self.args = args
        self.pid = pid
        self.returncode = None
        self.stdin = self.stdout = self.stderr = None
        self._child_created = False  # Popen.__del__ has nothing to reap

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.returncode(self.pid, 0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self._server.returncode(self.pid, timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


_server: ForkServer | None = None
_server_lock = threading.Lock()
_broken = False  # the fork server could not start: start everything afresh


def enabled() -> bool:
    return os.environ.get("ROOMCAST_TEST_FORKSERVER", "1") != "0"


def popen(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> ForkedProcess | None:
    """``command`` (``[sys.executable, "-m", module, ...]``) forked from this process's
    fork server; None when it cannot be (started afresh then). Commands of another form
    (``python -c`` that patches the import system, say) are never forked."""
    global _server, _broken
    if not enabled() or len(command) < 3 or command[:2] != [sys.executable, "-m"]:
        return None
    with _server_lock:
        if _broken:
            return None
        if _server is None or not _server.alive:
            try:
                _server = ForkServer()
            except (OSError, RuntimeError):
                _broken = True
                return None
            import atexit

            atexit.register(_server.close)
        server = _server
    try:
        pid = server.start(command[2:], env, cwd, log)
    except RuntimeError:
        return None
    return ForkedProcess(server, pid, command)


if __name__ == "__main__":
    _serve_forever()
