"""The server's resident memory and CPU time, read from Linux's /proc.

A multi-worker server runs as a supervisor with worker children, so every reading
covers the process *and all its descendants*: children come from
``/proc/PID/task/*/children`` where the kernel offers it, otherwise from scanning the
parent PID of every ``/proc/*/stat``. Every function returns None where /proc cannot
tell (another OS, a PID that is gone, no permission).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "process_tree", "rss_bytes", "tree_cpu_seconds", "tree_rss_bytes"]

PROC = Path("/proc")


def _children_from_tasks(pid: int) -> list[int] | None:
    tasks = PROC / str(pid) / "task"
    try:
        files = list(tasks.glob("*/children"))
    except OSError:
        return None
    if not files:
        return None
    children: list[int] = []
    for file in files:
        try:
            children += [int(part) for part in file.read_text().split()]
        except (OSError, ValueError):
            continue
    return children


def _parent_of(stat_text: str) -> int:
    # Fields after the command name (which may hold spaces and parentheses).
    return int(stat_text.rsplit(")", 1)[1].split()[1])


def _children_by_scan() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = _parent_of((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (empty if ``pid`` does not exist)."""
    if not (PROC / str(pid)).exists():
        return []
    found = [pid]
    scanned: dict[int, list[int]] | None = None
    i = 0
    while i < len(found):
        current = found[i]
        children = _children_from_tasks(current)
        if children is None:
            if scanned is None:
                scanned = _children_by_scan()
            children = scanned.get(current, [])
        found += [child for child in children if child not in found]
        i += 1
    return found


def rss_bytes(pid: int) -> int | None:
    """The resident set size (VmRSS) of one process, in bytes."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                value, unit = line.split()[1:3]
                return int(value) * (1024 if unit.lower() == "kb" else 1)
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds one process has used so far."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def tree_rss_bytes(pid: int) -> int | None:
    """VmRSS of ``pid`` plus all its descendants, in bytes."""
    values = [rss_bytes(p) for p in process_tree(pid)]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds used so far by ``pid`` and its living descendants."""
    values = [cpu_seconds(p) for p in process_tree(pid)]
    known = [v for v in values if v is not None]
    return sum(known) if known else None
