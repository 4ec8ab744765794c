"""A :class:`~roomcast.hub.subscriber.DirectWrite` for tests: keeps what it is
given, plays flow control with :attr:`writable` (also from inside ``write``, as
uvloop's transport pauses), and raises on demand."""

from __future__ import annotations

from collections.abc import Callable

from roomcast.hub.subscriber import Subscriber
from roomcast.protocol.wsframe import text_frame


class DirectRecorder:
    def __init__(self, *, writable: bool = True) -> None:
        self.writes: list[bytes] = []
        self.fail = False  # the next write raises, as a transport refusing it would
        self.pause_on_write = False  # the next write takes it past its high-water mark
        self._writable = writable
        self._changed: Callable[[], object] | None = None

    @property
    def transport(self) -> DirectRecorder:
        return self

    def write(self, data: bytes) -> None:
        if self.fail:
            self.fail = False
            raise OSError("injected: the transport refused the write")
        self.writes.append(data)
        if self.pause_on_write:
            self.pause_on_write = False
            self.writable = False

    def ready(self) -> bool:
        return self._writable

    def encode(self, text: str) -> bytes:
        return text_frame(text.encode())

    def watch(self, changed: Callable[[], object] | None) -> None:
        self._changed = changed

    @property
    def writable(self) -> bool:
        return self._writable

    @writable.setter
    def writable(self, value: bool) -> None:
        """Pause or resume, telling the subscriber as a transport does."""
        self._writable = value
        if self._changed is not None:
            self._changed()


def direct_subscriber(
    name: str = "c", *, max_messages: int = 100, writable: bool = True, sse: bool = False
) -> tuple[Subscriber, DirectRecorder]:
    sub = Subscriber(name, "u", max_messages=max_messages, max_bytes=1 << 20, sse=sse)
    recorder = DirectRecorder(writable=writable)
    sub.attach(recorder)
    return sub, recorder
