"""The gateway's database work off the event loop: a bounded pool of threads, and group commit.

Channels' `database_sync_to_async` runs every call of a process on one shared thread, so every charger
of the process waited for one database connection (measured: 2,000 chargers arriving at 200/s, 397
handshakes timed out, BootNotification p50 15.5 s). Here:

- `db_work(fn)` runs `fn` on a pool of `conf.db_workers()` threads, sized to the database connection pool
  (DB_POOL_MAX_SIZE less a reserve for the process's other users, see `conf.db_workers`), each call one
  unit of work that returns its connection afterwards (`close_old_connections` before and after, as
  `database_sync_to_async` does). Order per charger still holds: a connection handles its charger's
  requests one at a time (connection.py awaits each before taking the next).
- `db_batched(fn)` is for the data-carrying messages (BootNotification, StatusNotification, MeterValues):
  up to `conf.group_commit_in_flight()` transactions at once, each on a database thread; the calls that
  queue while they are all busy (up to `conf.group_commit_max()` a batch, shared among the threads
  that come free) run in one transaction, one commit for many messages, and each caller gets its result
  only once that commit is done (durable). Light traffic thus waits for nothing and runs in parallel;
  under load the batches grow by themselves (an extra wait, `conf.group_commit_window_s()`, is off by
  default: on this machine's fast fsync it cost more in parallelism than it saved in commits).
  Each call runs in its own savepoint, so a message that fails rolls back alone and the others commit;
  its caller gets the exception as before (the handler answers an error and keeps the message for
  replay). A call that failed on a database error (a deadlock, a lost lock) and a whole batch whose
  transaction could not commit are run again one by one, exactly as without group commit (the services
  are idempotent on natural keys). The `on_commit` hooks a call registers run after the commit and
  belong to that call: one that raises fails its own call only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import SyncToAsync
from django.db import DatabaseError, close_old_connections, connection, transaction

from apps.ocpp_gateway import conf

logger = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def executor() -> ThreadPoolExecutor:
    """The process's pool of database threads (created on first use, sized by `conf.db_workers()`)."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=conf.db_workers(), thread_name_prefix="ocpp-db")
    return _executor


class _UnitOfWork(SyncToAsync):
    """`sync_to_async` on the database pool, each call one unit of work: the thread's connection is
    checked before (a broken or expired one is dropped) and given back to the connection pool after."""

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            close_old_connections()


def db_work(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`fn` as a coroutine function run on the gateway's database pool (see the module)."""
    return _UnitOfWork(fn, thread_sensitive=False, executor=executor())  # type: ignore[return-value]


# --- group commit ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    call: Callable[[], Any]
    future: asyncio.Future
    ok: bool = False
    value: Any = None
    error: BaseException | None = None
    hooks: list[Any] = field(default_factory=list)


def _run_alone(item: _Item) -> None:
    """One call run as `db_work` runs it, outside any transaction of ours (the service owns its own, and
    Django runs its hooks on that commit): exactly as without group commit."""
    try:
        item.value = item.call()
        item.ok, item.error = True, None
    except Exception as exc:
        item.ok, item.error = False, exc


def _run_batch(items: list[_Item]) -> None:
    """Runs in a database thread: the batch in one transaction, each call in a savepoint (see the module)."""
    committed = False
    again: list[_Item] = []
    try:
        with transaction.atomic():
            for item in items:
                before = len(connection.run_on_commit)
                try:
                    with transaction.atomic():
                        item.value = item.call()
                    item.ok = True
                    # The hooks this call registered (a rolled-back savepoint removes its own hooks, so
                    # the ones appended since `before` are exactly this call's).
                    item.hooks = connection.run_on_commit[before:]
                except DatabaseError as exc:
                    item.error = exc
                    again.append(item)
                except Exception as exc:
                    item.error = exc
            # Taken over so that a raising hook fails its own call, not the hooks of the calls after it.
            connection.run_on_commit = []
        committed = True
    except Exception:
        logger.warning(
            "group commit of %d message(s) failed; running them one by one", len(items), exc_info=True
        )
    if not committed:
        connection.close_if_unusable_or_obsolete()
        for item in items:
            _run_alone(item)
        return
    for item in items:
        for _savepoints, hook, robust in item.hooks:
            try:
                hook()
            except Exception as exc:
                if robust:
                    logger.exception("on_commit hook %r failed", hook)
                else:
                    item.ok, item.error = False, exc
                    break
        item.hooks = []
    if again:
        connection.close_if_unusable_or_obsolete()
        for item in again:
            _run_alone(item)


def _run_batch_unit(items: list[_Item]) -> None:
    close_old_connections()
    try:
        _run_batch(items)
    finally:
        close_old_connections()


class GroupCommit:
    """Calls gathered into batches committed together (one per event loop; see the module)."""

    def __init__(self, *, window_s: float, max_batch: int, max_in_flight: int) -> None:
        self.window_s = window_s
        self.max_batch = max(1, max_batch)
        self._slots = asyncio.Semaphore(max(1, max_in_flight))
        self._free = max(1, max_in_flight)  # slots not taken (the semaphore's count, readable)
        self._pending: deque[tuple[float, _Item]] = deque()
        self._runner: asyncio.Task | None = None
        self._flushes: set[asyncio.Task] = set()
        self.batches = 0  # how many batches were committed (for tests and the benchmark's report)

    def submit(self, call: Callable[[], Any]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        item = _Item(call=call, future=loop.create_future())
        self._pending.append((loop.time(), item))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        return item.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._pending[0][0] + self.window_s - loop.time()
            if wait > 0 and len(self._pending) < self.max_batch:
                await asyncio.sleep(wait)  # gather the batch (a window of a few milliseconds, if set)
            await self._slots.acquire()
            # What queued while the slots were busy, shared among the slots free now (this one included):
            # light traffic goes at once, one message a transaction, on parallel threads; under load the
            # batches grow by themselves.
            share = -(-len(self._pending) // self._free)
            self._free -= 1
            batch = [self._pending.popleft()[1] for _ in range(min(self.max_batch, share))]
            if not batch:
                self._free += 1
                self._slots.release()
                continue
            flush = loop.create_task(self._flush(batch))
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[_Item]) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(executor(), _run_batch_unit, batch)
        except BaseException as exc:  # the thread itself failed: every caller learns it
            for item in batch:
                item.ok, item.error = False, exc
        finally:
            self._free += 1
            self._slots.release()
        self.batches += 1
        for item in batch:
            if item.future.done():  # the caller was cancelled (its connection closed)
                continue
            if item.ok:
                item.future.set_result(item.value)
            else:
                item.future.set_exception(item.error or RuntimeError("group commit failed"))


_COMMITTERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommit] = weakref.WeakKeyDictionary()


def group_commit() -> GroupCommit:
    """This event loop's group committer."""
    loop = asyncio.get_running_loop()
    committer = _COMMITTERS.get(loop)
    if committer is None:
        committer = _COMMITTERS[loop] = GroupCommit(
            window_s=conf.group_commit_window_s(),
            max_batch=conf.group_commit_max(),
            max_in_flight=conf.group_commit_in_flight(),
        )
    return committer


def db_batched(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`fn` as a coroutine function whose call joins the next group commit (see the module). `fn` must
    be a service that owns its writes (it runs inside the batch's transaction, in its own savepoint).
    With batches of one (CPO_OCPP_GROUP_COMMIT_MAX=1), each call is its own unit of work (`db_work`)."""

    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if conf.group_commit_max() <= 1:
            return await db_work(fn)(*args, **kwargs)
        return await group_commit().submit(partial(fn, *args, **kwargs))

    return run
