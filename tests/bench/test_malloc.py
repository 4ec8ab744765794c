"""The bench's workers ask glibc to keep the heap top (malloc.py)."""

from __future__ import annotations

import platform

from roomcast.bench.malloc import keep_heap_top


def test_glibc_accepts_the_heap_top_pad() -> None:
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_heap_top(1 << 20) is expected
