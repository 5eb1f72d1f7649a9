"""Status and connection history as intervals, and uptime per connector and location for a month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.console import services
from apps.console.models import ConnectionInterval, StatusInterval
from apps.console.selectors import NO_DATA, uptime_from_intervals, uptime_report
from apps.ocpp_gateway.services import presence_flush
from apps.stations.services import connector_status_record
from tests.console.conftest import charger, put_presence
from tests.factories import LocationFactory, StaffUserFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)


def test_uptime_classifies_up_down_and_excluded_time():
    end = T0 + 10 * H
    uptime = uptime_from_intervals(
        start=T0,
        end=end,
        statuses=[
            (T0 + H, T0 + 4 * H, "Available"),
            (T0 + 4 * H, T0 + 5 * H, "Faulted"),
            (T0 + 5 * H, T0 + 7 * H, "Unavailable"),
            (T0 + 7 * H, None, "Charging"),
        ],
        connections=[(T0, T0 + 3 * H), (T0 + 4 * H, None)],
    )
    # 0-1 no status known (excluded); 1-3 up; 3-4 disconnected (down); 4-5 faulted (down);
    # 5-7 unavailable (excluded); 7-10 up.
    assert uptime.up_s == 5 * 3600 and uptime.down_s == 2 * 3600
    assert uptime.excluded_s == {NO_DATA: 3600.0, "unavailable (taken out of service)": 7200.0}
    assert uptime.percent == Decimal("71.43")


def test_uptime_of_nothing_considered_is_unknown():
    uptime = uptime_from_intervals(start=T0, end=T0 + H, statuses=[], connections=[])
    assert uptime.percent is None


def test_status_reports_become_intervals_not_rows_per_report(org_a):
    cp = charger(org_a, LocationFactory(organisation=org_a), "HIST-1", "Available")
    for minutes, status in [
        (0, "Available"),
        (1, "Available"),
        (2, "Charging"),
        (3, "Charging"),
        (9, "Available"),
    ]:
        at = T0 + timedelta(minutes=minutes)
        connector_status_record(
            charge_point_id=cp.pk, evse_id=1, connector_id=1, status=status, received_at=at, charger_at=at
        )
    rows = list(
        StatusInterval.objects.filter(charge_point=cp).values_list("status", "started_at", "ended_at")
    )
    assert rows == [
        ("Available", T0, T0 + timedelta(minutes=2)),
        ("Charging", T0 + timedelta(minutes=2), T0 + timedelta(minutes=9)),
        ("Available", T0 + timedelta(minutes=9), None),
    ]


def test_connection_intervals_follow_the_presence_flush(org_a):
    cp = charger(org_a, LocationFactory(organisation=org_a), "CONN-1", "Available")
    put_presence("CONN-1")
    presence_flush()
    interval = ConnectionInterval.objects.get(charge_point=cp)
    assert interval.ended_at is None
    from apps.ocpp_gateway import presence
    from apps.ocpp_gateway.redis_clients import sync_redis

    # The connection ends as presence.release leaves it: no record, its last frame set to 0.
    sync_redis().delete(presence.PREFIX + "CONN-1")
    sync_redis().zadd(presence.SEEN_KEY, {"CONN-1": 0})
    presence_flush()
    interval.refresh_from_db()
    assert interval.ended_at is not None


def test_reconcile_opens_intervals_for_chargers_connected_before_the_console(org_a):
    cp = charger(org_a, LocationFactory(organisation=org_a), "OLD-1", "Available", is_online=True)
    put_presence("OLD-1")
    assert services.connections_reconcile() == {"opened": 1, "closed": 0}
    assert services.connections_reconcile() == {"opened": 0, "closed": 0}
    assert ConnectionInterval.objects.filter(charge_point=cp, ended_at__isnull=True).count() == 1


def _month_of_history(org):
    location = LocationFactory(organisation=org, name="Uptime Site")
    cp = charger(org, location, "UP-1", "Available")
    StatusInterval.objects.create(
        charge_point=cp, evse_id=1, connector_id=1, status="Available", started_at=T0
    )
    ConnectionInterval.objects.create(charge_point=cp, started_at=T0, ended_at=T0 + timedelta(days=3))
    ConnectionInterval.objects.create(charge_point=cp, started_at=T0 + timedelta(days=3, hours=12))
    return cp


def test_monthly_report_per_connector_and_location(org_a, org_b):
    _month_of_history(org_a)
    user = StaffUserFactory(organisation=org_a, role="Support")
    rows = uptime_report(user, year=2026, month=11, now=T0 + timedelta(days=40))
    assert [(r.location, r.identity, r.evse_id) for r in rows] == [
        ("Uptime Site", "UP-1", 1),
        ("Uptime Site", "", 0),
    ]
    # 12 hours down out of 30 days
    assert rows[0].uptime.percent == Decimal("98.33")
    assert uptime_report(StaffUserFactory(organisation=org_b), year=2026, month=11) == []


def test_uptime_page_and_csv(client, org_a):
    _month_of_history(org_a)
    client.force_login(StaffUserFactory(organisation=org_a, role="Operator admin"))
    url = reverse("admin:console_uptime")
    assert "98.33" in client.get(url + "?month=2026-11").content.decode()
    response = client.get(url + "?month=2026-11&format=csv")
    assert response["Content-Disposition"] == 'attachment; filename="uptime-2026-11.csv"'
    lines = response.content.decode().splitlines()
    assert lines[0].startswith("location,charge_point,evse,connector,uptime_percent,up_h,down_h")
    assert lines[1].startswith("Uptime Site,UP-1,1,1,98.33,708.00,12.00")
    assert lines[2].startswith("Uptime Site,(location total),,,98.33")
    bad = client.get(url + "?month=2026-13").content.decode()
    assert "Give the month as YYYY-MM, e.g. 2026-11." in bad


def test_without_any_connection_history_the_statuses_alone_decide(org_a):
    uptime = uptime_from_intervals(
        start=T0,
        end=T0 + 4 * H,
        statuses=[(T0, T0 + 3 * H, "Available"), (T0 + 3 * H, None, "Faulted")],
        connections=None,
    )
    assert (uptime.up_s, uptime.down_s, uptime.percent) == (3 * 3600, 3600, Decimal("75.00"))
    # In the report: a charger that never had a connection interval is not counted as disconnected...
    location = LocationFactory(organisation=org_a, name="Fresh Site")
    fresh = charger(org_a, location, "FRESH-1", "Available")
    StatusInterval.objects.create(
        charge_point=fresh, evse_id=1, connector_id=1, status="Available", started_at=T0
    )
    user = StaffUserFactory(organisation=org_a, role="Support")
    rows = uptime_report(user, year=2026, month=11, now=T0 + timedelta(days=40))
    assert rows[0].uptime.percent == Decimal("100.00")
    # ...while one whose connection ended before the month was offline all month.
    ConnectionInterval.objects.create(charge_point=fresh, started_at=T0 - 10 * H, ended_at=T0 - H)
    rows = uptime_report(user, year=2026, month=11, now=T0 + timedelta(days=40))
    assert rows[0].uptime.percent == Decimal("0.00")
