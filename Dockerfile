# roomcast: a multi-stage image, the server running as a non-root user.
#   docker build -t roomcast .
#   docker run -p 8000:8000 roomcast          # embedded defaults: memory broker + SQLite
# Settings come from the environment (ROOMCAST_*, docs/operations.md).

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/roomcast
WORKDIR /src
# The dependencies first, from pyproject.toml alone: this layer is rebuilt only when
# they change, not on every change to the code.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/roomcast/bin/pip install --no-cache-dir -r requirements.txt
COPY server/ server/
RUN /opt/roomcast/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/roomcast/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ROOMCAST_HOST=0.0.0.0 \
    ROOMCAST_PORT=8000
RUN groupadd --system --gid 10001 roomcast \
    && useradd --system --uid 10001 --gid roomcast --home-dir /var/lib/roomcast --create-home roomcast
COPY --from=build /opt/roomcast /opt/roomcast
# The working directory holds the SQLite file of the embedded default (roomcast.db).
WORKDIR /var/lib/roomcast
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ROOMCAST_PORT', '8000'), timeout=2)"]
# Workers, host, port and every other setting: ROOMCAST_* variables.
CMD ["roomcast", "serve"]
