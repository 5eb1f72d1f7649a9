"""cpo.asgi_threads: Django's ASGI handler running requests' synchronous code on reused threads."""

from __future__ import annotations

import asyncio
import threading

import pytest
from channels.testing import ApplicationCommunicator
from django.core.signals import request_started

from cpo.asgi_threads import ExecutorPool, ReusedThreadsASGIHandler


def http_scope(path: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }


async def get(app, path: str) -> int:
    communicator = ApplicationCommunicator(app, http_scope(path))
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    while (await communicator.receive_output(10)).get("more_body"):
        pass
    await communicator.wait(10)
    return start["status"]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_requests_one_after_another_run_their_sync_code_on_the_same_thread():
    app = ReusedThreadsASGIHandler(max_idle=4)
    threads: list[int] = []

    def record(**_kwargs):  # a sync receiver: it runs on the request's thread-sensitive thread
        threads.append(threading.get_ident())

    request_started.connect(record)
    try:
        assert await get(app, "/no-such-page-here") == 404
        assert await get(app, "/no-such-page-here") == 404
    finally:
        request_started.disconnect(record)
    assert len(threads) == 2 and threads[0] == threads[1] != threading.get_ident()
    assert app.executors.created == 1 and app.executors.idle() == 1


def test_beyond_max_idle_a_returned_executor_is_shut_down_without_waiting():
    pool = ExecutorPool(max_idle=1)
    first, second = pool.take(), pool.take()
    assert first is not second and pool.created == 2
    pool.give_back(first)
    pool.give_back(second)
    assert pool.idle() == 1 and pool.take() is first
    assert second._shutdown and not first._shutdown
    first.shutdown()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_request_crosses_from_the_loop_to_its_thread_a_few_times_not_once_per_middleware(monkeypatch):
    """The middleware chain is synchronous and runs whole in the request's thread: the request signal,
    the chain with the view, and closing the response are the only crossings (Django's async chain made
    about twenty: two per middleware)."""
    from asgiref import sync

    app = ReusedThreadsASGIHandler(max_idle=4)
    assert not asyncio.iscoroutinefunction(app._middleware_chain)
    crossings: list[str] = []
    original = sync.SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        crossings.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counted)
    assert await get(app, "/livez") == 200
    assert len(crossings) <= 4, crossings
