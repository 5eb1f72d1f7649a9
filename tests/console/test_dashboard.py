"""The operations dashboard: counts from live presence and connector statuses, today's figures, failures
of the last 24 hours, the map, tenancy."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.console import mapview
from apps.console.selectors import charger_state, dashboard_snapshot
from cpo import clock
from tests.console.conftest import charger, put_presence
from tests.factories import (
    AlertFactory,
    ChargeDetailRecordFactory,
    ChargingSessionFactory,
    OcppCommandFactory,
    PaymentFactory,
    StaffUserFactory,
)

pytestmark = pytest.mark.django_db


def test_counts_follow_presence_and_worst_connector_status(network, staff_a):
    snapshot = dashboard_snapshot(staff_a)
    assert snapshot["counts"] == {
        "total": 6,
        "online": 5,
        "offline": 1,
        "faulted": 1,
        "unavailable": 1,
        "charging": 1,
        "available": 2,  # A-AVAIL and A-SILENT (silent but still connected)
    }


def test_org_b_is_never_counted_for_org_a_and_the_superuser_sees_both(network, staff_a, staff_b, superuser):
    assert dashboard_snapshot(staff_b)["counts"]["total"] == 1
    assert dashboard_snapshot(staff_b)["counts"]["faulted"] == 1
    assert [loc["name"] for loc in dashboard_snapshot(staff_a)["locations"]] == [
        "Berlin Mitte",
        "Hamburg Hafen",
    ]
    assert dashboard_snapshot(superuser)["counts"]["total"] == 7


def test_silent_chargers_come_from_presence_not_the_database_copy(network, staff_a):
    # The database copy says it was seen just now; presence says its last frame is 11 minutes old.
    network["A-SILENT"].last_seen_at = clock.now()
    network["A-SILENT"].save()
    snapshot = dashboard_snapshot(staff_a)
    assert snapshot["silent_count"] == 1
    assert snapshot["silent"][0]["identity"] == "A-SILENT"
    assert snapshot["silent"][0]["silent_min"] == 11
    put_presence("A-SILENT")  # a frame now
    assert dashboard_snapshot(staff_a)["silent_count"] == 0


def test_a_charger_going_offline_moves_from_its_state_to_offline(network, staff_a):
    from apps.ocpp_gateway import presence
    from apps.ocpp_gateway.redis_clients import sync_redis

    sync_redis().delete(presence.PREFIX + "A-FAULT")
    counts = dashboard_snapshot(staff_a)["counts"]
    assert (counts["faulted"], counts["offline"], counts["online"]) == (0, 2, 4)


def test_location_takes_the_worst_state_of_its_chargers(network, staff_a):
    states = {loc["name"]: loc["state"] for loc in dashboard_snapshot(staff_a)["locations"]}
    assert states == {"Berlin Mitte": "faulted", "Hamburg Hafen": "unavailable"}


def test_sessions_energy_and_revenue_of_today(network, staff_a):
    now = clock.now()
    ChargingSessionFactory(charge_point=network["A-CHARGE"], status="ACTIVE")
    ChargingSessionFactory(
        charge_point=network["A-AVAIL"],
        status="COMPLETED",
        meter_start_wh=1000,
        meter_stop_wh=8500,
        stopped_at=now,
    )
    ChargingSessionFactory(  # yesterday: not today's energy
        charge_point=network["A-AVAIL"],
        status="COMPLETED",
        meter_start_wh=0,
        meter_stop_wh=99000,
        started_at=now - timedelta(days=2),
        stopped_at=now - timedelta(days=2),
    )
    ChargingSessionFactory(charge_point=network["B-1"], status="ACTIVE")  # org B
    priced = ChargingSessionFactory(charge_point=network["A-AVAIL"], status="COMPLETED")  # stopped_at unknown
    ChargeDetailRecordFactory(session=priced, gross=Decimal("12.3450"), currency="EUR")
    ChargeDetailRecordFactory(  # issued yesterday
        session=ChargingSessionFactory(charge_point=network["A-AVAIL"], status="COMPLETED"),
        issued_at=now - timedelta(days=1),
    )
    snapshot = dashboard_snapshot(staff_a)
    assert snapshot["active_sessions"] == 1
    assert snapshot["energy_today_wh"] == 7500
    assert snapshot["energy_today_kwh"] == "7.5"
    assert snapshot["revenue_today"] == [{"currency": "EUR", "amount": "12.35"}]


def test_failed_commands_and_payments_of_the_last_24_hours(network, staff_a):
    now = clock.now()
    cp = network["A-AVAIL"]
    OcppCommandFactory(charge_point=cp, status="timeout", created_at=now)
    OcppCommandFactory(charge_point=cp, status="answered", response={"status": "Rejected"}, created_at=now)
    OcppCommandFactory(charge_point=cp, status="answered", response={"status": "Accepted"}, created_at=now)
    OcppCommandFactory(charge_point=cp, status="call_error", created_at=now - timedelta(hours=25))
    OcppCommandFactory(charge_point=network["B-1"], status="timeout", created_at=now)
    PaymentFactory(organisation=cp.organisation, status="debt")
    PaymentFactory(organisation=cp.organisation, status="captured")
    PaymentFactory(organisation=network["B-1"].organisation, status="failed")
    snapshot = dashboard_snapshot(staff_a)
    assert snapshot["failed_commands_24h"] == 2
    assert snapshot["failed_payments_24h"] == 1


def test_open_alerts_are_counted(network, staff_a):
    org = network["A-AVAIL"].organisation
    AlertFactory(organisation=org)
    AlertFactory(organisation=org, subject="evse 2/1", resolved_at=clock.now())
    AlertFactory(organisation=network["B-1"].organisation)
    snapshot = dashboard_snapshot(staff_a)
    assert (snapshot["open_alerts"], snapshot["unacknowledged_alerts"]) == (1, 1)


@pytest.mark.parametrize(
    ("online", "charger_status", "availability", "connectors", "inoperative", "expected"),
    [
        (False, "Faulted", "Operative", ["Faulted"], 0, "offline"),
        (True, "Faulted", "Operative", ["Available"], 0, "faulted"),
        (True, "Available", "Inoperative", ["Available"], 0, "unavailable"),
        (True, "Available", "Operative", ["Available"], 1, "unavailable"),
        (True, "Available", "Operative", ["SuspendedEV", "Faulted"], 0, "faulted"),
        (True, "Available", "Operative", ["SuspendedEV"], 0, "charging"),
        (True, "Unknown", "Operative", [], 0, "available"),
    ],
)
def test_charger_state(online, charger_status, availability, connectors, inoperative, expected):
    state = charger_state(
        online=online,
        charger_status=charger_status,
        availability=availability,
        connector_statuses=connectors,
        inoperative_evses=inoperative,
    )
    assert state == expected


def test_map_fits_every_location_inside_the_view_and_tiles_only_with_a_url():
    points = [(1, 52.52, 13.41), (2, 53.55, 9.99), (3, 48.14, 11.58)]
    view = mapview.fit(points, width=640, height=360, margin=24)
    assert view.tiles == ()
    assert [m.key for m in view.markers] == [1, 2, 3]
    for marker in view.markers:
        assert 24 <= marker.x <= 616 and 24 <= marker.y <= 336
    # Hamburg is north-west of Berlin, Munich south
    berlin, hamburg, munich = view.markers
    assert hamburg.x < berlin.x and hamburg.y < berlin.y and munich.y > berlin.y
    tiled = mapview.fit(points, tile_url="https://tiles.example.net/{z}/{x}/{y}.png")
    assert tiled.tiles and all(
        t.url.startswith(f"https://tiles.example.net/{tiled.zoom}/") for t in tiled.tiles
    )
    assert mapview.fit([]).markers == ()
    single = mapview.fit([(9, 52.52, 13.41)])
    assert (single.markers[0].x, single.markers[0].y) == (320, 180)


def test_admin_index_is_the_dashboard(client, network, settings):
    settings.CPO_MAP_TILE_URL = ""
    user = StaffUserFactory(organisation=network["A-AVAIL"].organisation, role="Support")
    client.force_login(user)
    page = client.get(reverse("admin:index")).content.decode()
    assert 'id="console-dashboard"' in page
    assert '<span class="console-value" data-metric="counts.faulted">1</span>' in page
    assert '<span class="console-value" data-metric="counts.total">6</span>' in page
    assert f'data-location-id="{network["berlin"].pk}" data-state="faulted"' in page
    assert "Beta Site" not in page
    assert "<image" not in page  # no tile server: no tiles, the map still shows the locations
    assert (
        "console/console.js" in page and 'src="http' not in page
    )  # vendored script, nothing fetched from elsewhere


def test_snapshot_queries_do_not_grow_with_the_network(network, staff_a, django_assert_max_num_queries):
    # No query per charger or per location: the same bound with 6 chargers as with 60.
    with django_assert_max_num_queries(12):
        dashboard_snapshot(staff_a)
    org = network["A-AVAIL"].organisation
    for n in range(54):
        charger(org, network["berlin"], f"A-MORE-{n}", "Available")
    with django_assert_max_num_queries(12):
        assert dashboard_snapshot(staff_a)["counts"]["total"] == 60
