"""Reading RSS and CPU of a process and its children from /proc."""

from __future__ import annotations

import os
import subprocess
import sys

from roomcast.bench.procfs import (
    cpu_seconds,
    process_tree,
    rss_bytes,
    tree_cpu_seconds,
    tree_rss_bytes,
)


def test_a_process_tree_includes_children_and_sums_their_rss() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = process_tree(os.getpid())
        assert tree[0] == os.getpid()
        assert child.pid in tree
        own, total = rss_bytes(os.getpid()), tree_rss_bytes(os.getpid())
        assert own is not None
        assert own > 0
        assert total is not None
        assert total > own
        assert (cpu_seconds(os.getpid()) or 0) > 0
        assert (tree_cpu_seconds(os.getpid()) or 0) >= (cpu_seconds(os.getpid()) or 0)
    finally:
        child.kill()
        child.wait()


def test_a_missing_process_reads_as_unknown() -> None:
    assert process_tree(2**22 + 7) == []
    assert rss_bytes(2**22 + 7) is None
    assert tree_rss_bytes(2**22 + 7) is None
