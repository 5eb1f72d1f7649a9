"""Console fixtures: a seeded network of two organisations, presence written to Redis as the gateway
writes it (the dashboard reads live presence, never the database copy)."""

from __future__ import annotations

import time

import pytest
from django.contrib.gis.geos import Point

from apps.ocpp_gateway import presence
from apps.ocpp_gateway.redis_clients import sync_redis
from tests.factories import ChargePointFactory, ConnectorFactory, EvseFactory, LocationFactory


@pytest.fixture(autouse=True)
def clean_redis():
    r = sync_redis()
    for pattern in ("cpo:ocpp:*", "cpo:console:*"):
        for key in r.scan_iter(match=pattern, count=1000):
            r.delete(key)
    yield


def put_presence(
    identity: str, *, last_frame_at: float | None = None, channel: str = "test.channel!x"
) -> None:
    """A presence record as the gateway's consumer claims it (connected now unless told otherwise), with
    its place in the sorted set of last frames the presence flush reads."""
    now = time.time()
    sync_redis().zadd(presence.SEEN_KEY, {identity: last_frame_at if last_frame_at is not None else now})
    sync_redis().hset(
        presence.PREFIX + identity,
        mapping={
            "channel": channel,
            "epoch": 1,
            "server": "test",
            "connected_at": now,
            "last_frame_at": last_frame_at if last_frame_at is not None else now,
            "address": "192.0.2.9",
            "authenticated": "1",
        },
    )


def charger(organisation, location, identity: str, *statuses: str, **kwargs):
    """A charge point with one EVSE/connector per status given."""
    cp = ChargePointFactory(organisation=organisation, location=location, identity=identity, **kwargs)
    for number, status in enumerate(statuses, start=1):
        ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=number), connector_id=1, status=status)
    return cp


@pytest.fixture
def network(org_a, org_b):
    """Org A: Berlin (available, charging, faulted, offline) and Hamburg (unavailable, silent); org B: one
    charger that org A must never count."""
    berlin = LocationFactory(organisation=org_a, name="Berlin Mitte")
    hamburg = LocationFactory(
        organisation=org_a, name="Hamburg Hafen", city="Hamburg", point=Point(9.9937, 53.5511, srid=4326)
    )
    chargers = {
        "A-AVAIL": charger(org_a, berlin, "A-AVAIL", "Available", "Available"),
        "A-CHARGE": charger(org_a, berlin, "A-CHARGE", "Charging", "Available"),
        "A-FAULT": charger(org_a, berlin, "A-FAULT", "Faulted"),
        "A-OFF": charger(org_a, berlin, "A-OFF", "Available"),
        "A-UNAV": charger(org_a, hamburg, "A-UNAV", "Unavailable"),
        "A-SILENT": charger(org_a, hamburg, "A-SILENT", "Available"),
    }
    b_site = LocationFactory(organisation=org_b, name="Beta Site")
    chargers["B-1"] = charger(org_b, b_site, "B-1", "Faulted")
    for identity in ("A-AVAIL", "A-CHARGE", "A-FAULT", "A-UNAV", "B-1"):
        put_presence(identity)
    put_presence("A-SILENT", last_frame_at=time.time() - 11 * 60)
    return {"berlin": berlin, "hamburg": hamburg, "b_site": b_site, **chargers}
