"""The running event loop without a system call: :func:`loop_of`.

``asyncio.get_running_loop()`` calls ``getpid()`` on every call (CPython
compares it with the process that set the loop, to notice a fork). The publish
path asked for the loop three times per publish (the memory broker's future, the
room's flush, the connection's next receive): three of the nine system calls a
publish to a one-subscriber room made (strace), for no purpose. Objects that live
on one loop keep it while they are started and get it here.
"""

from __future__ import annotations

import asyncio

__all__ = ["loop_of"]


def loop_of(kept: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    """``kept`` while it runs (it was the running loop when its owner started);
    otherwise the running loop, asked for (RuntimeError when there is none).
    Never a loop that has stopped or closed since."""
    if kept is not None and kept.is_running():
        return kept
    return asyncio.get_running_loop()
