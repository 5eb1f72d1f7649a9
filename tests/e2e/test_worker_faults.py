"""Fault test: a Celery worker killed (SIGKILL) in the middle of a task. The task (issuing a session's
CDR) is held inside its database work by a row lock the test takes, so the kill lands after the worker
took the message and before it acknowledged it. A second worker must run the task again by itself (the
broker hands an unacknowledged task out again after the visibility timeout) and the effect must happen
once: one CDR, priced as the session says.

Both workers consume a queue of their own, so tasks other tests left in the broker are not theirs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from redis import Redis

from apps.charging.services import session_start, session_stop
from apps.tariffs.models import ChargeDetailRecord
from apps.tariffs.tasks import cdr_issue_task
from cpo import clock
from tests.e2e.conftest import REPO, _server_env
from tests.factories import (
    ChargePointFactory,
    ConnectorFactory,
    EvseFactory,
    IdTokenFactory,
    LocationFactory,
    OrganisationFactory,
    TariffAssignmentFactory,
    TariffElementFactory,
    TariffFactory,
)
from tests.processes import tail

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The broker gives an unacknowledged task to another worker this long after it was handed out; workers
# look for such tasks every second (settings: CPO_CELERY_VISIBILITY_TIMEOUT_S, _RESTORE_INTERVAL_S).
VISIBILITY_S = 3
BOUND_S = 60


def _wait(condition, what: str, timeout: float = BOUND_S, on_fail=lambda: ""):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f} s: {what}\n{on_fail()}")


class Worker:
    def __init__(self, name: str, queue: str, log_dir: Path) -> None:
        self.log_path = log_dir / f"worker-{name}.log"
        env = {
            **_server_env(log_dir),
            "CPO_CELERY_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
            "CPO_CELERY_RESTORE_INTERVAL_S": "1",
        }
        command = [
            str(Path(sys.executable).with_name("celery")),
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "--queues",
            queue,
            "--hostname",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "info",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def workers(tmp_path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def _lock_waiters(dbname: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
            "AND query ILIKE %s",
            [dbname, 'SELECT "charging_chargingsession".%'],
        )
        return int(cursor.fetchone()[0])


def _activity(dbname: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 300) FROM pg_stat_activity "
            "WHERE datname = %s",
            [dbname],
        )
        return "\n".join(repr(row) for row in cursor.fetchall())


def _completed_session():  # type: ignore[no-untyped-def]
    org = OrganisationFactory(slug="worker-fault")
    cp = ChargePointFactory(
        organisation=org,
        identity="CP-WORKER-FAULT",
        location=LocationFactory(organisation=org, name="Depot", country="DE"),
    )
    ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=1))
    tariff = TariffFactory(organisation=org, name="Standard")
    TariffElementFactory(tariff=tariff, position=0, energy_price=D("0.40"), flat_price=D("1.00"))
    TariffAssignmentFactory(tariff=tariff)
    token = IdTokenFactory(uid="04WORKERFAULT", organisation=org)
    at = clock.now() - timedelta(hours=3)
    session = session_start(
        charge_point_id=cp.pk,
        evse_id=1,
        id_tag=token.uid,
        meter_start_wh=1_000,
        started_at_charger=at,
        received_at=at,
        protocol="ocpp1.6",
    ).session
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=13_500,
        stopped_at_charger=at + timedelta(hours=1),
        received_at=at + timedelta(hours=1),
        reason="EVDisconnected",
    )
    return session


def test_a_task_whose_worker_was_killed_runs_again_and_its_effect_happens_once(workers, tmp_path):
    session = _completed_session()
    assert not ChargeDetailRecord.objects.filter(session=session).exists()
    queue = f"cpo-fault-{uuid.uuid4().hex[:8]}"
    dbname = settings.DATABASES["default"]["NAME"]
    db = settings.DATABASES["default"]

    # The test's own connection holds the session's row: the task blocks inside its transaction.
    holder = psycopg.connect(
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        dbname=dbname,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        autocommit=False,
    )
    try:
        holder.execute("SELECT id FROM charging_chargingsession WHERE id = %s FOR UPDATE", [session.pk])
        first = Worker("first", queue, tmp_path)
        workers.append(first)
        task_id = cdr_issue_task.apply_async(kwargs={"session_id": session.pk}, queue=queue).id

        _wait(
            lambda: _lock_waiters(dbname) == 1,
            "the first worker is inside the task",
            on_fail=lambda: f"{_activity(dbname)}\n{tail(first.log_path)}",
        )
        assert f"[{task_id}] received" in first.log()
        first.kill()
    finally:
        holder.rollback()
        holder.close()
    # The killed worker's backend gets the row, finds its client gone and rolls back (nothing commits
    # without the client's COMMIT).
    _wait(lambda: _lock_waiters(dbname) == 0, "the killed worker's database session ended")
    assert not ChargeDetailRecord.objects.filter(session=session).exists(), "nothing happened before the kill"

    second = Worker("second", queue, tmp_path)
    workers.append(second)
    _wait(
        lambda: f"[{task_id}] succeeded" in second.log(),
        "the second worker ran the task again",
        on_fail=lambda: tail(second.log_path),
    )
    cdrs = list(ChargeDetailRecord.objects.filter(session=session))
    assert len(cdrs) == 1
    # 12.5 kWh at 0.40 plus 1.00 flat, before tax: priced from the session.
    assert cdrs[0].energy_wh == 12_500
    assert cdrs[0].net == D("6.0000")
    second.stop()
    # Acknowledged once run: nothing of the queue is left waiting or handed out.
    broker = Redis.from_url(settings.CELERY_BROKER_URL)
    assert broker.llen(queue) == 0
    assert second.log().count(f"[{task_id}] received") == 1
