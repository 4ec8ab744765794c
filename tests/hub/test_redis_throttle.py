"""Throttled (redis_throttle.py), the one log throttle of the Redis layers: a line
at most once per interval, the next one saying how many were left out, in the
pub/sub links' wording or in the publish batcher's (the lines they wrote before
the batcher's own throttle was merged into it, word for word)."""

from __future__ import annotations

import logging
import types

import pytest

from roomcast.hub import redis_throttle
from roomcast.hub.redis_batch import PublishBatcher
from roomcast.hub.redis_throttle import SINCE_THE_LAST_REPORT, Throttled


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The throttle's clock, set by the test: ``clock[0]`` seconds."""
    now = [100.0]
    monkeypatch.setattr(redis_throttle, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    return now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, bool]]:
    return [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records]


def test_a_line_repeated_within_the_interval_is_counted_and_the_next_one_says_so(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    warn = Throttled(5.0)
    with caplog.at_level(logging.INFO, logger="roomcast.redis"):
        for t, node in [(0, "a"), (1, "b"), (4.9, "c"), (5, "d"), (9, "e"), (10.5, "f")]:
            clock[0] = 100.0 + t
            warn("redis pub/sub connection to %s lost: %s", node, "reset")
    assert lines(caplog) == [
        (logging.WARNING, "redis pub/sub connection to a lost: reset", False),
        (
            logging.WARNING,
            "redis pub/sub connection to d lost: reset (and 2 more like it in the last 5 s)",
            False,
        ),
        (
            logging.WARNING,
            "redis pub/sub connection to f lost: reset (and 1 more like it in the last 5 s)",
            False,
        ),
    ]
    assert warn.skipped == 0


def test_the_batchers_lines_keep_their_wording_level_and_traceback(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    """What the batcher logged through its own throttle before, word for word:
    an unexpected error once per 10 s per exception type, with its traceback."""
    batcher = PublishBatcher(types.SimpleNamespace(), lambda node, connect: None)  # type: ignore[arg-type, return-value]
    try:
        raise AttributeError("'NoneType' object has no attribute 'writelines'")
    except AttributeError as exc:
        error = exc
    with caplog.at_level(logging.INFO, logger="roomcast.redis"):
        for t in (0, 3, 6, 10):
            clock[0] = 100.0 + t
            batcher._unexpected(error)(
                "publishing to redis node %s failed unexpectedly; its unanswered "
                "publishes were answered unavailable",
                "main",
                exc_info=error,
            )
        batcher._unexpected(KeyError("x"))("publishing to redis node %s after ASK failed", "a")
        batcher._warn_refresh("reading the redis cluster's slots: %s", "refused")
    failed = (
        "publishing to redis node main failed unexpectedly; its unanswered publishes were "
        "answered unavailable"
    )
    assert lines(caplog) == [
        (logging.ERROR, failed, True),
        (logging.ERROR, failed + " (2 more like it since the last report)", True),
        (logging.ERROR, "publishing to redis node a after ASK failed", False),
        (logging.WARNING, "reading the redis cluster's slots: refused", False),
    ]
    assert batcher._warn_refresh.note == SINCE_THE_LAST_REPORT
