"""Tables partitioned by month (PostgreSQL declarative RANGE partitioning), with retention by dropping
whole partitions.

A table that grows with the fleet and is read by time (the OCPP message log, meter samples) is kept as
one partition per calendar month (UTC) of its partition column, named `<table>_pYYYYMM`, plus a DEFAULT
partition `<table>_default` that catches every row no month partition takes (a charger whose clock says
1970, or a month nobody created a partition for yet). Expired data goes by `DROP TABLE` of a month, not
by deleting rows: no dead tuples, no vacuum debt, no long transaction.

An app declares its table with `register(PartitionedTable(...))` in its `AppConfig.ready()`; the hourly
task `cpo.partitions_maintain` (and `manage.py partitions --maintain`) then, for every registered table:

- creates the partitions of the current month and the next `ahead_months` (a month whose rows already
  went to DEFAULT has them moved into its new partition: PostgreSQL refuses to create a partition while
  DEFAULT holds rows of its range);
- when the table has a retention, drops the month partitions that end before `now - retention` (rows
  are kept at least the retention, at most a month longer) and deletes from DEFAULT the rows older than
  that (only the strays: DEFAULT holds almost nothing when maintenance runs).

The primary key of a partitioned table must include the partition column: the database's key is
(id, column) while Django's model state keeps `id` as the primary key (`id` stays unique: it comes from
one identity sequence). Every unique constraint must include the partition column too. Tables are turned
into partitioned tables (and back) by `partitioned_table_create` / `partitioned_table_revert`, used by
migrations in `RunPython`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import OperationalError, connection, transaction

from cpo import clock

logger = logging.getLogger(__name__)
_BOUND_RE = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True, slots=True)
class PartitionedTable:
    """A table partitioned by month on `column`. `retention_days` is read at each maintenance run
    (settings may change): None or 0 keeps everything."""

    table: str
    column: str
    retention_days: Callable[[], int | None]
    ahead_months: int = 2


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    start: datetime | None  # None for DEFAULT
    end: datetime | None
    rows_estimate: int  # the planner's estimate (pg_class.reltuples), -1 when never analysed

    @property
    def is_default(self) -> bool:
        return self.start is None


@dataclass(slots=True)
class MaintenanceReport:
    table: str
    created: list[str] = field(default_factory=list)
    moved_from_default: int = 0
    dropped: list[str] = field(default_factory=list)
    deleted_from_default: int = 0
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "created": self.created,
            "moved_from_default": self.moved_from_default,
            "dropped": self.dropped,
            "deleted_from_default": self.deleted_from_default,
            "error": self.error,
        }


_registry: dict[str, PartitionedTable] = {}


def register(spec: PartitionedTable) -> PartitionedTable:
    """Declare a monthly partitioned table (once per table; registering it again replaces it)."""
    _registry[spec.table] = spec
    return spec


def registered() -> list[PartitionedTable]:
    return [_registry[name] for name in sorted(_registry)]


def registered_table(table: str) -> PartitionedTable:
    """The registered table named `table`; LookupError naming the registered ones otherwise."""
    try:
        return _registry[table]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none"
        raise LookupError(f"{table!r} is not a partitioned table (registered: {known})") from None


# --- months -----------------------------------------------------------------------------------------


def month_start(value: datetime) -> datetime:
    """The first instant (UTC) of the month `value` falls in."""
    value = clock.ensure_aware_utc(value)
    return value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_add(start: datetime, months: int) -> datetime:
    index = start.year * 12 + start.month - 1 + months
    return start.replace(year=index // 12, month=index % 12 + 1, day=1)


def partition_name(table: str, month: datetime) -> str:
    return f"{table}_p{month:%Y%m}"


def default_partition_name(table: str) -> str:
    return f"{table}_default"


def _q(name: str) -> str:
    """A quoted identifier. Every name in this module's SQL (the `noqa: S608` lines) comes from a table
    registered in code or from the catalogue, quoted here; values are always bound parameters."""
    return connection.ops.quote_name(name)


def _parse_bound(text: str) -> datetime:
    return clock.ensure_aware_utc(datetime.fromisoformat(text))


# --- reading the catalogue --------------------------------------------------------------------------


def is_partitioned(table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    return bool(row) and row[0] == "p"


def partitions_list(table: str) -> list[Partition]:
    """The partitions of `table`, month partitions in time order, DEFAULT last. The bounds are read in
    UTC whatever the session's time zone."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'UTC'")
        cursor.execute(
            """
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples::bigint
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = to_regclass(%s)
            """,
            [table],
        )
        rows = cursor.fetchall()
    partitions = []
    for name, bound, reltuples in rows:
        if bound == "DEFAULT":
            partitions.append(Partition(name=name, start=None, end=None, rows_estimate=reltuples))
            continue
        match = _BOUND_RE.search(bound)
        if match is None:  # not one of ours (MINVALUE/MAXVALUE...): show it, never touch it
            continue
        partitions.append(
            Partition(
                name=name,
                start=_parse_bound(match.group(1)),
                end=_parse_bound(match.group(2)),
                rows_estimate=reltuples,
            )
        )
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(partitions, key=lambda p: (p.start is None, p.start or far))


