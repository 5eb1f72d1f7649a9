"""Charger discovery over the driver API: nearby search on PostGIS, filters, live status, the detail."""

from __future__ import annotations

import time

import pytest
from django.contrib.gis.geos import Point
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.ocpp_gateway import presence
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.stations.choices import ConnectorStandard, ConnectorStatus, RegistrationStatus
from tests.factories import ChargePointFactory, ConnectorFactory, DriverFactory, EvseFactory, LocationFactory

# Berlin, Alexanderplatz; one degree of latitude is about 111.2 km.
LAT, LNG = 52.5219, 13.4132


@pytest.fixture(autouse=True)
def clean():
    cache.clear()
    r = sync_redis()
    for key in r.scan_iter(match="cpo:ocpp:*", count=1000):
        r.delete(key)
    yield


@pytest.fixture
def api(db):
    client = APIClient()
    client.force_authenticate(DriverFactory())
    return client


def online(cp) -> None:
    sync_redis().hset(
        presence.PREFIX + cp.identity,
        mapping={
            "channel": "x",
            "epoch": 1,
            "server": "t",
            "connected_at": time.time(),
            "last_frame_at": time.time(),
        },
    )


def charger(
    north_m: float,
    *,
    standard=ConnectorStandard.IEC_62196_T2,
    power_w=22000,
    status=ConnectorStatus.AVAILABLE,
    is_online=True,
    **location,
):
    loc = LocationFactory(point=Point(LNG, LAT + north_m / 111_200, srid=4326), **location)
    cp = ChargePointFactory(location=loc, organisation=loc.organisation)
    ConnectorFactory(
        evse=EvseFactory(charge_point=cp, evse_id=1), standard=standard, max_power_w=power_w, status=status
    )
    if is_online:
        online(cp)
    return cp


def nearby(api, **params):
    return api.get("/api/v1/chargers/nearby", {"lat": LAT, "lng": LNG, **params})


def test_nearest_first_with_distance_and_radius(api):
    far, near, outside = charger(3000), charger(500), charger(7000)
    response = nearby(api)
    assert response.status_code == 200
    body = response.json()
    assert [c["id"] for c in body] == [near.pk, far.pk]
    assert abs(body[0]["distance_m"] - 500) < 5 and abs(body[1]["distance_m"] - 3000) < 10
    assert [c["id"] for c in nearby(api, radius=10_000).json()] == [near.pk, far.pk, outside.pk]
    first = body[0]
    assert first["location"]["city"] == "Berlin" and first["online"] is True and first["available"] is True
    assert first["max_power_kw"] == 22.0
    assert first["evses"][0]["connector"] == 1
    assert first["evses"][0]["connectors"][0]["standard"] == "IEC_62196_T2"


def test_filters(api):
    ac = charger(100, power_w=11000)
    dc = charger(200, standard=ConnectorStandard.IEC_62196_T2_COMBO, power_w=150000)
    busy = charger(300, status=ConnectorStatus.CHARGING)
    offline = charger(400, is_online=False)
    assert [c["id"] for c in nearby(api, connector_type="IEC_62196_T2_COMBO").json()] == [dc.pk]
    assert [c["id"] for c in nearby(api, min_power_kw="50").json()] == [dc.pk]
    assert [c["id"] for c in nearby(api, available="true").json()] == [ac.pk, dc.pk]
    everyone = {c["id"]: c for c in nearby(api).json()}
    assert set(everyone) == {ac.pk, dc.pk, busy.pk, offline.pk}
    # offline: live status says Unavailable whatever was last reported
    assert everyone[offline.pk]["online"] is False
    assert everyone[offline.pk]["evses"][0]["status"] == "Unavailable"
    assert everyone[busy.pk]["evses"][0]["status"] == "Charging" and everyone[busy.pk]["available"] is False


def test_unpublished_and_unaccepted_chargers_are_not_shown(api):
    charger(100, is_published=False)
    hidden = charger(200)
    hidden.registration_status = RegistrationStatus.PENDING
    hidden.save()
    assert nearby(api).json() == []
    assert api.get(f"/api/v1/chargers/{hidden.pk}").status_code == 404


def test_at_most_fifty_results(api):
    for n in range(55):
        charger(10 * n)
    assert len(nearby(api).json()) == 50


def test_few_queries_whatever_the_number_of_results(api):
    for n in range(12):
        charger(10 * n)
    with CaptureQueriesContext(connection) as queries:
        assert len(nearby(api).json()) == 12
    assert len(queries) <= 12, [q["sql"][:120] for q in queries]


@pytest.mark.parametrize(
    "params,field",
    [
        ({"lat": 91}, "lat"),
        ({"lat": -90.5}, "lat"),
        ({"lng": 181}, "lng"),
        ({"lng": "east"}, "lng"),
        ({"radius": 0}, "radius"),
        ({"radius": 100_001}, "radius"),
        ({"connector_type": "USB"}, "connector_type"),
        ({"min_power_kw": "-1"}, "min_power_kw"),
        ({"available": "maybe"}, "available"),
    ],
)
def test_bad_parameters_name_the_field(api, params, field):
    response = nearby(api, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_failed" and field in body["fields"]


def test_missing_coordinates(api):
    response = api.get("/api/v1/chargers/nearby")
    assert response.status_code == 400 and set(response.json()["fields"]) == {"lat", "lng"}


def test_detail_and_404(api):
    cp = charger(100)
    body = api.get(f"/api/v1/chargers/{cp.pk}").json()
    assert body["id"] == cp.pk and body["distance_m"] is None and body["location"]["open_now"] is True
    assert api.get("/api/v1/chargers/999999").json()["code"] == "charger_not_found"


def test_anonymous_is_401(db):
    assert APIClient().get("/api/v1/chargers/nearby", {"lat": LAT, "lng": LNG}).status_code == 401


def test_the_spatial_index_serves_the_search(db):
    """ST_DWithin on the geography column can use the GiST index (distance_lte could not)."""
    from django.contrib.gis.measure import D

    from apps.stations.models import Location

    charger(100)
    sql, params = Location.objects.filter(
        point__dwithin=(Point(LNG, LAT, srid=4326), D(m=5000))
    ).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "ST_DWithin" in plan or "&&" in plan, plan
    assert "Index" in plan and "point" in plan, plan


def test_gross_price_summary_from_the_tariff_in_force(api):
    from decimal import Decimal

    from tests.factories import TariffAssignmentFactory, TariffElementFactory, TariffFactory

    cp = charger(100)
    tariff = TariffFactory(organisation=cp.organisation, alt_text={"en": "0.36/kWh"})
    TariffElementFactory(
        tariff=tariff,
        energy_price=Decimal("0.30"),
        flat_price=Decimal("1.00"),
        energy_vat=Decimal("19"),
        flat_vat=Decimal("19"),
    )
    TariffAssignmentFactory(tariff=tariff)
    body = nearby(api).json()[0]
    price = body["price"]
    assert price["currency"] == "EUR" and price["tariff_id"] == tariff.pk
    assert Decimal(price["energy_per_kwh"]) == Decimal("0.357") and Decimal(price["session_fee"]) == Decimal(
        "1.19"
    )
    assert body["evses"][0]["connectors"][0]["price"] == price
    assert api.get(f"/api/v1/chargers/{cp.pk}").json()["price"] == price
