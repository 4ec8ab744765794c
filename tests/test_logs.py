"""Log formats and the redaction of secrets (roomcast/logs.py)."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from roomcast.logs import JsonFormatter, RedactSecrets, log_config, redact
from roomcast.settings import Settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ws?token=abc.def", "/ws?token=[redacted]"),
        ("/events?room=a&token=x&room=b", "/events?room=a&token=[redacted]&room=b"),
        ("/x?api_key=k1&Access_Token=t", "/x?api_key=[redacted]&Access_Token=[redacted]"),
        ("/rooms?offset=0&limit=10", "/rooms?offset=0&limit=10"),
        ("/ws?broken=token=x", "/ws?broken=token=x"),
    ],
)
def test_redact_replaces_only_the_values_of_secret_parameters(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_record_is_redacted_in_its_message_and_its_arguments() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", "/ws?token=s3cret"), None,
    )  # fmt: skip
    assert RedactSecrets().filter(record)
    assert "s3cret" not in record.getMessage()
    assert record.getMessage().endswith('"WebSocket /ws?token=[redacted]" [accepted]')


def test_json_lines_have_the_fields_and_the_extras() -> None:
    record = logging.LogRecord(
        "roomcast.websocket", logging.INFO, "", 0, "connection %s closed", ("abc",), None
    )
    record.conn = "abc"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "connection abc closed"
    assert line["level"] == "info"
    assert line["logger"] == "roomcast.websocket"
    assert line["conn"] == "abc"
    assert line["ts"].endswith("+00:00")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_both_formats_redact_what_uvicorn_logs(log_format: str) -> None:
    config = log_config(Settings(log_format=log_format, log_level="info"))
    stream = io.StringIO()
    for handler in config["handlers"].values():
        handler["stream"] = stream
    names = ["uvicorn", "uvicorn.error", "uvicorn.access", "roomcast"]
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}  # fmt: skip
    logging.config.dictConfig(config)
    try:
        logging.getLogger("uvicorn.error").info(
            '%s - "WebSocket %s" [accepted]', "c", "/ws?token=t0p"
        )
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "c", "GET", "/events?room=r&token=t0p", "1.1", 200
        )
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
    output = stream.getvalue()
    assert "t0p" not in output
    assert len(output.splitlines()) == 2
    assert all("[redacted]" in line for line in output.splitlines())
    if log_format == "json":
        assert json.loads(output.splitlines()[1])["path"] == "/events?room=r&token=[redacted]"
        assert [json.loads(line)["logger"] for line in output.splitlines()] == [
            "uvicorn.error", "uvicorn.access",
        ]  # fmt: skip