# --- changing partitions ----------------------------------------------------------------------------


# Creating or dropping a partition locks the parent table; behind a long query it would make every writer
# queue behind it. Rather give up (the next hourly run tries again: months are created two ahead).
LOCK_TIMEOUT = "5s"


def _lock(table: str) -> None:
    """One maintenance at a time per table (beat and an operator's `manage.py partitions --maintain`);
    the transaction's DDL waits at most LOCK_TIMEOUT for its table locks."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"cpo.partitions:{table}"])
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")


def _lock_parent_first(cursor: Any, table: str) -> None:
    """Take the parent's lock before any partition's. Creating, attaching or dropping a partition needs
    it anyway; taken later, after DEFAULT's, a writer holding the parent and routing a row into DEFAULT
    would deadlock with us."""
    cursor.execute(f"LOCK TABLE {_q(table)} IN ACCESS EXCLUSIVE MODE")


@transaction.atomic
def partition_month_ensure(*, table: str, column: str, month: datetime) -> tuple[str | None, int]:
    """Make sure the month starting at `month` (UTC) has its partition. Returns (name of the partition
    created or None when it existed, rows moved into it from DEFAULT).

    Rows of that month already in DEFAULT are moved in the same transaction: the new month is built as
    a plain table, filled with the rows deleted from DEFAULT, then attached (PostgreSQL checks the
    bounds against the rows and DEFAULT against the new bounds)."""
    start = month_start(month)
    end = month_add(start, 1)
    _lock(table)
    for existing in partitions_list(table):
        if existing.start is not None and existing.start < end and start < (existing.end or end):
            return None, 0
    name = partition_name(table, start)
    default = default_partition_name(table)
    bounds = "FOR VALUES FROM (%s) TO (%s)"
    with connection.cursor() as cursor:
        _lock_parent_first(cursor, table)
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {_q(default)} WHERE {_q(column)} >= %s AND {_q(column)} < %s)",  # noqa: S608
            [start, end],
        )
        has_strays = cursor.fetchone()[0]
        if not has_strays:
            cursor.execute(f"CREATE TABLE {_q(name)} PARTITION OF {_q(table)} {bounds}", [start, end])
            return name, 0
        # LIKE copies the columns, their defaults and CHECK constraints; ATTACH creates the partitioned
        # indexes and foreign keys on it.
        cursor.execute(f"CREATE TABLE {_q(name)} (LIKE {_q(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            [table],
        )
        columns = ", ".join(_q(row[0]) for row in cursor.fetchall())
        cursor.execute(
            f"WITH moved AS (DELETE FROM {_q(default)} WHERE {_q(column)} >= %s AND {_q(column)} < %s"  # noqa: S608
            f" RETURNING {columns}) INSERT INTO {_q(name)} ({columns}) SELECT {columns} FROM moved",
            [start, end],
        )
        moved = cursor.rowcount
        cursor.execute(f"ALTER TABLE {_q(table)} ATTACH PARTITION {_q(name)} {bounds}", [start, end])
    return name, moved


@transaction.atomic
def partitions_drop_before(*, table: str, column: str, cutoff: datetime) -> tuple[list[str], int]:
    """Drop the month partitions that end at or before `cutoff`, and delete the DEFAULT partition's rows
    older than it. Returns (dropped partition names, rows deleted from DEFAULT). Never touches a month
    that has any part after `cutoff`."""
    cutoff = clock.ensure_aware_utc(cutoff)
    _lock(table)
    dropped: list[str] = []
    with connection.cursor() as cursor:
        for partition in partitions_list(table):
            if partition.end is not None and partition.end <= cutoff:
                if not dropped:
                    _lock_parent_first(cursor, table)
                cursor.execute(f"DROP TABLE {_q(partition.name)}")
                dropped.append(partition.name)
        default = default_partition_name(table)
        cursor.execute(f"DELETE FROM {_q(default)} WHERE {_q(column)} < %s", [cutoff])  # noqa: S608
        deleted = cursor.rowcount
    return dropped, deleted


def partitions_maintain(*, spec: PartitionedTable, now: datetime | None = None) -> MaintenanceReport:
    """Create this month's and the next months' partitions, then apply the retention (see the module).
    Idempotent; each step is its own short transaction."""
    now = clock.ensure_aware_utc(now or clock.now())
    report = MaintenanceReport(table=spec.table)
    current = month_start(now)
    for offset in range(spec.ahead_months + 1):
        created, moved = partition_month_ensure(
            table=spec.table, column=spec.column, month=month_add(current, offset)
        )
        if created:
            report.created.append(created)
        report.moved_from_default += moved
    days = retention_days_checked(spec)
    if days:
        report.dropped, report.deleted_from_default = partitions_drop_before(
            table=spec.table, column=spec.column, cutoff=now - timedelta(days=days)
        )
    return report


def retention_days_checked(spec: PartitionedTable) -> int | None:
    """The table's retention in days (None or 0: keep everything); ValueError for a negative one."""
    days = spec.retention_days()
    if days is not None and days < 0:
        raise ValueError(
            f"{spec.table}: retention must be 0 (keep everything) or a number of days, not {days}"
        )
    return days or None


