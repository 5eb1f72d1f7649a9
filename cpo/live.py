"""Sending to the channel layer from sync code (services, Celery tasks, the shell).

`async_to_sync(layer.send)` builds a new event loop and Redis connection on every call in a process
without a running loop (3.8 ms against 0.6 ms measured for commands). `LayerSender` keeps one
long-lived loop per process in a daemon thread and hands coroutines to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


class LayerSender:
    """Thread-safe; survives fork (a child process starts its own loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            if self._loop is None or self._pid != os.getpid() or not alive:
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop.run_forever, name="channel-layer-sender",
                                                daemon=True)
                self._thread.start()
            return self._loop

    def send(self, channel: str, message: dict[str, Any], timeout_s: float = 5.0, *, layer: Any = None) -> None:
        """Deliver to one channel; raises when the layer does not take it within `timeout_s`."""
        layer = layer or get_channel_layer()
        future = asyncio.run_coroutine_threadsafe(layer.send(channel, message), self._ensure_loop())
        future.result(timeout=timeout_s)

    def group_send(self, group: str, message: dict[str, Any], timeout_s: float = 5.0) -> None:
        future = asyncio.run_coroutine_threadsafe(get_channel_layer().group_send(group, message),
                                                  self._ensure_loop())
        future.result(timeout=timeout_s)


layer_sender = LayerSender()


def publish(group: str, message: dict[str, Any]) -> None:
    """Best effort: tell a live view's group that something changed. A live view re-reads the state it
    shows, so a lost message only delays it until its next poll; a failure is logged, never raised."""
    try:
        layer_sender.group_send(group, message)
    except Exception:
        logger.warning("could not publish to %s", group, exc_info=True)
