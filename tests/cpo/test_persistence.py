"""cpo.persistence: ids taken ahead in blocks, and several rows inserted in one statement."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import AuditRecord
from apps.accounts.services import audit_record_build
from apps.ocpp_gateway.models import OcppCommand
from cpo import clock
from cpo.persistence import IdBlock, objects_insert_together
from tests.factories import ChargePointFactory


def _command(cp, pk: int | None, unique_id: str) -> OcppCommand:
    now = clock.now()
    return OcppCommand(
        pk=pk,
        charge_point=cp,
        action="ClearCache",
        payload={},
        unique_id=unique_id,
        created_at=now,
        deadline=now,
    )


def test_an_id_block_reserves_from_the_sequence_once_per_block(db):
    block = IdBlock(OcppCommand, size=5)
    with CaptureQueriesContext(connection) as queries:
        ids = [block.take() for _ in range(12)]
    assert len(queries.captured_queries) == 3  # 5 + 5 + 2
    assert ids == sorted(ids) and len(set(ids)) == 12
    # the sequence itself moved past them: a row inserted the ordinary way never collides
    cp = ChargePointFactory()
    other = OcppCommand.objects.create(
        charge_point=cp,
        action="ClearCache",
        payload={},
        unique_id="u-plain",
        created_at=clock.now(),
        deadline=clock.now(),
    )
    assert other.pk > max(ids)


def test_an_id_block_is_safe_across_threads(transactional_db):
    block = IdBlock(OcppCommand, size=7)

    def take(_n: int) -> list[int]:
        try:
            return [block.take() for _ in range(20)]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        taken = [i for ids in pool.map(take, range(6)) for i in ids]
    assert len(taken) == 120 and len(set(taken)) == 120


def test_a_forked_child_never_reuses_its_parents_block(db, monkeypatch):
    import os

    block = IdBlock(OcppCommand, size=10)
    first = block.take()
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as seen from a child after fork
    assert block.take() >= first + 10


def test_rows_inserted_together_take_one_statement(db):
    cp = ChargePointFactory()
    pk = IdBlock(OcppCommand).take()
    command = _command(cp, pk, "u-together")
    audit = audit_record_build(actor=None, action="ocpp.ClearCache", target=cp, detail={"command_id": pk})
    with CaptureQueriesContext(connection) as queries:
        objects_insert_together(command, audit)
    assert len(queries.captured_queries) == 1
    stored = OcppCommand.objects.get(pk=pk)
    assert stored.unique_id == "u-together" and stored.payload == {} and stored.charge_point_id == cp.pk
    record = AuditRecord.objects.get(detail__command_id=pk)
    assert record.target_id == str(cp.pk) and record.actor_repr == "system"
    assert command._state.adding is False and audit.pk is None  # the audit row took its id from its default


def test_rows_inserted_together_fail_together(db):
    cp = ChargePointFactory()
    block = IdBlock(OcppCommand)
    existing = _command(cp, block.take(), "u-taken")
    objects_insert_together(existing)
    audit = audit_record_build(actor=None, action="ocpp.ClearCache", target=cp, detail={"marker": "lost"})
    clash = _command(cp, block.take(), "u-taken")  # the unique message id is taken
    with pytest.raises(IntegrityError), transaction.atomic():
        objects_insert_together(audit, clash)
    assert not AuditRecord.objects.filter(detail__marker="lost").exists()
    assert OcppCommand.objects.filter(unique_id="u-taken").count() == 1
