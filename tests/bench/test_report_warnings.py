"""roomcast bench's warnings (report.py): a wall clock that stepped during a run is said,
since publishes are scheduled and latencies timed on it."""

from __future__ import annotations

from typing import Any

import pytest

from roomcast.bench.report import _warnings


def quiet(**changes: Any) -> dict[str, Any]:
    """A report with nothing to warn about, but for ``changes``."""
    report: dict[str, Any] = {
        "error_kinds": {}, "lost": 0, "duplicated": 0, "out_of_order": 0,
        "lost_on_closed": 0, "publisher_paced_to": None, "server_publish_limit": None,
        "client_saturated": False, "closed": {}, "connect": {"failed": 0},
        "failure": None, "presence_notices": 0, "publishes": True,
        "messages_published": 10, "machine_saturated": False, "clock_step_s": 0.0,
    }  # fmt: skip
    return report | changes


def test_a_quiet_report_has_no_warning() -> None:
    assert _warnings(quiet()) == []
    assert _warnings(quiet(clock_step_s=None)) == []  # a run cut short before the window
    assert _warnings(quiet(clock_step_s=-0.2)) == []


@pytest.mark.parametrize("step", [1.5, -3.0])
def test_a_stepped_wall_clock_is_warned_about(step: float) -> None:
    (warning,) = _warnings(quiet(clock_step_s=step))
    assert f"the wall clock moved {step:+.2f} s against the monotonic clock" in warning
    assert "latencies" in warning
