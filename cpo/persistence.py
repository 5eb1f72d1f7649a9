"""Saving a model instance with every rule checked, turning Django's errors into ApplicationErrors."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, models, transaction
from django.db.models.sql import InsertQuery
from django.utils.translation import gettext as _

from cpo.exceptions import Conflict, ValidationFailed, validation_error_fields


def validated_save(instance: models.Model, *, exclude: Iterable[str] | None = None) -> models.Model:
    """full_clean() then save(). ValidationFailed lists the fields; a uniqueness race lost at the
    database (IntegrityError) becomes Conflict with the constraint's own message."""
    try:
        instance.full_clean(exclude=list(exclude) if exclude else None)
    except ValidationError as exc:
        fields = validation_error_fields(exc)
        first = next(iter(m for messages in fields.values() for m in messages), _("The input is invalid."))
        raise ValidationFailed(first, fields=fields) from exc
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        raise Conflict(_constraint_message(instance, exc)) from exc
    return instance


def _constraint_message(instance: models.Model, exc: IntegrityError) -> str:
    text = str(exc)
    for constraint in instance._meta.constraints:
        if constraint.name in text and getattr(constraint, "violation_error_message", None):
            return str(constraint.violation_error_message)
    return _("This conflicts with an existing record.")


class IdBlock:
    """Primary keys for new rows of `model`, taken from its own sequence `size` at a time: a hot path that
    needs a row's id before inserting it (to write related rows in the same statement, or to put the id
    in a message) pays one round trip per block instead of one per row. Thread-safe; a forked child
    never reuses its parent's block. Ids stay unique and grow within a process, but rows of different
    processes interleave: order such rows by time, never by id."""

    def __init__(self, model: type[models.Model], *, size: int = 50, using: str = "default") -> None:
        self.model, self.size, self.using = model, size, using
        self._lock = threading.Lock()
        self._ids: deque[int] = deque()
        self._pid = 0

    def ensure(self, count: int = 1) -> None:
        """Have at least `count` ids at hand (reserving a block now if fewer are left), so that the next
        `count` takes need no round trip."""
        with self._lock:
            if self._pid != os.getpid():
                self._ids.clear()
                self._pid = os.getpid()
            while len(self._ids) < count:
                self._ids.extend(self._reserve())

    def take(self) -> int:
        with self._lock:
            if self._pid != os.getpid():
                self._ids.clear()
                self._pid = os.getpid()
            if not self._ids:
                self._ids.extend(self._reserve())
            return self._ids.popleft()

    def _reserve(self) -> list[int]:
        meta = self.model._meta
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s) ORDER BY 1",
                [meta.db_table, meta.pk.column, self.size],
            )
            return [int(row[0]) for row in cursor.fetchall()]


def objects_insert_together(*objs: models.Model, using: str = "default") -> None:
    """INSERT unsaved instances in ONE statement (data-modifying CTEs): one round trip, atomic on its own
    and part of the surrounding transaction when there is one. Each instance's primary key must be set
    beforehand (see IdBlock) unless nothing needs it: a row left without one gets its column default and
    its instance keeps pk None. Field defaults and pre_save (auto_now) apply as with save(); model
    save() methods and save signals do not run, so use this only for models that define neither for
    inserts."""
    parts: list[str] = []
    params: list[object] = []
    for n, obj in enumerate(objs):
        meta = obj._meta
        fields = [f for f in meta.local_concrete_fields if not (f.primary_key and obj.pk is None)]
        query = InsertQuery(type(obj))
        query.insert_values(fields, [obj])
        ((sql, values),) = query.get_compiler(using=using).as_sql()
        parts.append(f"i{n} AS ({sql})")
        params.extend(values)
    with connections[using].cursor() as cursor:
        cursor.execute("WITH " + ", ".join(parts) + " SELECT 1", params)
    for obj in objs:
        obj._state.adding, obj._state.db = False, using
