"""A 1.6 charger and a 2.0.1 charger charging at the same location end up as the same kind of session
and show up alike to operators."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from apps.charging import metering
from apps.charging.models import ChargingSession
from apps.charging.services import session_start, session_stop, transaction_event_record
from tests.factories import ChargePointFactory, IdTokenFactory, LocationFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def test_sessions_from_both_versions_look_alike(admin_client):
    location = LocationFactory()
    old = ChargePointFactory(
        identity="AT-16", organisation=location.organisation, location=location, ocpp_protocol="ocpp1.6"
    )
    new = ChargePointFactory(
        identity="AT-201", organisation=location.organisation, location=location, ocpp_protocol="ocpp2.0.1"
    )
    IdTokenFactory(uid="0A0B0C0D")
    IdTokenFactory(uid="1A1B1C1D")
    started = session_start(
        charge_point_id=old.pk,
        evse_id=1,
        id_tag="0a0b0c0d",
        meter_start_wh=1000,
        started_at_charger=T0,
        received_at=T0,
        protocol="ocpp1.6",
    ).session
    session_stop(
        charge_point_id=old.pk,
        transaction_ref=started.transaction_ref,
        meter_stop_wh=11000,
        stopped_at_charger=T0 + timedelta(hours=1),
        received_at=T0 + timedelta(hours=1),
    )
    begin = [metering.normalise(sampled_at=T0, value=500, context="Transaction.Begin")]
    end = [metering.normalise(sampled_at=T0 + timedelta(hours=1), value=10500, context="Transaction.End")]
    for seq, kind, samples, token in ((0, "Started", begin, "1a1b1c1d"), (1, "Ended", end, "")):
        transaction_event_record(
            charge_point_id=new.pk,
            transaction_ref="abc-1",
            seq_no=seq,
            event_type=kind,
            trigger_reason="Authorized" if seq == 0 else "EVDeparted",
            timestamp=T0 + timedelta(hours=seq),
            received_at=T0 + timedelta(hours=seq),
            evse_id=1,
            connector_id=1,
            id_tag=token,
            samples=samples,
        )

    rows = {
        s.charge_point.identity: (
            s.status,
            s.auth_status,
            s.energy_wh,
            s.started_at,
            s.stopped_at,
            s.charge_point.location_id,
        )
        for s in ChargingSession.objects.select_related("charge_point")
    }
    assert rows == {
        "AT-16": ("COMPLETED", "Accepted", 10000, T0, T0 + timedelta(hours=1), location.pk),
        "AT-201": ("COMPLETED", "Accepted", 10000, T0, T0 + timedelta(hours=1), location.pk),
    }
    response = admin_client.get(reverse("admin:charging_chargingsession_changelist"))
    shown = {
        row.charge_point.identity: (row.status, row.energy_wh, row.evse_id)
        for row in response.context["cl"].result_list
    }
    assert shown == {"AT-16": ("COMPLETED", 10000, 1), "AT-201": ("COMPLETED", 10000, 1)}
    page = response.content.decode()
    assert page.count('<td class="field-energy">10000</td>') == 2


def test_both_versions_look_alike_in_the_driver_api():
    """The same driver charges with one card at a 1.6 and at a 2.0.1 charger of one location: the app
    lists both chargers and both sessions in the same shape, with the same figures."""
    import time

    from rest_framework.test import APIClient

    from apps.ocpp_gateway import presence
    from apps.ocpp_gateway.redis_clients import sync_redis
    from tests.factories import ConnectorFactory, DriverFactory, EvseFactory

    location = LocationFactory()
    driver = DriverFactory()
    card = IdTokenFactory(uid="2A2B2C2D", owner=driver)
    chargers = {}
    for identity, protocol in (("ALIKE-16", "ocpp1.6"), ("ALIKE-201", "ocpp2.0.1")):
        cp = ChargePointFactory(
            identity=identity, organisation=location.organisation, location=location, ocpp_protocol=protocol
        )
        ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=1), status="Charging")
        sync_redis().hset(
            presence.PREFIX + identity,
            mapping={
                "channel": "x",
                "epoch": 1,
                "server": "t",
                "connected_at": time.time(),
                "last_frame_at": time.time(),
            },
        )
        chargers[identity] = cp
    session_start(
        charge_point_id=chargers["ALIKE-16"].pk,
        evse_id=1,
        id_tag=card.uid,
        meter_start_wh=1000,
        started_at_charger=T0,
        received_at=T0,
        protocol="ocpp1.6",
    )
    begin = [metering.normalise(sampled_at=T0, value=1000, context="Transaction.Begin")]
    transaction_event_record(
        charge_point_id=chargers["ALIKE-201"].pk,
        transaction_ref="alike-1",
        seq_no=0,
        event_type="Started",
        trigger_reason="Authorized",
        timestamp=T0,
        received_at=T0,
        evse_id=1,
        connector_id=1,
        id_tag=card.uid,
        samples=begin,
    )
    api = APIClient()
    api.force_authenticate(driver)
    try:
        listed = api.get(
            "/api/v1/chargers/nearby", {"lat": location.latitude, "lng": location.longitude}
        ).json()
        shapes = {
            c["identity"]: (
                c["online"],
                c["available"],
                c["max_power_kw"],
                c["location"]["id"],
                [(e["connector"], e["status"]) for e in c["evses"]],
            )
            for c in listed
        }
        assert (
            shapes["ALIKE-16"] == shapes["ALIKE-201"] == (True, False, 22.0, location.pk, [(1, "Charging")])
        )
        sessions = api.get("/api/v1/sessions").json()["results"]
        alike = {
            s["charge_point"]["identity"]: (
                s["status"],
                s["source"],
                s["connector"],
                s["started_at"],
                s["location"]["id"],
                sorted(s),
            )
            for s in sessions
        }
        assert alike["ALIKE-16"] == alike["ALIKE-201"]
        assert alike["ALIKE-16"][:2] == ("ACTIVE", "charger")
    finally:
        for identity in chargers:
            sync_redis().delete(presence.PREFIX + identity)
