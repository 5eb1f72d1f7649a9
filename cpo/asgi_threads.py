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

And a request crosses from the loop to its thread once, not once per middleware. Django builds an async
middleware chain for ASGI; our middlewares are all synchronous underneath (Django's own run
`process_request` / `process_response` through `sync_to_async`, WhiteNoise is sync only), so each request
went loop -> thread -> loop about twenty times, every crossing queued behind whatever else the loop had
to do. With 2,000 live streams open that queueing doubled the driver API's median. Here the chain is
built synchronous, as under WSGI, and runs whole in the request's thread: the view, its middlewares and
its database work in one place, the loop only parses and sends. Async views (the live stream) still work:
Django runs them on the loop from the chain (`async_to_sync`). Measured on the live phase of `make bench`
(2,000 streams, 25 driver API reads/s): server CPU 0.37 -> 0.25 core idle and 0.42 -> 0.31 with the
streams, API median 29.6 -> 15.1 ms idle and 28.1 -> 16.5 ms with the streams (with
`cpo.runtime.tune_switch_interval`).
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


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
    """`ASGIHandler` whose requests run their synchronous code, the middleware chain included, on reused
    threads (see the module)."""

    def __init__(self, *, max_idle: int = 64) -> None:
        super().__init__()
        self.executors = ExecutorPool(max_idle)
        self.load_middleware(is_async=False)  # the whole chain runs in the request's thread (see the module)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        """The synchronous `get_response` (middlewares, view, logging of errors) in the request's own
        thread, one crossing from the loop and one back."""
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.executors.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.executors.give_back(executor)