def partitions_maintain_all(*, now: datetime | None = None) -> list[MaintenanceReport]:
    """Maintain every registered table; one that cannot be maintained now (its lock not had within
    LOCK_TIMEOUT) is reported with its error and does not stop the others."""
    reports = []
    for spec in registered():
        try:
            reports.append(partitions_maintain(spec=spec, now=now))
        except OperationalError as exc:
            logger.warning("partitions: %s not maintained this time: %s", spec.table, exc)
            reports.append(MaintenanceReport(table=spec.table, error=str(exc).strip()))
    return reports


# --- migrations -------------------------------------------------------------------------------------


def _constraints(cursor: Any, table: str) -> list[tuple[str, str, str]]:
    """(name, type, definition) of the table's primary key, unique and foreign key constraints."""
    cursor.execute(
        """
        SELECT conname, contype, pg_get_constraintdef(oid)
          FROM pg_constraint
         WHERE conrelid = to_regclass(%s) AND contype IN ('p', 'u', 'f')
         ORDER BY contype, conname
        """,
        [table],
    )
    return cursor.fetchall()


def _plain_indexes(cursor: Any, table: str) -> list[str]:
    """CREATE INDEX statements of the indexes that do not belong to a constraint."""
    cursor.execute(
        """
        SELECT pg_get_indexdef(i.indexrelid)
          FROM pg_index i
         WHERE i.indrelid = to_regclass(%s)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
         ORDER BY 1
        """,
        [table],
    )
    return [row[0] for row in cursor.fetchall()]


