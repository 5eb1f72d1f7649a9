"""Django's ASGI handler with the threads of its requests' synchronous code reused.

Django runs each request in its own thread-sensitive context (asgiref `ThreadSensitiveContext`): the
first synchronous call of a request (a `request_started` receiver, a synchronous middleware, a sync view)
starts a new thread, and leaving the context starts one more thread that joins the first. Both threads
are started on the event loop, and `Thread.start` blocks its caller until the new thread runs: with
2,000 live streams open (2,000 more threads in the process) the event loop stood in `Thread.start` for
50-380 ms at a time, the most common stall of the loop while the driver API was probed (benchmarks,
live phase; a watchdog sampled the loop's stack whenever it answered late).

Here a request runs in a context on an executor of one thread taken from a pool of idle ones and given
back when the request ends (its thread-sensitive calls are all done by then): one request at a time per
thread as before, no thread started or joined on the loop in the steady state. A request that finds no
idle executor gets a new one; beyond `max_idle` idle ones, a returned executor is shut down without
waiting (its thread is idle and ends by itself). Requests that hold their executor for long (live
streams) keep their thread, as they did.
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler


class ExecutorPool:
    """Idle single-thread executors, reused last in, first out (the warmest thread first)."""

    def __init__(self, max_idle: int = 64) -> None:
        self.max_idle = max_idle
        self._idle: collections.deque[ThreadPoolExecutor] = collections.deque()
        self.created = 0

    def take(self) -> ThreadPoolExecutor:
        try:
            return self._idle.pop()
        except IndexError:
            self.created += 1
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)

    def idle(self) -> int:
        return len(self._idle)


class ReusedThreadsASGIHandler(ASGIHandler):
    """`ASGIHandler` whose requests run their synchronous code on reused threads (see the module)."""

    def __init__(self, *, max_idle: int = 64) -> None:
        super().__init__()
        self.executors = ExecutorPool(max_idle)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.executors.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.executors.give_back(executor)
