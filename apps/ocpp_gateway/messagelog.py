"""The OCPP message log: every frame in and out, buffered in memory and written in batches.

Writing a row per frame on the request path would cap a process at a few hundred messages a second
(FIELD-NOTES); instead frames are appended to a per-event-loop buffer that a background task flushes
every `FLUSH_EVERY_S` or when `FLUSH_AT` frames are waiting, in a worker thread with its own database
connection. A crash loses at most one interval of log (never protocol data, which is stored before it
is answered).

The table is partitioned by month of `at` (cpo.partitions, migration 0004): frames older than
CPO_OCPP_MESSAGE_LOG_DAYS go a whole month at a time, by the `cpo.partitions_maintain` task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection

from apps.ocpp_gateway import conf
from apps.ocpp_gateway.masking import mask_frame
from apps.ocpp_gateway.models import OcppMessage
from cpo.partitions import PartitionedTable

logger = logging.getLogger(__name__)
FLUSH_EVERY_S = 1.0
FLUSH_AT = 500
MAX_BUFFER = 50_000


@dataclass(slots=True)
class Entry:
    charge_point_id: int | None
    identity: str
    direction: str
    message_type: int | None
    action: str
    unique_id: str
    frame: str
    at: datetime


# Registered in OcppGatewayConfig.ready(); 0 days keeps the log forever.
PARTITIONS = PartitionedTable(
    table=OcppMessage._meta.db_table, column="at", retention_days=conf.message_log_retention_days
)

_COLUMNS = ("charge_point_id", "identity", "direction", "message_type", "action", "unique_id", "frame", "at")


def _write(entries: list[Entry]) -> None:
    """COPY the batch in: a tenth of the interpreter time of bulk_create, which matters because this thread
    shares the GIL with the event loop (measured: bulk_create held it for ~27% of a busy server)."""
    close_old_connections()
    try:
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {OcppMessage._meta.db_table} ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
        ):
            for e in entries:
                copy.write_row(
                    (
                        e.charge_point_id,
                        e.identity[:48],
                        e.direction,
                        e.message_type,
                        e.action[:64],
                        e.unique_id[:64],
                        e.frame.replace("\x00", ""),
                        e.at,
                    )
                )
    finally:
        close_old_connections()


class MessageLog:
    def __init__(self) -> None:
        self.buffer: list[Entry] = []
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.dropped = 0

    def append(self, entry: Entry) -> None:
        if len(self.buffer) >= MAX_BUFFER:
            self.dropped += 1  # the database is not keeping up; protect memory, never the protocol
            return
        self.buffer.append(entry)
        if len(self.buffer) >= FLUSH_AT:
            self.wakeup.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="ocpp-message-log")

    async def flush(self) -> None:
        if not self.buffer:
            return
        entries, self.buffer = self.buffer, []
        try:
            await sync_to_async(_write, thread_sensitive=False)(entries)
        except Exception:
            logger.exception("message log: could not write %d frames", len(entries))
        if self.dropped:
            logger.warning("message log: dropped %d frames while the buffer was full", self.dropped)
            self.dropped = 0

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=FLUSH_EVERY_S)
            self.wakeup.clear()
            await self.flush()
            if not self.buffer:
                await asyncio.sleep(0)


_logs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MessageLog] = weakref.WeakKeyDictionary()


def message_log() -> MessageLog:
    loop = asyncio.get_running_loop()
    log = _logs.get(loop)
    if log is None:
        log = _logs[loop] = MessageLog()
    return log


def record(entry: Entry) -> None:
    """Buffer a frame for the log, charger keys masked first (`masking.mask_frame`): the buffer, the
    table and everyone who reads the log see only the mask."""
    if conf.message_log_enabled():
        entry.frame = mask_frame(entry.frame)
        message_log().append(entry)


async def flush_now() -> None:
    """Write what is buffered (tests, shutdown)."""
    await message_log().flush()
