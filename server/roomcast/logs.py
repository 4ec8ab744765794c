"""Logging: uvicorn's and roomcast's loggers, as text or as one JSON object a line.

``log_config(settings)`` is the ``logging.config.dictConfig`` that ``roomcast
serve`` (and ``roomcast.run``) gives uvicorn. Every handler passes every record
through :class:`RedactSecrets` first, so a credential never reaches a log line:

* a query parameter whose name is a credential's (:data:`CREDENTIAL_PARAMS`)
  has its value replaced, the name compared as the server reads it: percent-
  and ``+``-decoded (``?%74oken=``, ``?tok%65n=`` and ``?TOKEN=`` authenticate
  like ``?token=``), case-insensitive, ``-`` as ``_``;
* the password of a URL (``redis://:pw@host``, ``postgresql://u:pw@host/db``).

This covers the message, its arguments (uvicorn's access line and WebSocket
handshake line pass the path with its query string as one), string ``extra``
fields and the exception text. Records of other libraries' loggers (the root
logger, WARNING and above) go through the same handler, never Python's bare
last-resort output. With ``log_format=json`` every line is an object with
``ts``, ``level``, ``logger``, ``msg`` and the record's extra fields (``conn``,
``user``, ``code``, ... as the code passes them); access lines also get
``client``, ``method``, ``path`` and ``status``.

uvicorn's own lines about peers' errors go through the rate-limited peer log
(:class:`roomcast.peerlog.PeerNoise` on ``uvicorn.error``).
"""

from __future__ import annotations

import copy
import datetime
import logging
import re
from typing import Any
from urllib.parse import unquote_plus

import orjson

from .settings import Settings

__all__ = ["CREDENTIAL_PARAMS", "JsonFormatter", "RedactSecrets", "log_config", "redact"]

CREDENTIAL_PARAMS = frozenset(
    {
        "token", "access_token", "id_token", "refresh_token", "api_key", "apikey", "key",
        "auth", "authorization", "password", "secret",
    }
)  # fmt: skip
"""Query parameter names (decoded, lower case, ``-`` as ``_``) whose values are redacted."""

REDACTED = "[redacted]"

_QUERY = re.compile(r"\?(\S+)")
"""A query string: from a ``?`` to the next whitespace (a raw request target has none)."""
_PAIR_END = re.compile(r"[&;]")
_TRAILING = re.compile(r"[\"'>)\]]+$")
"""Quotes and brackets after a query's last value: the text around it, kept."""
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:]*:)[^\s@]*@")

# Attributes every LogRecord has; anything else was passed as ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


def _is_credential(name: str) -> bool:
    for _ in range(3):  # a name encoded more than once is decoded as often (never trusted)
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name.strip().lower().replace("-", "_") in CREDENTIAL_PARAMS


def _redact_query(match: re.Match[str]) -> str:
    query = match.group(1)
    out, start = ["?"], 0
    for end in [m.start() for m in _PAIR_END.finditer(query)] + [len(query)]:
        pair = query[start:end]
        name, eq, value = pair.partition("=")
        done = value.startswith(REDACTED) and not _TRAILING.sub("", value[len(REDACTED) :])
        if eq and value and _is_credential(name) and not done:  # redacted once is enough
            trailing = _TRAILING.search(value) if end == len(query) else None
            pair = f"{name}={REDACTED}{trailing.group() if trailing else ''}"
        out.append(pair)
        out.append(query[end : end + 1])
        start = end + 1
    return "".join(out)


def redact(text: str) -> str:
    """``text`` with the values of credential query parameters and the passwords of
    URLs replaced by ``[redacted]``."""
    if "?" in text and "=" in text:
        text = _QUERY.sub(_redact_query, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\1" + REDACTED + "@", text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a record's message, string arguments, string extra fields and
    exception text through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, dict):
            record.args = {k: redact(a) if isinstance(a, str) else a for k, a in args.items()}
        for key, value in record.__dict__.items():
            if key not in _STANDARD and isinstance(value, str):
                record.__dict__[key] = redact(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXC_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_EXC_FORMATTER = logging.Formatter()


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, path, _, status = args
            line.update(client=client, method=method, path=path, status=status)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


def log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's logging setup, plus roomcast's own loggers at the same level,
    in the format ``settings.log_format`` asks for, with secrets redacted."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    level = "DEBUG" if settings.log_level == "trace" else settings.log_level.upper()
    config["loggers"]["roomcast"] = {"handlers": ["default"], "level": level, "propagate": False}
    config["loggers"]["uvicorn.error"]["filters"] = ["peer_noise"]
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    config["filters"] = {
        "redact": {"()": "roomcast.logs.RedactSecrets"},
        "peer_noise": {"()": "roomcast.peerlog.PeerNoise"},
    }
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    if settings.log_format == "json":
        config["formatters"] = {"json": {"()": "roomcast.logs.JsonFormatter"}}
        for handler in config["handlers"].values():
            handler["formatter"] = "json"
    return config
