"""The repository's nginx.conf, run by a real nginx on free loopback ports.

The test rewrites the addresses in it and nothing else: each upstream
``server roomcast-N:8000`` becomes a loopback address of a roomcast process
started by the test, and ``listen 80`` a free loopback port. nginx runs in the
foreground with a private prefix (``-p``), its pid file there (``-g``)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .conftest import ROOT, free_port

CONF = ROOT / "nginx.conf"
UPSTREAM = re.compile(r"server (roomcast-\d+):8000")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def rewritten(upstreams: list[int], listen: int) -> str:
    """nginx.conf with its replicas at 127.0.0.1:``upstreams`` and ``listen``."""
    text = CONF.read_text()
    names = UPSTREAM.findall(text)
    if len(names) != len(upstreams):
        raise ValueError(f"nginx.conf has {len(names)} upstream servers, not {len(upstreams)}")
    for name, port in zip(names, upstreams, strict=True):
        text = text.replace(f"server {name}:8000", f"server 127.0.0.1:{port}")
    return text.replace("listen 80;", f"listen 127.0.0.1:{listen};")


def nginx_command(prefix: Path, conf: Path, *extra: str) -> list[str]:
    binary = nginx_binary()
    assert binary is not None
    pid = f"daemon off; pid {prefix / 'nginx.pid'};"
    return [binary, "-p", str(prefix), "-c", str(conf), "-e", "stderr", "-g", pid, *extra]


class NginxServer:
    """nginx in front of the roomcast processes listening on ``upstreams``."""

    def __init__(self, folder: Path, upstreams: list[int]) -> None:
        self.folder = folder
        self.port = free_port()
        self.conf = folder / "nginx.conf"
        self.upstreams = upstreams
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = folder / "nginx.log"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def test_config(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on the rewritten config."""
        self._write()
        return subprocess.run(
            nginx_command(self.folder, self.conf, "-t"), capture_output=True, text=True, timeout=30
        )

    def start(self) -> NginxServer:
        self._write()
        with self.log_path.open("ab") as log:  # O_APPEND: nginx writes it through two fds
            self.process = subprocess.Popen(
                nginx_command(self.folder, self.conf), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{self.log()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(rewritten(self.upstreams, self.port))
