"""Keep glibc from giving the heap top back to the kernel after every socket read.

asyncio reads a plain Protocol's socket with ``sock.recv(256 KiB)``: CPython
allocates the full 256 KiB, then shrinks it to what arrived. glibc serves that
from the top of the heap and, on the shrink, trims the heap back, so every read
costs a brk() pair: on this project's test machines a 150-byte read took ~16 µs
instead of ~2.5 µs. A load client reads far more often than it does anything
else, so each worker process sets ``M_TOP_PAD`` (keep this much spare at the heap
top) once at start. No effect, and no error, where the C library is not glibc.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

__all__ = ["keep_heap_top"]

M_TOP_PAD = -2
PAD = 4 << 20


def keep_heap_top(pad: int = PAD) -> bool:
    """Ask glibc to keep ``pad`` bytes at the heap top; True if it agreed."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_TOP_PAD, pad))
    return False
