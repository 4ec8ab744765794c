"""Garbage-collector settings for the standalone server.

Python's cyclic collector pauses the event loop while it walks the tracked objects
of a generation; with thousands of connections, a full collection walks every
object each one holds, and every message waits for it. roomcast keeps its hot path
free of reference cycles, so two settings take most of those pauses away:

* ``gc_freeze``: once start-up is done, ``gc.freeze()`` moves everything
  allocated so far (modules, the app, settings, the broker) to the permanent
  generation, which no collection walks again;
* ``gc_threshold``: allocations of container objects between two young
  collections (Python's default is 700); older generations are collected
  proportionally less often, so a larger value means fewer and rarer pauses.

Only :func:`roomcast.app.create_app` applies them: an application that mounts
roomcast's router keeps its own collector settings.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["tune_gc"]

log = logging.getLogger("roomcast.gc")


def tune_gc(freeze: bool, threshold: int) -> None:
    """Apply the settings above (``threshold`` 0 keeps Python's)."""
    if threshold:
        _, second, third = gc.get_threshold()
        gc.set_threshold(threshold, second, third)
    if freeze:
        gc.collect()
        gc.freeze()
    log.debug("gc: thresholds %s, %d objects frozen", gc.get_threshold(), gc.get_freeze_count())
