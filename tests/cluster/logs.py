"""What the drills read in a server's log (``log_format=json``): lines that
repeat too often, and errors logged with a traceback."""

from __future__ import annotations

import json
import re
from collections import Counter

from ..conftest import ServerProcess

LOG_LINE_LIMIT = 20
"""Most times one log line (digits aside) may appear within one second."""


def log_storms(server: ServerProcess, limit: int = LOG_LINE_LIMIT) -> list[str]:
    """The lines (digits aside) ``server`` logged more than ``limit`` times in one
    second: the worst second's count and the total."""
    lines = parse_log(server.log())
    per_second = Counter((ts[:19], line) for ts, line, _ in lines if ts)
    worst: Counter[str] = Counter()
    for (_, line), n in per_second.items():
        if n > limit:
            worst[line] = max(worst[line], n)
    total = Counter(line for _, line, _ in lines)
    return [
        f"{n}/s at worst ({total[line]} in all): {line[:160]}" for line, n in worst.most_common()
    ]


_DIGITS = re.compile(r"\d+(?:\.\d+)?")


def parse_log(text: str) -> list[tuple[str, str, str]]:
    """(timestamp, ``logger: message`` with digits as ``#``, traceback) per JSON log
    line; lines that are not JSON count with an empty timestamp."""
    out = []
    for raw in text.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            out.append(("", _DIGITS.sub("#", raw.strip()), ""))
            continue
        line = f"{record.get('logger')}: {_DIGITS.sub('#', str(record.get('msg')))}"
        out.append((str(record.get("ts", "")), line, str(record.get("exc", ""))))
    return out
