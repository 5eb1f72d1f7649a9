"""Row locks are FOR NO KEY UPDATE: they order writers as FOR UPDATE does, but do not block the KEY SHARE
locks that PostgreSQL takes for a foreign key check. With plain FOR UPDATE, a StatusNotification holding its
charge point's row and a CDR issue (or driver start) inserting a row that references that charge point while
holding a lock the status path wanted next deadlocked (seen in the e2e driver journey)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction

from tests.factories import ChargePointFactory, ChargingSessionFactory

BARE = re.compile(r"select_for_update\(\s*\)")


def test_no_bare_select_for_update_in_the_product():
    root = Path(settings.BASE_DIR)
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for base in ("apps", "cpo")
        for path in (root / base).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if BARE.search(line)
    ]
    assert not offenders, f"use select_for_update(no_key=True): {offenders}"


@pytest.mark.django_db(transaction=True)
def test_a_locked_charge_point_does_not_block_rows_that_reference_it():
    from apps.stations.models import ChargePoint

    cp = ChargePointFactory()
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                ChargePoint.objects.select_for_update(no_key=True).get(pk=cp.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            ChargingSessionFactory(charge_point=cp)  # its foreign key check must not wait for the holder
    finally:
        release.set()
        holder.join(10)
