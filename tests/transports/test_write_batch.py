"""The WebSocket writer's direct writes carry at most ``ws_write_batch`` frames."""

from __future__ import annotations

from typing import Any

from roomcast.protocol.codes import CloseCode
from roomcast.protocol.wsframe import text_frame
from roomcast.settings import Settings
from roomcast.transports import websocket

from ..direct_recorder import direct_subscriber


async def test_queued_frames_go_out_in_writes_of_at_most_ws_write_batch_frames() -> None:
    batch = Settings(ws_write_batch=3).ws_write_batch
    sub, recorder = direct_subscriber(writable=False)  # paused: frames queue
    frames = [f'{{"n":{n}}}' for n in range(10)]
    for frame in frames:
        sub.offer(frame)
    recorder.writable = True
    sub.close(CloseCode.SHUTDOWN)  # the writer sends what is queued, then ends
    ws: Any = None  # never used: every frame goes out through the direct writes
    await websocket._write(ws, sub, batch)
    wire = [text_frame(f.encode()) for f in frames]
    assert recorder.writes == [b"".join(wire[i : i + 3]) for i in range(0, 10, 3)]
