"""roomcast bench: the load generator behind ``roomcast bench``.

A client only: it speaks roomcast's wire protocol (docs/protocol.md), and the simpler
contracts of the peer servers it is compared with, and never imports the server's code
beyond :mod:`roomcast.protocol`'s close codes. Five scenarios (``fanout``, ``rooms``,
``connect``, ``idle``, ``sse``) run on worker processes stepped by one coordinator;
every delivery's offset is checked. docs/bench.md is the manual.

Modules, one concept each::

    config        the command line and BenchConfig
    coordinator   worker processes, phases, deadlines, the server's CPU and RSS
    worker        one client process: setup, publish, receive, report
    roles         Subscriber, Publisher and the receive loop
    join          opening and joining connections per protocol
    channel       the Channel interface, ChannelError/ChannelClosed, WsChannel (websockets)
    rawws         RawWsChannel: the lean WebSocket client used by default
    stamped       StampedTransport: reads with the kernel's arrival stamp (--latency-at)
    sse           SseChannel (raw asyncio HTTP) and HttpPublishChannel
    sio           SioChannel (python-socketio, optional)
    frames        frames sent, fast parsing of frames received
    accounting    per-subscriber offsets: lost, duplicated, out of order
    histogram     the log-linear latency histogram
    procfs        RSS and CPU of a process tree (/proc)
    report        results as the JSON document, warnings, exit code
    display       the live progress line and the final table (rich)
    cli           main(): parse, run, print, write JSON
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["main"]


def main(
    argv: Sequence[str] | None = None,
    prog: str = "roomcast bench",
    default_url: Callable[[], str] | None = None,
) -> int:
    """Run ``roomcast bench`` with ``argv`` (without the program name); the exit code.
    ``default_url()`` names the server when ``--url`` does not (``roomcast bench``: the
    local server of ``ROOMCAST_HOST``/``ROOMCAST_PORT``)."""
    from .cli import main as cli_main

    return cli_main(argv, prog, default_url)
