"""Logging: uvicorn's and roomcast's loggers, as text or as one JSON object a line.

``log_config(settings)`` is the ``logging.config.dictConfig`` that ``roomcast
serve`` gives uvicorn. Both formats pass every record through
:class:`RedactSecrets` first: a token or API key in a query string (``?token=``
on a WebSocket handshake or an SSE stream) never reaches a log line. With
``log_format=json`` every line is an object with ``ts``, ``level``, ``logger``,
``msg`` and the record's extra fields (``conn``, ``user``, ``code``, ... as the
code passes them); access lines also get ``client``, ``method``, ``path`` and
``status``.
"""

from __future__ import annotations

import copy
import datetime
import logging
import re
from typing import Any

import orjson

from .settings import Settings

__all__ = ["JsonFormatter", "RedactSecrets", "log_config", "redact"]

_SECRET_PARAM = re.compile(r"(?i)([?&;](?:token|access_token|api_key|apikey|key)=)[^&\s\"']*")
REDACTED = "[redacted]"

# Attributes every LogRecord has; anything else was passed as ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


def redact(text: str) -> str:
    """``text`` with the values of secret query parameters replaced."""
    return _SECRET_PARAM.sub(r"\1" + REDACTED, text) if "=" in text else text


class RedactSecrets(logging.Filter):
    """Rewrites a record's message and string arguments through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


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
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's logging setup, plus roomcast's own loggers at the same level,
    in the format ``settings.log_format`` asks for, with secrets redacted."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    level = "DEBUG" if settings.log_level == "trace" else settings.log_level.upper()
    config["loggers"]["roomcast"] = {"handlers": ["default"], "level": level, "propagate": False}
    config["filters"] = {"redact": {"()": "roomcast.logs.RedactSecrets"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    if settings.log_format == "json":
        config["formatters"] = {"json": {"()": "roomcast.logs.JsonFormatter"}}
        for handler in config["handlers"].values():
            handler["formatter"] = "json"
    return config