def _rebuild(
    schema_editor: Any,
    *,
    table: str,
    partition_by: str | None,
    primary_key: list[str],
    months: Callable[[Any, str], Iterable[datetime]],
) -> None:
    """Rebuild `table` under the same name, indexes and constraints: partitioned by month on
    `partition_by` (months from `months(cursor, old table)`), or plain when `partition_by` is None.
    Rows and the identity sequence's position are carried over."""
    old = f"{table}__old"
    with schema_editor.connection.cursor() as cursor:
        constraints = _constraints(cursor, table)
        indexes = _plain_indexes(cursor, table)
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        old_sequence = cursor.fetchone()[0]
        cursor.execute(f"ALTER TABLE {_q(table)} RENAME TO {_q(old)}")
        # Free the names the new table's own objects are created under.
        cursor.execute(f"ALTER SEQUENCE {old_sequence} RENAME TO {_q(old + '_id_seq')}")
        for name, _kind, _definition in constraints:
            cursor.execute(f"ALTER TABLE {_q(old)} DROP CONSTRAINT {_q(name)}")
        for definition in indexes:
            index = definition.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
            cursor.execute(f"DROP INDEX {index}")
        partitioning = f" PARTITION BY RANGE ({_q(partition_by)})" if partition_by else ""
        cursor.execute(
            f"CREATE TABLE {_q(table)} (LIKE {_q(old)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
            f" INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS){partitioning}"
        )
        if partition_by:
            cursor.execute(
                f"CREATE TABLE {_q(default_partition_name(table))} PARTITION OF {_q(table)} DEFAULT"
            )
            for month in sorted(set(months(cursor, old))):
                start = month_start(month)
                cursor.execute(
                    f"CREATE TABLE {_q(partition_name(table, start))} PARTITION OF {_q(table)}"
                    " FOR VALUES FROM (%s) TO (%s)",
                    [start, month_add(start, 1)],
                )
        cursor.execute(f"INSERT INTO {_q(table)} OVERRIDING SYSTEM VALUE SELECT * FROM {_q(old)}")  # noqa: S608
        cursor.execute(f"DROP TABLE {_q(old)}")
        cursor.execute(f"SELECT COALESCE(max(id), 0) + 1 FROM {_q(table)}")  # noqa: S608
        next_id = cursor.fetchone()[0]
        cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, false)", [table, next_id])
        cursor.execute(
            f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(table + '_pkey')}"
            f" PRIMARY KEY ({', '.join(_q(c) for c in primary_key)})"
        )
        for name, kind, definition in constraints:
            if kind == "p":
                continue
            cursor.execute(f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(name)} {definition}")
        for definition in indexes:
            cursor.execute(definition)


def months_with_rows(column: str, *, ahead_months: int = 2) -> Callable[[Any, str], list[datetime]]:
    """For a migration: the months that get a partition when a table is converted (see
    `partitioned_table_create`)."""

    def months(cursor: Any, old: str) -> list[datetime]:
        now = month_start(clock.now())
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', {_q(column)} AT TIME ZONE 'UTC') FROM {_q(old)}"  # noqa: S608
            f" WHERE {_q(column)} >= %s AND {_q(column)} < %s",
            [month_add(now, -24), month_add(now, ahead_months + 1)],
        )
        found = [row[0].replace(tzinfo=UTC) for row in cursor.fetchall()]
        return found + [month_add(now, offset) for offset in range(ahead_months + 1)]

    return months


def partitioned_table_create(schema_editor: Any, *, table: str, column: str, ahead_months: int = 2) -> None:
    """Turn the plain `table` into one partitioned by month on `column` (a migration's RunPython).

    Partitions are created for the current month, the next `ahead_months`, and every month of the last
    two years that holds rows; older or later rows (wrong charger clocks) go to DEFAULT. The database's
    primary key becomes (id, column); every unique constraint must already include `column`."""
    _rebuild(
        schema_editor,
        table=table,
        partition_by=column,
        primary_key=["id", column],
        months=months_with_rows(column, ahead_months=ahead_months),
    )


def partitioned_table_revert(schema_editor: Any, *, table: str) -> None:
    """Turn the partitioned `table` back into a plain table with `id` as its primary key."""
    _rebuild(schema_editor, table=table, partition_by=None, primary_key=["id"], months=lambda c, o: [])
